"""Inspecting and cleaning the cache: what `launcher cache` does.

Trees are enumerated from their manifests.  *Last used* is the latest of

- the mtime of ``<cache>/used/<tree>``, a stamp `plan.prepare` touches
  whenever it ensures a tree (`launcher run`'s full path, `prewarm`, the API);
  without a stamp (a tree the gate built on its miss path), the build time
  from the manifest;
- the tree directory's access time, which the kernel updates when an
  interpreter lists the directory to import from it (at most once a day on
  the default `relatime` mounts, never on `noatime` ones).

The gate's hit path and `run`'s warm fast path record nothing: they must stay
free.  Nothing here reads a valid tree's directories (sizes come from the
manifest; invalid trees are measured with O_NOATIME), so looking does not
count as using.

"Held" is concrete: a tree is not removed while (1) another process holds its
build lock, (2) a live process has a file under it open or mapped, has its
cwd or a PYTHONPATH entry in it, or (3) a live process was started under
`launcher run` for this cache and this requirement set and its interpreter
has the tree's ABI (or is not a known interpreter: a shell or an agent that
may start one).  A removal takes the lock without waiting, re-checks, and
renames the tree aside before deleting it, so a process starting meanwhile
sees either the whole tree or none (and then rebuilds it).  Symlinks are
never followed: a symlinked entry is refused, and every deletion goes
through `safety.remove` (file descriptors, O_NOFOLLOW, read-only trees made
writable first).  The commands refuse a cache `safety.check` does not trust.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from launcher.cache import safety
from launcher.cache.layout import CacheLayout, default_cache_dir
from launcher.errors import UsageError

_STALE = re.compile(r"^\.(tmp|trash)-(?P<tree>.+)-(?P<pid>\d+)-(?P<ns>\d+)$")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "": 86400}


def layout_for(cache_dir: str | None) -> CacheLayout:
    """The cache a command works on: the resolved cache-dir setting or the default."""
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return CacheLayout(root.absolute())


# ------------------------------------------------------------------ last used


def used_stamp(layout: CacheLayout, name: str) -> Path:
    return layout.used / name


def mark_used(layout: CacheLayout, tree: Path) -> None:
    """Record that a tree was just prepared for use (one utime; best effort)."""
    try:
        with safety.opened(layout.root, "used", create=True) as fd:  # never through a link
            try:
                os.utime(tree.name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                stamp = os.open(tree.name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                                dir_fd=fd)
                os.fchmod(stamp, 0o600)
                os.close(stamp)
    except (OSError, safety.UntrustedCache):
        pass


def parse_age(text: str) -> float:
    """`30d`, `12h`, `90m`, `45s`, `2w` (a bare number is days) -> seconds."""
    m = _AGE.match(text)
    if not m:
        raise UsageError(f"--older-than {text!r} is not an age",
                         fix="use a number with a unit: 30d, 12h, 90m, 45s or 2w")
    return float(m.group(1)) * _UNITS[m.group(2)]


# ----------------------------------------------------------------- enumerate


@dataclass
class TreeInfo:
    name: str
    path: str
    status: str  # "valid" | "invalid" | "incomplete" | "symlink"
    problem: str | None
    abi_key: str | None
    spec_hash: str | None
    interpreter: str | None
    interpreter_version: str | None
    requirements: list[str]
    distributions: list[str]
    size: int
    built_at: float | None
    last_used: float
    last_used_from: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_trees(layout: CacheLayout) -> list[TreeInfo]:
    """Every published (or half-published) tree, sorted by name; stale build dirs excluded."""
    try:
        names = layout.tree_names()
    except OSError:
        return []
    return [info for n in names if (info := tree_info(layout, n)) is not None]


def tree_info(layout: CacheLayout, name: str) -> TreeInfo | None:
    """None when the tree is gone (removed since it was listed)."""
    from launcher.tree import MANIFEST, read_manifest, verify

    path = layout.trees / name
    try:
        st = os.lstat(path)
    except OSError:
        return None
    abi_key, _, spec_hash = name.rpartition("-")
    base: dict[str, Any] = dict(name=name, path=str(path), problem=None, abi_key=abi_key or None,
                                spec_hash=spec_hash or None, interpreter=None, interpreter_version=None,
                                requirements=[], distributions=[], built_at=None)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return _odd_entry(base, st, "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory")
    manifest = read_manifest(path)
    if manifest is not None:
        base.update(abi_key=manifest.abi_key, spec_hash=manifest.spec_hash,
                    interpreter=manifest.interpreter, interpreter_version=manifest.interpreter_version,
                    requirements=list(manifest.requirements),
                    distributions=[f"{d.name}=={d.version}" for d in manifest.distributions],
                    built_at=manifest.built_at)
    problem: str | None
    if not os.path.lexists(path / MANIFEST):
        status, problem = "incomplete", "no manifest (a build that never finished publishing)"
    else:
        problem = verify(path)
        status = "valid" if problem is None else "invalid"
    if status == "valid" and manifest is not None:
        # From the manifest: measuring would read the directories and bump
        # their access time, i.e. look like a use.
        size = sum(f.size for f in manifest.files)
    else:
        size = safety.size(path)
    last, source = _last_used(layout, name, st, manifest.built_at if manifest else None)
    return TreeInfo(**base | {"problem": problem}, status=status, size=size,
                    last_used=last, last_used_from=source)


def _odd_entry(base: dict[str, Any], st: os.stat_result, what: str) -> TreeInfo:
    status = "symlink" if stat.S_ISLNK(st.st_mode) else "invalid"
    return TreeInfo(**base | {"problem": f"{what}; never followed or removed by launcher"},
                    status=status, size=st.st_size, last_used=st.st_mtime,
                    last_used_from="modified")


def _last_used(layout: CacheLayout, name: str, st: os.stat_result,
               built_at: float | None) -> tuple[float, str]:
    candidates: list[tuple[float, str]] = [(st.st_atime, "access time")]
    try:
        candidates.append((os.lstat(used_stamp(layout, name)).st_mtime, "prepared"))
    except OSError:
        candidates.append((built_at, "built") if built_at is not None else (st.st_mtime, "modified"))
    return max(candidates)


def stale_build_dirs(layout: CacheLayout) -> list[Path]:
    """`.tmp-*` (builds) and `.trash-*` (trees moved aside) under trees/."""
    if not safety.real_dir(layout.trees):
        return []
    try:
        return sorted(layout.trees / n for n in os.listdir(layout.trees) if _STALE.match(n))
    except OSError:
        return []


# -------------------------------------------------------------------- holders


@dataclass(frozen=True)
class Holder:
    pid: int
    name: str
    why: str

    def line(self) -> str:
        return f"pid {self.pid} ({self.name}: {self.why})"


def find_holders(layout: CacheLayout, trees: Iterable[TreeInfo]) -> dict[str, list[Holder]]:
    """Live processes holding each tree (one pass over the process table)."""
    import psutil

    trees = [t for t in trees if t.status != "symlink"]
    out: dict[str, list[Holder]] = {t.name: [] for t in trees}
    if not trees:
        return out
    root = os.path.realpath(layout.root)
    prefixes = {t.name: os.path.realpath(t.path) for t in trees}
    abi_of_exe = _known_abis(layout, trees)
    me = os.getpid()

    def under(p: str) -> list[str]:
        return [n for n, pre in prefixes.items() if p == pre or p.startswith(pre + os.sep)]

    for proc in psutil.process_iter(["pid", "name"]):
        if proc.pid == me:
            continue
        name = proc.info.get("name") or "?"
        found: dict[str, str] = {}
        try:
            environ = proc.environ()
        except (psutil.Error, OSError):
            environ = {}
        cache = environ.get("LAUNCHER_CACHE_DIR")
        spec = environ.get("LAUNCHER_SPEC")
        if cache and spec and os.path.realpath(cache) == root:
            try:
                exe_abi = abi_of_exe.get(os.path.realpath(proc.exe()))
            except (psutil.Error, OSError):
                exe_abi = None
            for t in trees:
                if t.spec_hash == spec and (exe_abi is None or exe_abi == t.abi_key):
                    found.setdefault(t.name, "started under 'launcher run' with this requirement set")
        for entry in environ.get("PYTHONPATH", "").split(os.pathsep):
            if entry:
                for n in under(os.path.realpath(entry)):
                    found.setdefault(n, "has it on PYTHONPATH")
        for p, why in _paths_in_use(proc):
            for n in under(p):
                found.setdefault(n, why)
        for n, why in found.items():
            out[n].append(Holder(proc.pid, name, why))
    return out


def probed(layout: CacheLayout) -> Iterator[dict[str, Any]]:
    """The readable records of the probe cache (each an interpreter's facts), in name order."""
    import json

    if not safety.real_dir(layout.probes):
        return
    for p in sorted(layout.probes.glob("*.json")):
        try:
            data = json.loads(safety.read_file(layout.root, "probes", p.name) or b"")
        except ValueError:
            continue
        if isinstance(data, dict):
            yield data


def _known_abis(layout: CacheLayout, trees: list[TreeInfo]) -> dict[str, str]:
    """realpath of an interpreter -> its ABI key, from the probe cache and the
    manifests: a process running one of these is known not to need other ABIs."""
    out: dict[str, str] = {}
    for data in probed(layout):
        try:
            out[os.path.realpath(data["realpath"])] = data["abi_key"]
        except (KeyError, TypeError):
            continue
    for t in trees:
        if t.interpreter and t.abi_key:
            out[os.path.realpath(t.interpreter)] = t.abi_key
    return out


def _paths_in_use(proc: Any) -> list[tuple[str, str]]:
    """Files a process has mapped or open, and its cwd (what it may read any moment)."""
    import psutil

    paths: list[tuple[str, str]] = []
    try:
        paths.append((proc.cwd(), "its working directory is in it"))
    except (psutil.Error, OSError):
        pass
    try:
        # /proc/PID/maps is far cheaper than psutil's smaps-based memory_maps().
        with open(f"/proc/{proc.pid}/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    paths.append((parts[5].rstrip("\n").removesuffix(" (deleted)"), "has files in it mapped"))
    except OSError:
        try:
            paths.extend((m.path, "has files in it mapped") for m in proc.memory_maps())
        except (psutil.Error, OSError, NotImplementedError, AttributeError):
            pass
    try:
        paths.extend((f.path, "has files in it open") for f in proc.open_files())
    except (psutil.Error, OSError):
        pass
    return paths


# ------------------------------------------------------------------- removing


@dataclass
class Removal:
    path: str
    kind: str  # "tree" | "build-dir" | "run-record" | "failure-record" | "probe" | "memo" | "stamp"
    size: int
    reason: str


@dataclass
class Skip:
    path: str
    kind: str
    reason: str
    pids: list[int] = field(default_factory=list)


@dataclass
class Report:
    dry_run: bool
    removed: list[Removal] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(r.size for r in self.removed)

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "freed_bytes": self.freed,
                "removed": [asdict(r) for r in self.removed],
                "skipped": [asdict(s) for s in self.skipped]}


def prune(layout: CacheLayout, older_than: float, *, dry_run: bool = False,
          now: float | None = None, failure_ttl: float | None = None) -> Report:
    """Remove trees unused for `older_than` seconds (and every invalid or
    incomplete one), stale build dirs, run records that old, and failure
    records that old or past `failure_ttl` (expired: they stop nothing)."""
    now = time.time() if now is None else now
    cutoff = now - older_than
    failure_cutoff = cutoff if failure_ttl is None else max(cutoff, now - failure_ttl)

    def why(t: TreeInfo) -> str | None:
        if t.status in ("invalid", "incomplete"):
            return f"{t.status}: {t.problem}"
        if t.last_used < cutoff:
            return f"last used {ago(t.last_used, now)} ({t.last_used_from})"
        return None

    return _sweep(layout, Report(dry_run=dry_run), why, cutoff, failure_cutoff)


def remove(layout: CacheLayout, names: Iterable[str], *, dry_run: bool = False) -> Report:
    """Remove the named trees (whatever their age) unless a process holds them."""
    wanted = set(names)
    report = Report(dry_run=dry_run)
    _remove_trees(layout, [(t, "named") for t in list_trees(layout) if t.name in wanted and t.status != "symlink"],
                  report)
    _remove_orphan_stamps(layout, report)
    return report


def clear(layout: CacheLayout, *, dry_run: bool = False) -> Report:
    """Remove every tree not held, stale build dirs, run and failure records,
    the probe cache and the fast-path memo.  Kept: requirement sets (a running
    job's workers rebuild from them), the gate, shims, locks and the installs
    log."""
    report = _sweep(layout, Report(dry_run=dry_run), lambda t: "clear", float("inf"))
    _remove_files(layout, "probes", "*.json", "probe", float("inf"), report)
    _remove_files(layout, "memo", "*", "memo", float("inf"), report)
    return report


def _sweep(layout: CacheLayout, report: Report, why: Callable[[TreeInfo], str | None],
           cutoff: float, failure_cutoff: float | None = None) -> Report:
    """Remove the trees `why` names a reason for (never a symlinked entry, never
    a held tree), stale build dirs, and run/failure records older than `cutoff`."""
    doomed = []
    for t in list_trees(layout):
        if t.status == "symlink":
            report.skipped.append(Skip(t.path, "tree", "is a symlink; launcher never follows "
                                                        "links out of the cache"))
        elif (reason := why(t)) is not None:
            doomed.append((t, reason))
    _remove_trees(layout, doomed, report)
    _remove_stale_build_dirs(layout, report)
    _remove_files(layout, "runs", "*.jsonl", "run-record", cutoff, report)
    _remove_files(layout, "failures", "*.json", "failure-record",
                  cutoff if failure_cutoff is None else failure_cutoff, report)
    _remove_orphan_stamps(layout, report)
    return report


def _remove_trees(layout: CacheLayout, doomed: list[tuple[TreeInfo, str]], report: Report) -> None:
    if not doomed:
        return
    holders = find_holders(layout, [t for t, _ in doomed])
    for t, reason in doomed:
        held = holders.get(t.name, [])
        if held:
            report.skipped.append(Skip(t.path, "tree", "in use by " + ", ".join(h.line() for h in held),
                                       [h.pid for h in held]))
            continue
        skip = _remove_locked(layout, Path(t.path), t.name, report.dry_run)
        if skip is not None:
            report.skipped.append(skip)
            continue
        report.removed.append(Removal(t.path, "tree", t.size, reason))
        # Its use stamp, now an orphan, goes with the others (_remove_orphan_stamps).


def _remove_locked(layout: CacheLayout, path: Path, name: str, dry_run: bool) -> Skip | None:
    """Under the tree's lock (not waiting): move aside, then delete.  None when done.
    Every step is relative to trees/ as opened: swapping it for a link meanwhile changes nothing."""
    try:
        with safety.opened(layout.root, "trees") as trees:
            return _remove_locked_at(layout, trees, path, name, dry_run)
    except (OSError, safety.UntrustedCache) as exc:
        return Skip(str(path), "tree", f"cannot open {layout.trees}: {getattr(exc, 'strerror', None) or exc}")


def _remove_locked_at(layout: CacheLayout, trees: int, path: Path, name: str, dry_run: bool) -> Skip | None:
    from filelock import FileLock, Timeout

    from launcher.tree import lock_holder

    try:
        st = os.stat(name, dir_fd=trees, follow_symlinks=False)
    except FileNotFoundError:
        return Skip(str(path), "tree", "already gone")
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return Skip(str(path), "tree", "not a real directory; never followed or removed")
    lock_path = layout.tree_lock(name)
    try:
        os.close(safety.open_dir(layout.root, "locks", create=True))
        lock = FileLock(str(lock_path), timeout=0, mode=0o600)
        lock.acquire()
    except Timeout:
        pid = lock_holder(lock_path)
        return Skip(str(path), "tree", "its build lock is held"
                    + (f" by pid {pid} (building it)" if pid else " by another process"),
                    [pid] if pid else [])
    except (OSError, safety.UntrustedCache) as exc:
        return Skip(str(path), "tree", f"cannot take its lock {lock_path}: {getattr(exc, 'strerror', None) or exc}")
    try:
        if dry_run:
            return None
        trash = layout.scratch("trash", name)
        try:
            os.rename(name, trash.name, src_dir_fd=trees, dst_dir_fd=trees)
        except OSError as exc:
            return Skip(str(path), "tree", f"cannot move it aside: {exc.strerror or exc}")
    finally:
        lock.release()
    left = safety.remove_at(trees, trash.name, trash)
    if left:
        return Skip(str(path), "tree", f"moved aside to {trash} but could not remove all of it: {left[0]}")
    return None


def _remove_stale_build_dirs(layout: CacheLayout, report: Report) -> None:
    """A `.tmp-`/`.trash-` dir is stale when its tree's lock is free and the
    process that made it is gone."""
    import psutil
    from filelock import FileLock, Timeout

    for p in stale_build_dirs(layout):
        m = _STALE.match(p.name)
        assert m is not None
        pid = int(m.group("pid"))
        if not os.path.lexists(p):
            continue  # its build finished meanwhile
        if not safety.real_dir(p):
            report.skipped.append(Skip(str(p), "build-dir", "not a real directory; never followed"))
            continue
        if pid != os.getpid() and psutil.pid_exists(pid):
            report.skipped.append(Skip(str(p), "build-dir", f"its builder pid {pid} is still running",
                                       [pid]))
            continue
        lock = FileLock(str(layout.tree_lock(m.group("tree"))), timeout=0, mode=0o600)
        try:
            os.close(safety.open_dir(layout.root, "locks", create=True))
            lock.acquire()
        except (Timeout, OSError, safety.UntrustedCache):
            report.skipped.append(Skip(str(p), "build-dir", "its tree is being built"))
            continue
        try:
            size = safety.size(p)
            with safety.opened(layout.root, "trees") as trees:
                left = [] if report.dry_run else safety.remove_at(trees, p.name, p)
        except (OSError, safety.UntrustedCache) as exc:
            left = [str(exc)]
        finally:
            lock.release()
        if left:
            report.skipped.append(Skip(str(p), "build-dir", f"could not remove all of it: {left[0]}"))
            continue
        report.removed.append(Removal(str(p), "build-dir", size, "left by a build that did not finish"))


def _remove_files(layout: CacheLayout, area: str, pattern: str, kind: str, cutoff: float,
                  report: Report) -> None:
    """Regular files of one area, each examined and unlinked relative to the
    area as opened (one checked component at a time): a racer swapping the
    area for a link meanwhile makes nothing outside the cache go."""
    import fnmatch

    directory = layout.root / area
    try:
        fd = safety.open_dir(layout.root, area)
    except (OSError, safety.UntrustedCache):
        return  # absent, or not ours to look through (the commands refuse such a cache first)
    try:
        names = sorted(n for n in os.listdir(fd) if not n.startswith(".") and fnmatch.fnmatchcase(n, pattern))
        for name in names:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_mtime >= cutoff:
                continue
            left: list[str] = []
            if not report.dry_run:
                safety._unlink(name, fd, left, str(directory))
            if left:
                report.skipped.append(Skip(str(directory / name), kind, f"cannot be removed: {left[0]}"))
                continue
            report.removed.append(Removal(str(directory / name), kind, st.st_size,
                                          "clear" if cutoff == float("inf") else "older than the cutoff"))
    except OSError:
        return
    finally:
        os.close(fd)


def _remove_orphan_stamps(layout: CacheLayout, report: Report) -> None:
    """Use stamps of trees that are gone (removed just now, or by hand).  A
    use stamp is a plain file; anything else there is left alone and named."""
    try:
        fd = safety.open_dir(layout.root, "used")
    except (OSError, safety.UntrustedCache):
        return
    try:
        for n in os.listdir(fd):
            if os.path.lexists(layout.trees / n) or report.dry_run:
                continue
            try:
                st = os.stat(n, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            stamp = used_stamp(layout, n)
            if stat.S_ISDIR(st.st_mode):
                report.skipped.append(Skip(str(stamp), "stamp", "is a directory where a use stamp should be; "
                                                                f"launcher leaves it alone (rm -r {stamp})"))
                continue
            with contextlib.suppress(OSError):
                os.unlink(n, dir_fd=fd)  # a file, or a link itself: never what it points to
    except OSError:
        return
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- info


def info(layout: CacheLayout) -> dict[str, Any]:
    trees = list_trees(layout)
    stale = stale_build_dirs(layout)
    # Trees are measured from their manifests (walking them would look like a use).
    areas = {"trees": sum(t.size for t in trees) + sum(safety.size(p) for p in stale)}
    for name in ("runs", "log", "probes", "specs", "failures", "bootstrap", "shims", "memo",
                 "locks", "used"):
        areas[name] = safety.size(layout.root / name)  # 0 for a link: never followed
    by_status: dict[str, int] = {}
    for t in trees:
        by_status[t.status] = by_status.get(t.status, 0) + 1
    runs = list(layout.runs.glob("*.jsonl")) if safety.real_dir(layout.runs) else []
    return {
        "root": str(layout.root),
        "exists": layout.root.is_dir(),
        "total_bytes": sum(areas.values()),
        "areas": areas,
        "trees": len(trees),
        "trees_by_status": by_status,
        "tree_bytes": sum(t.size for t in trees),
        "stale_build_dirs": len(stale),
        "run_records": len(runs),
        "least_recently_used": min((t.last_used for t in trees), default=None),
        "most_recently_used": max((t.last_used for t in trees), default=None),
    }


# -------------------------------------------------------------------- display


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def ago(t: float, now: float | None = None) -> str:
    d = max(0.0, (time.time() if now is None else now) - t)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if d >= size:
            n = int(d // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"
