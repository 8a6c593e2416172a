"""The cache and the installer: is the cache usable and safe, is uv there, what was left behind?

Read-only: doctor never creates the cache, takes no lock longer than a
non-blocking test, and removes nothing (it names the command that would).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from launcher.cache import CacheLayout, safety
from launcher.doctor.models import Finding, fail, ok, warn
from launcher.words import plural

LOW_SPACE = 1 << 30  # below this, a runtime with torch-sized wheels will not fit
NO_SPACE = 100 << 20
REMOTE_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse", "fuse.sshfs", "lustre", "gpfs", "beegfs",
             "9p", "ceph", "glusterfs")


def cache_findings(layout: CacheLayout, lock_timeout: float) -> list[Finding]:
    root = layout.root
    if not root.exists():
        parent = _existing_parent(root)
        if parent is None or not os.access(parent, os.W_OK | os.X_OK):
            return [fail("cache", f"cache dir {root} does not exist and {parent} is not writable, so it "
                                  "cannot be created", "set LAUNCHER_CACHE_DIR to a writable directory",
                         path=str(root), exists=False)]
        return [ok("cache", f"cache dir {root} does not exist yet; the first launcher run creates it (mode 700)",
                   path=str(root), exists=False), _space(parent)]
    if not root.is_dir():
        return [fail("cache", f"cache dir {root} is not a directory", f"remove {root}, or set "
                              "LAUNCHER_CACHE_DIR to a directory", path=str(root), exists=True)]
    out = [_owner_and_mode(layout)]
    if not os.access(root, os.W_OK | os.X_OK):
        out.append(fail("cache", f"cache dir {root} is not writable by you",
                        "set LAUNCHER_CACHE_DIR to a writable directory", path=str(root)))
    out.append(_space(root))
    fs = _filesystem(root)
    if fs and (fs in REMOTE_FS or fs.startswith("fuse")):
        out.append(warn("cache", f"cache dir {root} is on {fs}: build locks may only be local to this host, so "
                                 "jobs on several hosts can build the same tree at once (the publish stays "
                                 "atomic and correct)", "point LAUNCHER_CACHE_DIR at a local disk to build "
                                                        "each tree once", filesystem=fs))
    out.append(gate_finding(layout))
    out.extend(lock_findings(layout, lock_timeout))
    out.extend(temp_findings(layout))
    return out


def gate_finding(layout: CacheLayout) -> Finding:
    """The published gate of this launcher version must be the one shipped with it."""
    from launcher.bootstrap import GATE_SOURCE, bootstrap_dir

    gate = bootstrap_dir(layout) / "sitecustomize.py"
    try:
        published = gate.read_bytes()
    except OSError:
        return ok("cache", "the gate of this launcher version is written on the first launcher run",
                  gate=str(gate), present=False)
    if published != GATE_SOURCE.read_bytes():
        return fail("cache", f"{gate} differs from the gate this launcher ships (modified after publishing)",
                    f"rm -rf {gate.parent} (the next launcher run writes it again)", gate=str(gate))
    return ok("cache", f"the gate {gate} matches this launcher version", gate=str(gate), present=True)


def _existing_parent(p: Path) -> Path | None:
    for parent in p.parents:
        if parent.exists():
            return parent
    return None


def _owner_and_mode(layout: CacheLayout) -> Finding:
    """The trust rule `launcher run` enforces (`safety.check`), with the same line and fix."""
    root = layout.root
    found = safety.problems(layout)
    found += safety.code_dir_problems(layout) if not found else []
    if found:
        first = found[0]
        return fail("cache", f"{first.path} {first.what}" + (f" (and {len(found) - 1} more)" if len(found) > 1
                                                              else "") + "; launcher run refuses to use it",
                    first.fix, path=str(root), problems=[p.line() for p in found])
    st = root.stat()
    return ok("cache", f"cache dir {root} is yours and not writable by others (mode "
                       f"{oct(st.st_mode & 0o7777)})", path=str(root), exists=True)


def _space(path: Path) -> Finding:
    usage = shutil.disk_usage(path)
    free = f"{usage.free / (1 << 30):.1f} GiB free"
    facts: dict[str, Any] = {"path": str(path), "free_bytes": usage.free, "total_bytes": usage.total}
    if usage.free < NO_SPACE:
        return fail("cache", f"{free} on the disk of {path}: runtime trees will not fit",
                    "free disk space, or set LAUNCHER_CACHE_DIR to a bigger disk", **facts)
    if usage.free < LOW_SPACE:
        return warn("cache", f"only {free} on the disk of {path}: a large runtime may not fit",
                    "free disk space, or set LAUNCHER_CACHE_DIR to a bigger disk", **facts)
    return ok("cache", f"{free} on the disk of {path}", **facts)


def _filesystem(path: Path) -> str | None:
    """The type of the filesystem holding `path`, from /proc/self/mounts (longest mount point)."""
    try:
        lines = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best, kind = "", None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
            best, kind = mount, parts[2]
    return kind


def _pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.pid_exists(pid)
    except Exception:
        return False


def _cmdline(pid: int) -> str:
    import psutil

    try:
        return " ".join(psutil.Process(pid).cmdline())[:160]
    except Exception:
        return ""


def _is_held(lock: Path) -> bool | None:
    """True when someone holds the flock on `lock` (a non-blocking test, released at once)."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing releases a lock we took
    return False


def lock_findings(layout: CacheLayout, lock_timeout: float) -> list[Finding]:
    if os.path.lexists(layout.locks) and not safety.real_dir(layout.locks):
        return []  # a link or a file: the trust check reports it; never read through
    try:
        locks = sorted(layout.locks.glob("*.lock"))
        pids = sorted(layout.locks.glob("*.pid"))
    except OSError:
        return []
    out = []
    held = 0
    for lock in locks:
        pid_file = lock.with_suffix(".pid")
        state = _is_held(lock)
        try:
            pid: int | None = int(pid_file.read_text(encoding="utf-8"))
            since: float | None = pid_file.stat().st_mtime
        except (OSError, ValueError):
            pid, since = None, None
        tree = lock.name[: -len(".lock")]
        if state:
            held += 1
            who = f"pid {pid} ({_cmdline(pid) or 'no longer visible'})" if pid else "another process (holder unknown)"
            age = time.time() - since if since else 0.0
            facts: dict[str, Any] = {"lock": str(lock), "tree": tree, "pid": pid,
                                     "held_seconds": round(age, 1)}
            if since and age > lock_timeout:
                out.append(warn("lock", f"the build lock of {tree} has been held by {who} for {age / 60:.0f} min, "
                                        f"longer than the lock timeout ({lock_timeout:.0f}s): waiting launches "
                                        "give up", f"check whether pid {pid} is stuck (kill it to free the lock)",
                                **facts))
            else:
                out.append(ok("lock", f"the build lock of {tree} is held by {who}: a build is in progress",
                              **facts))
        elif pid is not None and not _pid_alive(pid):
            out.append(warn("lock", f"pid {pid} was killed while building {tree} (its lock is free again)",
                            f"nothing to do: the next launch rebuilds it; rm {pid_file} to tidy up",
                            lock=str(lock), tree=tree, pid=pid))
    for pid_file in pids:
        if not pid_file.with_suffix(".lock").exists():
            out.append(warn("lock", f"{pid_file} has no lock file beside it (left by a killed build)",
                            f"rm {pid_file}", record=str(pid_file)))
    if not out:
        out.append(ok("lock", f"no build in progress ({plural(len(locks), 'lock file')}, none held)",
                      locks=len(locks), held=held))
    return out


def temp_findings(layout: CacheLayout) -> list[Finding]:
    """`.tmp-*` dirs of installs (trees/) and gate publishes (bootstrap/): live or left behind."""
    out = []
    for parent in (layout.trees, layout.bootstrap):
        if not safety.real_dir(parent):
            continue  # a link or a file there is reported by the trust check
        try:
            temps = sorted(parent.glob(".tmp-*")) + sorted(parent.glob(".trash-*"))
        except OSError:
            continue
        for tmp in temps:
            pid = _pid_of_temp(tmp, parent == layout.trees)
            if pid is not None and _pid_alive(pid):
                out.append(ok("temp", f"{tmp.name}: an install by pid {pid} is in progress",
                              path=str(tmp), pid=pid, stale=False))
                continue
            size = safety.size(tmp)
            builder = f"pid {pid} is gone" if pid is not None else "its builder is unknown"
            out.append(warn("temp", f"{tmp} was left by a killed install ({builder}; "
                                    f"{size / 1e6:.1f} MB)", f"rm -rf {tmp} (the next build of that tree also "
                                                             "removes it)",
                            path=str(tmp), pid=pid, stale=True, bytes=size))
    if not out:
        out.append(ok("temp", "no temp dirs left by killed installs"))
    return out


def _pid_of_temp(tmp: Path, tree_tmp: bool) -> int | None:
    # trees/.tmp-<tree>-<pid>-<ns>, bootstrap/.tmp-<digest>-<pid>
    parts = tmp.name.rsplit("-", 2 if tree_tmp else 1)
    try:
        return int(parts[1])
    except (IndexError, ValueError):
        return None


def installer_findings() -> list[Finding]:
    """uv: the installer every runtime tree is built with."""
    from launcher.errors import BuildError
    from launcher.uvbin import find_uv, uv_version

    try:
        uv = find_uv()
    except BuildError as exc:
        return [fail("installer", exc.message, exc.fix, uv=None)]
    version = uv_version(uv)
    if version is None:
        return [fail("installer", f"uv at {uv} does not run (`uv --version` failed)",
                     "pip install --force-reinstall uv (or unset LAUNCHER_UV)", uv=uv)]
    return [ok("installer", f"{version} at {uv}", uv=uv, version=version)]
