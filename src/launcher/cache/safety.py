"""What makes the cache safe to run code from, and the one way to walk and delete in it.

Trust (the rule ssh applies to keys): the cache root and every directory
holding code -- the gate (bootstrap/), shims, runtime trees, the requirement
sets trees are built from and the warm path's memo (it names what to exec) --
must be real directories owned by the current user and writable by nobody
else.  Otherwise another user could plant code every launch imports, so we
refuse before anything runs, with one line that names the fix.

Walking and deleting: everything goes through `walk` and `remove`, which
work on directory file descriptors opened with O_NOFOLLOW, never descend
through a symlink (a link is at most unlinked itself), and make our own
read-only directories writable again before emptying them (published trees
are immutable).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from launcher.cache.layout import CacheLayout
from launcher.errors import UsageError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_NOATIME = getattr(os, "O_NOATIME", 0)
LOOSE = stat.S_IWGRP | stat.S_IWOTH

# Areas of the cache: each must be a real directory when it exists.
AREAS = ("trees", "bootstrap", "shims", "specs", "memo", "locks", "failures", "probes", "runs", "log", "used")
# The areas holding code (or what decides which code runs): ownership and mode are checked too.
CODE_AREAS = ("trees", "bootstrap", "shims", "specs", "memo")


class UntrustedCache(UsageError):
    """The cache (or a directory in it) is not safe to run code from."""


@dataclass(frozen=True)
class Problem:
    path: Path
    what: str  # e.g. "is writable by group or others (mode 0o777)"
    fix: str

    def error(self) -> UntrustedCache:
        return UntrustedCache(f"{self.path} {self.what}", fix=self.fix)

    def line(self) -> str:
        return self.error().line()


def _user(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def dir_problem(path: Path, *, code: bool, follow: bool = False, sticky_ok: bool = False) -> Problem | None:
    """Why `path` is not a directory we may use (None: it is, or it does not exist yet).

    `follow`: the path itself may be a symlink (the cache root, which users
    point where they like); nothing inside the cache is ever followed.
    """
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None  # not there (yet): creating it says what is wrong, if anything
    except OSError as exc:
        return Problem(path, f"cannot be inspected ({exc.strerror or exc})",
                       "set LAUNCHER_CACHE_DIR to a directory you own")
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return Problem(path, f"is a symlink (to {target}); launcher never follows links "
                             "inside its cache", f"rm {path} (launcher recreates it as a directory), or set "
                                                 "LAUNCHER_CACHE_DIR to the disk you want")
    if not stat.S_ISDIR(st.st_mode):
        return Problem(path, "is not a directory", f"remove {path}, or set LAUNCHER_CACHE_DIR to a directory")
    if not code:
        return None
    if st.st_uid != os.getuid():
        me = _user(os.getuid())
        return Problem(path, f"is owned by {_user(st.st_uid)} (uid {st.st_uid}), not by you ({me}): its "
                             "owner decides what every launch runs",
                       f"chown -R {me} {path}, or set LAUNCHER_CACHE_DIR to a directory you own")
    if st.st_mode & LOOSE and not (sticky_ok and st.st_mode & stat.S_ISVTX):
        return Problem(path, f"is writable by group or others (mode {oct(st.st_mode & 0o7777)}): another "
                             "user could plant code that every launch runs",
                       f"chmod 700 {path}, or set LAUNCHER_CACHE_DIR to a directory only you can write")
    return None


def problems(layout: CacheLayout, *, extra: tuple[Path, ...] = ()) -> list[Problem]:
    """Every reason not to trust this cache (empty: trust it).  `extra`: more
    code directories to hold to the rule (a bootstrap or shim dir, a tree)."""
    out = []
    root = dir_problem(layout.root, code=True, follow=True, sticky_ok=True)
    if root is not None:
        return [root]
    for name in AREAS:
        p = dir_problem(layout.root / name, code=name in CODE_AREAS)
        if p is not None:
            out.append(p)
    for path in extra:
        p = dir_problem(path, code=True)
        if p is not None:
            out.append(p)
    return out


def check(layout: CacheLayout, *, extra: tuple[Path, ...] = ()) -> None:
    """Refuse (UntrustedCache, exit 2) unless the cache is safe to run code from."""
    found = problems(layout, extra=extra)
    if found:
        raise found[0].error()


# ------------------------------------------------------------------ walking


def _open_dir(name: str | Path, dir_fd: int | None) -> int:
    # O_NOATIME where the kernel lets us (our own files): looking at a tree
    # (list, prune --dry-run, verify) must not look like using it.
    try:
        return os.open(name, _DIR_FLAGS | _NOATIME, dir_fd=dir_fd)
    except PermissionError:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def walk(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of every entry under the real directory `root`,
    parents before children; symlinks are reported, never descended into.
    Nothing at all when `root` is not a real directory."""
    try:
        fd = _open_dir(root, None)
    except OSError:
        return
    try:
        yield from _walk_fd(fd, "")
    finally:
        os.close(fd)


def _walk_fd(fd: int, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    try:
        entries = sorted(os.scandir(fd), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        rel = prefix + entry.name
        yield rel, st
        if stat.S_ISDIR(st.st_mode):
            try:
                sub = _open_dir(entry.name, fd)
            except OSError:
                continue
            try:
                yield from _walk_fd(sub, rel + "/")
            finally:
                os.close(sub)


def size(root: Path) -> int:
    """Bytes under `root` (never through a link)."""
    return sum(st.st_size for _rel, st in walk(root))


# ----------------------------------------------------------------- deleting


def remove(path: Path) -> list[str]:
    """Delete `path` without ever following a symlink: a link or a file is
    unlinked itself, a real directory is emptied through file descriptors
    (our own read-only directories are made writable first) and removed.
    Returns what could not be removed (empty: all gone)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [f"{path}: {exc.strerror or exc}"]
    errors: list[str] = []
    if not stat.S_ISDIR(st.st_mode):
        _unlink(str(path), None, errors)
        return errors
    try:
        fd = _open_dir(path, None)
    except OSError as exc:
        return [f"{path}: {exc.strerror or exc}"]
    try:
        _empty(fd, str(path), errors)
    finally:
        os.close(fd)
    _writable_parent(path.parent)
    try:
        os.rmdir(path)
    except OSError as exc:
        errors.append(f"{path}: {exc.strerror or exc}")
    return errors


def _writable_parent(parent: Path) -> None:
    try:
        st = os.lstat(parent)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & stat.S_IWUSR:
            os.chmod(parent, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)
    except OSError:
        pass


def _empty(fd: int, where: str, errors: list[str]) -> None:
    st = os.fstat(fd)
    if st.st_uid == os.getuid() and (st.st_mode & stat.S_IRWXU) != stat.S_IRWXU:
        try:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)
        except OSError:
            pass
    try:
        entries = list(os.scandir(fd))
    except OSError as exc:
        errors.append(f"{where}: {exc.strerror or exc}")
        return
    for entry in entries:
        name = entry.name
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if not is_dir:
            _unlink(name, fd, errors, where)
            continue
        try:
            sub = _open_dir(name, fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # replaced by a link meanwhile
                _unlink(name, fd, errors, where)
            else:
                errors.append(f"{where}/{name}: {exc.strerror or exc}")
            continue
        try:
            _empty(sub, f"{where}/{name}", errors)
        finally:
            os.close(sub)
        try:
            os.rmdir(name, dir_fd=fd)
        except OSError as exc:
            errors.append(f"{where}/{name}: {exc.strerror or exc}")


def _unlink(name: str, dir_fd: int | None, errors: list[str], where: str = "") -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        errors.append(f"{where + '/' if where else ''}{name}: {exc.strerror or exc}")


# --------------------------------------------------------------- immutability


def freeze(root: Path) -> None:
    """Make a tree immutable: no write bit on any file or directory under `root`."""
    for rel, st in walk(root):
        if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
            os.chmod(root / rel, stat.S_IMODE(st.st_mode) & ~0o222)
    os.chmod(root, stat.S_IMODE(os.lstat(root).st_mode) & ~0o222)


def real_dir(path: Path) -> bool:
    """`path` is a directory itself, not a link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
