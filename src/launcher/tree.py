"""Runtime trees: one per (interpreter ABI, requirement set).

Correctness comes from the publish, not the lock (locks may be local-only on
NFS): a tree is built in a sibling temp dir, validated against the target's
extension suffixes, given a manifest last, fsynced and renamed into place.
Readers trust only trees with a manifest.  The lock merely stops N cold
workers from building N times; a failed build is remembered for a short while
so they do not retry serially.

A published tree is immutable: no file or directory in it has a write bit,
and its manifest lists every file with size, mtime and sha256, so a changed,
added or missing file is visible (`damage`).  It also lists every directory
(`DIRS`): with read-only directories, adding or removing a file changes its
directory's mtime, which is what the warm path of `launcher run` checks in
time that does not grow with the number of files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from launcher.cache import TREE_FORMAT, CacheLayout, safety
from launcher.cache.layout import read_only
from launcher.errors import BuildError
from launcher.probe import Interpreter
from launcher.spec import Spec
from launcher.words import plural

MANIFEST = ".launcher-manifest.json"
CONSTRAINTS = ".launcher-constraints.txt"  # only while uv runs
PLUGINS = ".launcher-plugins"
DIRS = ".launcher-dirs"  # every directory of the tree, one relative path per line ("." first)
PLUGIN_GROUP = "launcher.plugins"
EXT_TAG = re.compile(r"(\.(?:cpython-[^./]+|pypy[^./]+|abi3))\.(?:so|pyd)$")


class FileEntry(BaseModel):
    path: str
    size: int
    mtime_ns: int
    sha256: str


class Distribution(BaseModel):
    name: str
    version: str


class Manifest(BaseModel):
    format: int
    abi_key: str
    spec_hash: str
    interpreter: str
    interpreter_version: str
    requirements: list[str]
    find_links: list[str]
    index_url: str | None
    distributions: list[Distribution]
    plugins: list[str]
    built_at: float
    build_seconds: float
    uv_version: str | None
    files: list[FileEntry]
    checksum: str = ""

    def compute_checksum(self) -> str:
        body = self.model_dump(exclude={"checksum"})
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class TreeResult:
    path: Path
    state: str  # "present" | "built" | "rebuilt"
    manifest: Manifest


class Failure(BaseModel):
    abi_key: str
    spec_hash: str
    interpreter: str
    error: str
    log: str
    at: float


# ---------------------------------------------------------------- validation


def foreign_extensions(root: Path, interp: Interpreter) -> list[tuple[str, str]]:
    """Extension modules under `root` this interpreter cannot import: (relpath, why)."""
    bad = []
    suffixes = set(interp.ext_suffixes)
    for rel, st in safety.walk(root):
        m = EXT_TAG.search(rel)
        if not m or stat.S_ISDIR(st.st_mode):
            continue
        suffix = m.group(0)
        if suffix not in suffixes:
            bad.append((rel, f"built for {built_for(suffix)}"))
        elif interp.gil_disabled and m.group(1) == ".abi3":
            bad.append((rel, "abi3 (the stable ABI does not serve free-threaded builds)"))
    return bad


def built_for(suffix: str) -> str:
    """`.cpython-311-x86_64-linux-gnu.so` -> `cp311 (x86_64-linux-gnu)`."""
    tag = suffix.lstrip(".").rsplit(".", 1)[0]
    if tag.startswith("cpython-"):
        ver, _, plat = tag[len("cpython-"):].partition("-")
        return f"cp{ver}" + (f" ({plat})" if plat else "")
    return tag


def read_manifest(tree: Path) -> Manifest | None:
    """The tree's manifest; None when it is missing, damaged or a link (never followed)."""
    try:
        with open(tree / MANIFEST, "rb", opener=_no_follow) as f:
            return Manifest.model_validate_json(f.read())
    except (OSError, ValueError):
        return None


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))


@dataclass(frozen=True)
class Damage:
    path: str  # relative to the tree ("." for the tree itself)
    kind: str  # "manifest" | "missing" | "changed" | "added" | "kind" | "writable" | "unreadable" | "foreign"
    detail: str

    def line(self) -> str:
        return f"{self.path}: {self.detail}" if self.path != "." else self.detail


def verified(tree: Path) -> tuple[Manifest | None, str | None]:
    """(its manifest, None) when the published tree passes the cheap check,
    else (None, what is wrong: the first thing)."""
    manifest, found = _examine(tree, deep=False, limit=1)
    return (None, found[0].line()) if found else (manifest, None)


def verify(tree: Path) -> str | None:
    """None when the published tree passes the cheap check, else what is wrong (the first thing)."""
    return verified(tree)[1]


def damage(tree: Path, *, deep: bool = False, limit: int = 0) -> list[Damage]:
    """What differs between `tree` and its manifest (empty: nothing).

    Cheap (`deep=False`: what `launcher run`'s full path and doctor do): every
    entry's kind, size and mtime, so missing, added and resized files and
    most edits show.  Deep (`launcher cache verify`): every file's sha256
    too, and every write bit.  `limit` > 0 stops after that many findings.
    """
    return _examine(tree, deep=deep, limit=limit)[1]


def _examine(tree: Path, *, deep: bool, limit: int) -> tuple[Manifest | None, list[Damage]]:
    """The tree's manifest (None: the tree or its manifest is unusable) and the damage found."""
    try:
        top = os.lstat(tree)
    except OSError:
        return None, [Damage(".", "missing", "the tree is missing")]
    if not stat.S_ISDIR(top.st_mode):
        return None, [Damage(".", "kind", "not a directory (a symlink or a file); launcher never follows it")]
    manifest = read_manifest(tree)
    if manifest is None:
        return None, [Damage(".", "manifest", "manifest missing or unreadable")]
    if manifest.checksum != manifest.compute_checksum():
        return None, [Damage(".", "manifest", "manifest was modified after publishing")]
    out: list[Damage] = []
    foreign = _not_ours(top)
    if foreign is not None:
        out.append(Damage(".", "writable", foreign))
    elif top.st_mode & 0o222:
        out.append(Damage(".", "writable", "the tree is writable (published trees are read-only)"))
    return manifest, _entry_damage(tree, manifest, deep, limit, out)


def _not_ours(st: os.stat_result) -> str | None:
    """Rule 1 on one entry of a tree (its lstat is taken anyway): another
    user's, or writable by group or others, is damage whatever the depth."""
    if not safety.owned(st):
        return f"owned by uid {st.st_uid}, not by you (another user could choose what runs)"
    if st.st_mode & safety.LOOSE:
        return f"writable by group or others (mode {oct(st.st_mode & 0o7777)})"
    return None


def _entry_damage(tree: Path, manifest: Manifest, deep: bool, limit: int, out: list[Damage]) -> list[Damage]:
    """`out` plus every entry of the tree that differs from the manifest (up to `limit`)."""
    files = {f.path: f for f in manifest.files}
    dirs = set(_listed_dirs(tree, files))
    seen: set[str] = set()
    for rel, st in safety.walk(tree):
        if limit and len(out) >= limit:
            return out
        foreign = _not_ours(st)
        if foreign is not None:
            out.append(Damage(rel, "writable", foreign))
            continue
        if rel == MANIFEST:
            continue
        if stat.S_ISDIR(st.st_mode):
            if rel not in dirs:
                out.append(Damage(rel, "added", "a directory not in the manifest"))
            elif deep and st.st_mode & 0o222:
                out.append(Damage(rel, "writable", "writable (published trees are read-only)"))
            continue
        entry = files.get(rel)
        if entry is None:
            out.append(Damage(rel, "added", "not in the manifest (added after publishing)"))
            continue
        seen.add(rel)
        found = _file_damage(tree, rel, st, entry, deep)
        if found is not None:
            out.append(found)
    for rel in sorted(set(files) - seen):
        if limit and len(out) >= limit:
            break
        out.append(Damage(rel, "missing", "is missing"))
    return out


def _file_damage(tree: Path, rel: str, st: os.stat_result, entry: FileEntry, deep: bool) -> Damage | None:
    """What is wrong with one listed file (None: nothing the check looks at)."""
    if not stat.S_ISREG(st.st_mode):
        return Damage(rel, "kind", "not a regular file (a symlink?)")
    if st.st_size != entry.size:
        return Damage(rel, "changed", "changed size")
    if not deep:
        return Damage(rel, "changed", "was modified") if st.st_mtime_ns != entry.mtime_ns else None
    try:
        digest = _sha256(tree / rel)
    except OSError as exc:
        return Damage(rel, "unreadable", f"cannot be read ({exc.strerror or exc})")
    if digest != entry.sha256:
        return Damage(rel, "changed", "content differs from the manifest (sha256)")
    if st.st_mode & 0o222:
        return Damage(rel, "writable", "writable (published trees are read-only)")
    return None


def _listed_dirs(tree: Path, files: dict[str, FileEntry]) -> list[str]:
    """The directories a tree was published with (DIRS; older trees: those of its files)."""
    if DIRS in files:
        try:
            text = (tree / DIRS).read_text(encoding="utf-8", errors="surrogateescape")
            return [d for d in text.splitlines() if d and d != "."]
        except OSError:
            return []
    out = {str(Path(p).parent) for p in files}
    for d in list(out):
        out.update(str(x) for x in Path(d).parents)
    return sorted(out - {"."})


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", opener=_no_follow) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------- building


def ensure_tree(
    layout: CacheLayout,
    interp: Interpreter,
    spec: Spec,
    *,
    run_id: str = "",
    requested_by: str = "",
    lock_timeout: float = 900.0,
    failure_ttl: float = 60.0,
    damaged: str | None = None,
    build: str = "fallback",
    say: Callable[[str], None] | None = None,
    activity: Callable[[str], AbstractContextManager[object]] | None = None,
) -> TreeResult:
    """The published, valid tree for (interp, spec); build it if needed.

    `damaged`: what a deeper check than ours found wrong with the published
    tree (`launcher cache verify --repair`): rebuild it whatever we see.
    `build` is the source-build policy (see `install_command`); `say` gets
    one-line notes (a fallback to source builds); `activity(text)` wraps the
    slow part (waiting for the lock, installing) so callers can show progress.
    A cache that cannot take the build (full, over quota, read-only) is a
    BuildError like any other: the command runs without the tree.
    """
    if damaged is None:
        present = present_tree(layout, interp, spec)
        if present is not None:
            return present
    try:
        with (activity or _no_activity)(f"preparing the runtime for {interp.abi_key} "
                                        f"({' '.join(spec.requirements)})"):
            return _ensure_locked(layout, interp, spec, run_id=run_id, requested_by=requested_by,
                                  lock_timeout=lock_timeout, failure_ttl=failure_ttl, damaged=damaged,
                                  build=build, say=say)
    except OSError as exc:
        raise BuildError(f"cannot write to the cache {layout.root}: {exc.strerror or exc}",
                         fix="free space in it, or set LAUNCHER_CACHE_DIR elsewhere") from None


@contextlib.contextmanager
def _no_activity(text: str) -> Iterator[None]:
    yield


def present_tree(layout: CacheLayout, interp: Interpreter, spec: Spec) -> TreeResult | None:
    """The published tree, if it is there and valid (reads only).  A link (or
    a file, or another user's tree) where our tree should be is refused:
    never used, never replaced behind the user's back."""
    target = layout.tree(interp.abi_key, spec.hash)
    odd = safety.dir_problem(target)
    if odd is not None and not safety.real_dir(target):
        raise odd.error()
    if odd is not None or not os.path.lexists(target):
        return None  # another user's or a loosened tree: set aside and rebuilt, never used
    manifest, _problem = verified(target)
    return TreeResult(target, "present", manifest) if manifest is not None else None


def _ensure_locked(layout: CacheLayout, interp: Interpreter, spec: Spec, *, run_id: str, requested_by: str,
                   lock_timeout: float, failure_ttl: float, damaged: str | None, build: str,
                   say: Callable[[str], None] | None) -> TreeResult:
    from filelock import FileLock, Timeout

    target = layout.tree(interp.abi_key, spec.hash)
    if read_only(layout.trees):
        raise BuildError(f"it is not in the cache {layout.root}, which is read-only",
                         fix="prewarm it with 'launcher prewarm' where the cache is writable")
    layout.ensure()
    spec.save(layout)
    lock_path = layout.lock(interp.abi_key, spec.hash)
    lock = FileLock(str(lock_path), timeout=lock_timeout, mode=0o600)
    try:
        lock.acquire()
    except Timeout:
        holder = lock_holder(lock_path)
        raise BuildError(
            f"timed out after {lock_timeout:.0f}s waiting for the build lock {lock_path}"
            + (f" held by pid {holder}" if holder else ""),
            fix="wait for that build to finish, or raise LAUNCHER_LOCK_TIMEOUT",
        ) from None
    try:
        try:
            safety.write_file(layout.root, "locks", lock_holder_path(lock_path).name, str(os.getpid()).encode())
        except (OSError, safety.UntrustedCache):
            pass  # only says who holds the lock, in a timeout message
        # Double-checked: the holder before us may have published it.
        manifest, problem = (verified(target) if damaged is None and os.path.lexists(target)
                             else (None, damaged or "missing"))
        if manifest is not None:
            _log_install(layout, interp, spec, run_id, requested_by, "reused", 0.0, target)
            return TreeResult(target, "present", manifest)
        recent = recent_failure(layout, interp.abi_key, spec.hash, failure_ttl)
        if recent is not None:
            raise BuildError(f"{recent.error} (failed {time.time() - recent.at:.0f}s ago)")
        _clean_stale_tmps(layout, interp.abi_key, spec.hash)
        start = time.time()
        try:
            manifest = _build(layout, interp, spec, target, build=build, say=say, replacing=_identity(target))
        except BuildError as exc:
            _remember_failure(layout, interp, spec, exc)
            _log_install(layout, interp, spec, run_id, requested_by, "failed", time.time() - start, target, exc.message)
            raise
        state = "built" if problem == "missing" else "rebuilt"
        _log_install(layout, interp, spec, run_id, requested_by, state, time.time() - start, target,
                     None if problem == "missing" else problem)
        return TreeResult(target, state, manifest)
    finally:
        try:
            with safety.opened(layout.root, "locks") as fd:
                os.unlink(lock_holder_path(lock_path).name, dir_fd=fd)
        except (OSError, safety.UntrustedCache):
            pass
        lock.release()


def lock_holder_path(lock_path: Path) -> Path:
    return lock_path.with_suffix(".pid")


def lock_holder(lock_path: Path) -> int | None:
    """The pid that wrote itself beside a build lock it holds (None: unknown)."""
    raw = safety.read_file(lock_path.parent.parent, lock_path.parent.name, lock_holder_path(lock_path).name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def install_command(uv: str, interp: Interpreter, spec: Spec, tmp: Path, *, binary_only: bool,
                    exact: tuple[str, ...] | None = None) -> list[str]:
    """The uv command that installs `spec` for `interp` into `tmp`.

    `exact` (the resolved list, launcher.resolve) installs exactly those
    with `--no-deps`: nothing is resolved again.  `binary_only` adds
    `--no-build`: resolve among wheels alone, so a newest release without a
    wheel for this ABI loses to an older one that has one (instead of
    compiling, or failing offline).
    """
    from launcher.uvcall import source_args

    cmd = [uv, "pip", "install", "--python", interp.executable, "--target", str(tmp),
           "--link-mode", "copy", "--compile-bytecode", "--quiet"]
    if binary_only:
        cmd += ["--no-build"]
    cmd += source_args(spec)
    if exact is not None:
        return cmd + ["--no-deps", "--", *exact]
    if spec.constraints:
        cmd += ["--constraint", str(tmp / CONSTRAINTS)]
    return cmd + ["--", *spec.requirements]


def _needs_build(stderr: str) -> list[str] | None:
    """The packages uv could only have built from source, or None (another failure)."""
    from launcher.uvcall import needs_build

    return needs_build(stderr)


def _install(uv: str, interp: Interpreter, spec: Spec, tmp: Path, *, build: str,
             say: Callable[[str], None] | None, exact: tuple[str, ...] | None = None) -> None:
    """Wheels first: binary-only, then (policy "fallback") with source builds
    only when no binary solution exists; "always" lets uv choose freely."""
    from launcher.uvcall import workdir

    env = installer_env()

    def run(binary_only: bool) -> subprocess.CompletedProcess[str]:
        if spec.constraints and exact is None:
            # Inside the temp dir (removed before the manifest is taken), so a
            # killed build leaves nothing the stale-temp sweep would miss.
            (tmp / CONSTRAINTS).write_text("".join(f"{c}\n" for c in spec.constraints), encoding="utf-8")
        try:
            return subprocess.run(install_command(uv, interp, spec, tmp, binary_only=binary_only, exact=exact),
                                  env=env, cwd=workdir(spec), capture_output=True, encoding="utf-8",
                                  errors="replace", stdin=subprocess.DEVNULL)
        finally:
            (tmp / CONSTRAINTS).unlink(missing_ok=True)

    what = " ".join(exact if exact is not None else spec.requirements)
    proc = run(binary_only=build != "always")
    if proc.returncode != 0 and build != "always":
        needs = _needs_build(proc.stderr)
        if needs is not None and build == "never":
            names = ", ".join(needs) or what
            raise BuildError(
                f"no wheels of {names} for {interp.abi_key}, and build = \"never\" forbids source builds",
                fix="pin a version that publishes wheels for this interpreter, or allow builds with "
                    "--build fallback (LAUNCHER_BUILD=fallback)",
            ).with_log(proc.stderr)
        if needs is not None:
            if say is not None:
                say(f"no wheels of {', '.join(needs) or what} for {interp.abi_key}: building from source "
                    "(--build never would forbid that)")
            safety.remove(tmp)
            tmp.mkdir(mode=0o700)
            proc = run(binary_only=False)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        summary = _summarise_uv_error(lines)
        raise BuildError(
            f"installing {what} for {interp.abi_key} failed: {summary}",
            fix="run 'launcher doctor' for the installer's full output",
        ).with_log(proc.stderr)


def _build(layout: CacheLayout, interp: Interpreter, spec: Spec, target: Path, *, build: str = "fallback",
           say: Callable[[str], None] | None = None, replacing: tuple[int, int] | None = None) -> Manifest:
    from launcher.uvbin import find_uv, uv_version

    uv = find_uv()
    tmp = layout.scratch("tmp", target.name)
    with safety.opened(layout.root, "trees", create=True) as trees:
        os.mkdir(tmp.name, 0o700, dir_fd=trees)  # private while it is built; published 0555
    start = time.time()
    try:
        _install(uv, interp, spec, tmp, build=build, say=say, exact=_exact(uv, interp, spec, build, say))
        _compile_optimized(interp, tmp, target)
        bad = foreign_extensions(tmp, interp)
        if bad:
            rel, why = bad[0]
            raise BuildError(
                f"the installer produced {plural(len(bad), 'extension module')} {interp.abi_key} cannot import, "
                f"e.g. {rel} ({why})",
                fix="pin a version that publishes wheels for this interpreter",
            )
        plugins = _collect_plugins(tmp)
        if plugins:
            (tmp / PLUGINS).write_text("".join(f"{p}\n" for p in plugins), encoding="utf-8")
        (tmp / DIRS).write_text("".join(f"{d}\n" for d in _directories(tmp)), encoding="utf-8",
                                errors="surrogateescape")
        manifest = Manifest(
            format=TREE_FORMAT,
            abi_key=interp.abi_key,
            spec_hash=spec.hash,
            interpreter=interp.executable,
            interpreter_version=interp.version,
            requirements=list(spec.requirements),
            find_links=list(spec.find_links),
            index_url=spec.index_url,
            distributions=_distributions(tmp),
            plugins=plugins,
            built_at=time.time(),
            build_seconds=round(time.time() - start, 3),
            uv_version=uv_version(uv),
            files=_file_entries(tmp),
        )
        manifest.checksum = manifest.compute_checksum()
        _write_synced(tmp / MANIFEST, manifest.model_dump_json(indent=1))
        safety.freeze(tmp)
        _fsync_dir(tmp)
        winner = _publish(tmp, target, layout, replacing)
        if winner is not None:
            return winner
        _fsync_dir(target.parent)
        _forget_failure(layout, interp.abi_key, spec.hash)
        return manifest
    except BaseException:
        safety.remove(tmp)
        raise


def _exact(uv: str, interp: Interpreter, spec: Spec, build: str,
           say: Callable[[str], None] | None) -> tuple[str, ...]:
    """What this ABI installs: its list from the launch, else the job's pins
    resolved for it (a resolution failure is this tree's build failure)."""
    from launcher.errors import ResolutionError
    from launcher.resolve import for_abi

    try:
        return for_abi(uv, interp, spec, build, say)
    except ResolutionError as exc:
        raise BuildError(exc.message, fix=exc.fix).with_log(exc.log or "") from None


# Every optimisation level's bytecode ships in the tree, so that `python -O`,
# `-OO` or PYTHONOPTIMIZE (root ignores the read-only modes) find theirs and
# write nothing into a published tree.  Version-neutral: 3.8 and PyPy too.
_COMPILE = """
import compileall, os, sys
src, shown = sys.argv[1], sys.argv[2]
# In-process for a small tree (a worker pool costs more than it saves).
workers = 0 if sum(len(f) for _d, _s, f in os.walk(src)) > 2000 else 1
for level in (1, 2):
    compileall.compile_dir(src, ddir=shown, quiet=2, optimize=level, workers=workers)
"""


def _compile_optimized(interp: Interpreter, tmp: Path, target: Path) -> None:
    """The opt-1 and opt-2 bytecode uv's --compile-bytecode leaves out (a
    file that does not compile stays without, as at level 0)."""
    try:
        subprocess.run([interp.executable, "-I", "-S", "-c", _COMPILE, str(tmp), str(target)], env=installer_env(),
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass  # the tree still works; -O runs would compile in memory (root's would write)


def _summarise_uv_error(lines: list[str]) -> str:
    for ln in lines:
        s = ln.strip().lstrip("×").strip()
        if s.startswith(("No solution found", "Because")) or "not found" in s or "error:" in s:
            return s
    return lines[-1].strip() if lines else "no output"


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of what is at `path` now; None when nothing is."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _publish(tmp: Path, target: Path, layout: CacheLayout,
             replacing: tuple[int, int] | None = None) -> Manifest | None:
    """Rename the validated `tmp` to `target`, both relative to trees/ as
    opened (checked, never through a link): a component swapped meanwhile
    makes the publish fail, never land or delete anything elsewhere.

    `replacing` is the identity of the damaged tree at `target` when the
    build was decided.  None when ours is published, else the manifest of
    the valid tree another builder published since (ours is discarded)."""
    import errno

    with safety.opened(layout.root, "trees") as trees:
        try:
            st = os.stat(target.name, dir_fd=trees, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if (st.st_dev, st.st_ino) != replacing:
                # A builder our lock did not stop (another node on a shared
                # cache, whose locks are node-local) published it since we
                # looked: the first valid tree stays, workloads may run from it.
                manifest, _ = verified(target)
                if manifest is not None:
                    safety.remove_at(trees, tmp.name, tmp)
                    return manifest
            # An invalid tree (tampered, loosened, or from a killed pre-manifest
            # era): move it aside first so readers never see a half state.
            trash = layout.scratch("trash", target.name)
            try:
                os.rename(target.name, trash.name, src_dir_fd=trees, dst_dir_fd=trees)
            except FileNotFoundError:
                pass
            else:
                safety.remove_at(trees, trash.name, trash)
        try:
            os.rename(tmp.name, target.name, src_dir_fd=trees, dst_dir_fd=trees)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                # Someone without the lock (NFS) won the race: use theirs.
                safety.remove_at(trees, tmp.name, tmp)
                return read_manifest(target)
            raise
    return None


def installer_env() -> dict[str, str]:
    """The environment the installer runs in: it must not inject the launcher into itself."""
    from launcher.gate._launcher_miss import scrubbed_env

    env: dict[str, str] = scrubbed_env(os.environ)
    return env


def _file_entries(root: Path) -> list[FileEntry]:
    out = []
    for rel, st in safety.walk(root):
        if stat.S_ISDIR(st.st_mode):
            continue
        if not stat.S_ISREG(st.st_mode):
            raise BuildError(f"the installer left {rel} in the runtime tree, which is not a regular file "
                             "(a symlink?); runtime trees hold plain files only",
                             fix="report the package: wheels cannot contain links")
        out.append(FileEntry(path=rel, size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=_sha256(root / rel)))
    out.sort(key=lambda e: e.path)
    return out


def _directories(root: Path) -> list[str]:
    return ["."] + [rel for rel, st in safety.walk(root) if stat.S_ISDIR(st.st_mode)]


def _distributions(root: Path) -> list[Distribution]:
    out = []
    for meta in sorted(root.glob("*.dist-info/METADATA")):
        name = version = ""
        for line in meta.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Name:"):
                name = line[5:].strip()
            elif line.startswith("Version:"):
                version = line[8:].strip()
            elif not line:
                break
        out.append(Distribution(name=name, version=version))
    return out


def _collect_plugins(root: Path) -> list[str]:
    """`name = module:attr` lines of the `launcher.plugins` entry-point group."""
    import configparser

    out: list[str] = []
    for ep in sorted(root.glob("*.dist-info/entry_points.txt")):
        cp = configparser.ConfigParser(delimiters=("=",), interpolation=None)
        cp.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            cp.read(ep)
        except configparser.Error:
            continue
        if cp.has_section(PLUGIN_GROUP):
            out.extend(f"{k} = {v}" for k, v in cp.items(PLUGIN_GROUP))
    return out


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _clean_stale_tmps(layout: CacheLayout, abi_key: str, spec_hash: str) -> None:
    """Remove temp dirs of killed builds of this tree (we hold its lock).  One
    whose builder still runs is left alone: on a cache shared between
    machines (or mount namespaces) with node-local locks, holding the lock
    does not mean no one else is building."""
    name = layout.tree_name(abi_key, spec_hash)
    try:
        with safety.opened(layout.root, "trees") as trees:
            for entry in os.listdir(trees):
                if entry.startswith((f".tmp-{name}-", f".trash-{name}-")) and not _builder_runs(entry):
                    safety.remove_at(trees, entry, layout.trees / entry)
    except (OSError, safety.UntrustedCache):
        return


def _builder_runs(scratch_name: str) -> bool:
    """Does the process that made this `.tmp-`/`.trash-` dir (its name ends in
    `-<pid>-<ns>`) still run on this machine?"""
    pid = scratch_name.rsplit("-", 2)[-2]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------- failures and records


def recent_failure(layout: CacheLayout, abi_key: str, spec_hash: str, ttl: float) -> Failure | None:
    raw = safety.read_file(layout.root, "failures", layout.failure(abi_key, spec_hash).name)
    try:
        failure = Failure.model_validate_json(raw or b"")
    except ValueError:
        return None
    return failure if time.time() - failure.at < ttl else None


def last_failure(layout: CacheLayout, abi_key: str, spec_hash: str) -> Failure | None:
    return recent_failure(layout, abi_key, spec_hash, float("inf"))


def remember_failed(layout: CacheLayout, interp: Interpreter, spec: Spec, exc: BuildError, *,
                    run_id: str = "", requested_by: str = "launcher") -> None:
    """A tree that could not even be resolved: remembered and logged as a failed build."""
    _remember_failure(layout, interp, spec, exc)
    _log_install(layout, interp, spec, run_id, requested_by, "failed", 0.0,
                 layout.tree(interp.abi_key, spec.hash), exc.message)


def _forget_failure(layout: CacheLayout, abi_key: str, spec_hash: str) -> None:
    """A built tree's old failure record goes, relative to failures/ as opened."""
    try:
        with safety.opened(layout.root, "failures") as failures:
            os.unlink(layout.failure(abi_key, spec_hash).name, dir_fd=failures)
    except (OSError, safety.UntrustedCache):
        pass


def _remember_failure(layout: CacheLayout, interp: Interpreter, spec: Spec, exc: BuildError) -> None:
    failure = Failure(abi_key=interp.abi_key, spec_hash=spec.hash, interpreter=interp.executable,
                      error=exc.message, log=exc.log or "", at=time.time())
    try:
        safety.write_file(layout.root, "failures", layout.failure(interp.abi_key, spec.hash).name,
                          failure.model_dump_json(indent=1).encode())
    except (OSError, safety.UntrustedCache):
        pass  # a full cache: the failure is reported now, just not remembered


def _log_install(layout: CacheLayout, interp: Interpreter, spec: Spec, run_id: str, requested_by: str,
                 result: str, seconds: float, target: Path, detail: str | None = None) -> None:
    record = {"at": time.time(), "result": result, "abi_key": interp.abi_key, "spec": spec.hash,
              "tree": str(target), "interpreter": interp.executable, "run_id": run_id,
              "pid": os.getpid(), "requested_by": requested_by, "seconds": round(seconds, 3),
              "detail": detail}
    try:
        with safety.opened(layout.root, "log", create=True) as fd:
            safety.append_at(fd, layout.installs_log.name, (json.dumps(record) + "\n").encode())
    except (OSError, safety.UntrustedCache):
        pass  # a full cache: the install happened (or failed), unlogged


def read_installs(layout: CacheLayout) -> list[dict]:
    raw = safety.read_file(layout.root, "log", layout.installs_log.name)
    lines = (raw or b"").decode("utf-8", "replace").splitlines()
    out: list[dict] = []
    for ln in lines:
        try:
            out.append(json.loads(ln))
        except ValueError:
            continue
    return out
