"""The lock file: a job's pins per ABI, for CI (`launcher lock`, `launcher run --lock`).

TOML, one requirement per line, sorted, so a change reads as a small diff:

    version = 1
    requirements = ["splitpkg"]      # what this lock answers
    constraints = []
    pins = ["splitpkg==1.0"]          # every ABI, and an ABI the job meets later
    [abi]
    "cp311-x86_64-linux-gnu-glibc2.36" = ["splitpkg==1.0"]

`run --lock` installs each known ABI's list exactly (`uv pip install
--no-deps`), resolving nothing; an ABI the lock does not list resolves with
`pins` as constraints.  A lock whose requirements are not the job's is
refused (exit 2), as `uv run --locked` refuses a stale uv.lock.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.errors import LockMismatch, UsageError
from launcher.resolve import JobPins
from launcher.spec import Spec

VERSION = 1
DEFAULT = "launcher.lock"


@dataclass(frozen=True)
class Lock:
    path: Path
    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    pins: tuple[str, ...]
    abi_pins: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def answer_for(self, spec: Spec) -> JobPins:
        """The pins, when this lock answers `spec`'s requirements (else LockMismatch, exit 2)."""
        changes = _changes(self.requirements, spec.requirements) + \
            [f"constraint {c}" for c in _changes(self.constraints, spec.constraints)]
        if changes:
            raise LockMismatch(f"{self.path} no longer matches the requirements ({', '.join(changes)})",
                               fix="run 'launcher lock' to update it, or drop --lock")
        return JobPins(abi_pins=dict(self.abi_pins), pins=self.pins)


def _changes(locked: Iterable[str], wanted: Iterable[str]) -> list[str]:
    before, now = set(locked), set(wanted)
    return [f"+{r}" for r in sorted(now - before)] + [f"-{r}" for r in sorted(before - now)]


def render(spec: Spec, answer: JobPins) -> str:
    lines = [
        "# launcher.lock: the runtime packages of this job, pinned per interpreter ABI.",
        "# Written by 'launcher lock'; 'launcher run --lock FILE' installs exactly these.",
        f"version = {VERSION}",
        f"requirements = {_array(sorted(spec.requirements))}",
        f"constraints = {_array(sorted(spec.constraints))}",
        "# Every ABI of the job, and an ABI it meets later (resolved with these as constraints):",
        f"pins = {_array(answer.pins)}",
        "",
        "[abi]",
    ]
    for abi, pins in sorted(answer.abi_pins.items()):
        lines.append(f"{_str(abi)} = {_array(pins)}")
    return "\n".join(lines) + "\n"


def _str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a TOML basic string


def _array(items: Sequence[str]) -> str:
    if not items:
        return "[]"
    return "[\n" + "".join(f"    {_str(x)},\n" for x in items) + "]"


def read_lock(path: Path) -> Lock:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data: Any = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"lock file {path} does not exist", fix="write it with 'launcher lock'") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"lock file {path} is unreadable: {exc}",
                         fix="write it again with 'launcher lock'") from None
    try:
        if data.get("version") != VERSION:
            raise ValueError(f"version {data.get('version')!r}, this launcher reads {VERSION}")
        abi = data.get("abi", {})
        return Lock(path=path, requirements=_strings(data["requirements"]),
                    constraints=_strings(data.get("constraints", [])), pins=_strings(data["pins"]),
                    abi_pins={str(k): _strings(v) for k, v in abi.items()})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"lock file {path} is not one 'launcher lock' writes ({exc})",
                         fix="write it again with 'launcher lock'") from None


def _strings(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise TypeError("expected a list of strings")
    return tuple(v)


def lock_job(flags: Mapping[str, Any], output: Path, *, cwd: Path, environ: Mapping[str, str]) -> tuple[Lock, list[str]]:
    """Resolve the job (every --python, else `python3` on PATH) and write its lock;
    returns it and the lines where ABIs could not agree."""
    from launcher.cache import CacheLayout, safety
    from launcher.config import cache_root, resolve
    from launcher.errors import BuildError
    from launcher.probe import interpreter_path, probe
    from launcher.resolve import remember, resolve_job
    from launcher.spec import spec_for
    from launcher.uvbin import find_uv

    settings = resolve({**flags, "lock": None}, cwd=cwd, environ=dict(environ)).settings
    _, spec = spec_for(settings, cwd, environ)
    if spec is None:
        raise UsageError("nothing to lock: no requirements given",
                         fix="pass --with REQ or --with-requirements FILE, or set them in [tool.launcher]")
    layout = CacheLayout(cache_root(settings, environ))
    safety.check(layout)
    interps = [probe(interpreter_path(p, cwd=cwd, search_path=environ.get("PATH")), layout, save=False)
               for p in dict.fromkeys(settings.python or ["python3"])]
    answer = resolve_job(find_uv(), interps, spec, settings.build)
    if answer.failed:
        abi, exc = next(iter(answer.failed.items()))
        raise BuildError(f"cannot lock: for {abi}, {exc.message}", fix=exc.fix)
    try:
        remember(layout, spec, [i.abi_key for i in interps], settings.build, answer)
    except OSError:
        pass
    text = render(spec, answer)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}", fix="choose another path with -o") from None
    return read_lock(output), answer.lines
