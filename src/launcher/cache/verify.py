"""`launcher cache verify`: the deep check of runtime trees, and their repair.

The gate trusts a published tree's presence and `launcher run` checks its
directories (both in time that does not grow with the number of files);
this is the check that reads everything: every file's sha256 against the
manifest, files added or missing, write bits, and extension modules the
tree's interpreter cannot import.  `--repair` rebuilds a damaged tree from
the requirement set saved in the cache, under the tree's lock, and publishes
the new one by rename (readers see the whole old tree or the whole new one,
or none for an instant and then wait for it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.cache import safety
from launcher.cache.layout import CacheLayout
from launcher.errors import LauncherError, UsageError

if TYPE_CHECKING:
    from launcher.probe import Interpreter

SHOWN = 3  # bad files named per damaged tree in the text output


@dataclass
class TreeCheck:
    name: str
    path: str
    status: str  # "ok" | "damaged" | "repaired" | "unrepaired"
    files: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)
    note: str | None = None  # e.g. why the extension check or a repair could not run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def first(self, n: int = SHOWN) -> str:
        lines = [f"{p['path']}: {p['detail']}" if p["path"] != "." else p["detail"] for p in self.problems[:n]]
        more = len(self.problems) - n
        return "; ".join(lines) + (f"; and {more} more" if more > 0 else "")


def select(layout: CacheLayout, names: Sequence[str]) -> list[str]:
    """Tree names to check: all of them, or those named (by name or path)."""
    try:
        present = layout.tree_names()
    except OSError as exc:
        raise UsageError(f"cannot list the runtime trees in {layout.trees}: {exc.strerror or exc}",
                         fix=f"chmod 700 {layout.trees}") from None
    if not names:
        return present
    return list(dict.fromkeys(match(present, n, layout.trees) for n in names))


def match(present: Sequence[str], given: str, where: Path) -> str:
    """The tree `given` names: its name, its path, or a unique prefix of either
    the name or its spec hash (the last part), as git takes short hashes."""
    name = Path(given).name if "/" in given else given
    if name in present:
        return name
    found = [p for p in present if name and (p.startswith(name) or p.rsplit("-", 1)[-1].startswith(name))]
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(f"no runtime tree {given!r} in {where}",
                         fix="see 'launcher cache list' for the trees there are")
    shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    raise UsageError(f"{given!r} is ambiguous: it matches {len(found)} runtime trees ({shown})",
                     fix="give more of the name")


def check_tree(layout: CacheLayout, name: str) -> TreeCheck:
    """Everything wrong with one tree, reading every file."""
    from launcher.tree import damage, foreign_extensions, read_manifest

    path = layout.trees / name
    found = damage(path, deep=True)
    result = TreeCheck(name, str(path), "ok", problems=[_problem(d.path, d.kind, d.detail) for d in found])
    manifest = read_manifest(path) if safety.real_dir(path) else None
    if manifest is not None:
        result.files = len(manifest.files)
        interp, why = _interpreter(layout, manifest.interpreter, manifest.abi_key)
        if interp is None:
            result.note = f"extension modules not checked: {why}"
        else:
            result.problems += [_problem(rel, "foreign", f"an extension module {manifest.abi_key.split('-')[0]} "
                                                         f"cannot import ({reason})")
                                for rel, reason in foreign_extensions(path, interp)]
    if result.problems:
        result.status = "damaged"
    return result


def _problem(path: str, kind: str, detail: str) -> dict[str, str]:
    return {"path": path, "kind": kind, "detail": detail}


def _interpreter(layout: CacheLayout, executable: str, abi_key: str) -> tuple[Interpreter | None, str]:
    from launcher.probe import probe

    try:
        interp = probe(executable, layout)
    except LauncherError as exc:
        return None, f"its interpreter {executable} cannot be probed ({exc.message})"
    if interp.abi_key != abi_key:
        return None, f"its interpreter {executable} is now {interp.abi_key}"
    return interp, ""


def repair(layout: CacheLayout, check: TreeCheck) -> TreeCheck:
    """Rebuild a damaged tree from its saved requirement set (atomically published)."""
    from launcher.spec import Spec
    from launcher.tree import ensure_tree, read_manifest

    path = Path(check.path)
    if not safety.real_dir(path):
        check.status, check.note = "unrepaired", f"launcher never replaces it: rm {path}"
        return check
    manifest = read_manifest(path)
    abi_key, _, spec_hash = check.name.rpartition("-")
    executable = manifest.interpreter if manifest is not None else _known_interpreter(layout, abi_key)
    if executable is None:
        check.status, check.note = "unrepaired", (f"no known interpreter for {abi_key}; rm -r {path} and "
                                                  "the next launcher run rebuilds it")
        return check
    interp, why = _interpreter(layout, executable, abi_key)
    if interp is None:
        check.status, check.note = "unrepaired", why
        return check
    try:
        spec = Spec.load(layout, manifest.spec_hash if manifest is not None else spec_hash)
        ensure_tree(layout, interp, spec, requested_by="launcher cache verify --repair", failure_ttl=0,
                    damaged=check.first(1) or "damaged")
    except LauncherError as exc:
        check.status, check.note = "unrepaired", exc.message
        return check
    after = check_tree(layout, check.name)
    check.status = "repaired" if after.status == "ok" else "unrepaired"
    if after.status != "ok":
        check.note = f"still damaged after the rebuild: {after.first(1)}"
    return check


def _known_interpreter(layout: CacheLayout, abi_key: str) -> str | None:
    """An interpreter with this ABI, from the probe cache."""
    from launcher.cache.manage import probed

    return next((str(d["executable"]) for d in probed(layout)
                 if d.get("abi_key") == abi_key and d.get("executable")), None)


def verify(layout: CacheLayout, names: Sequence[str] = (), *, fix: bool = False) -> list[TreeCheck]:
    out = []
    for name in select(layout, names):
        check = check_tree(layout, name)
        if fix and check.status == "damaged":
            check = repair(layout, check)
        out.append(check)
    return out
