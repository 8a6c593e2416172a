"""What makes the cache safe to run code from, and the one way to touch it.

Trust (the rule ssh's StrictModes and sudo apply): the cache root and every
directory and file under it that the launcher, the gate or the shims read,
run or write must be ours (or root's), not a link, and writable by nobody
else -- checked where it is used, not once per area.  A sticky world-writable
directory (like /tmp) is never the root: other users may create the areas in
it first.  Otherwise another user could plant code every launch imports, or
a link root writes through, so we refuse, with one line that names the fix.

Touching: everything goes through this module -- `opened` descends from the
root one checked component at a time (O_NOFOLLOW, O_DIRECTORY) and creates
what is missing with an explicit mode whatever the umask; `write_at`,
`append_at`, `read_at` work relative to such a directory; `walk` and
`remove` work on directory file descriptors, never descend through a
symlink (a link is at most unlinked itself), and make our own read-only
directories writable again before emptying them (published trees are
immutable).
"""

from __future__ import annotations

import contextlib
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

# Areas of the cache: each must be a real directory of ours nobody else can write, when it exists.
AREAS = ("trees", "bootstrap", "shims", "specs", "memo", "locks", "failures", "probes", "runs", "log", "used",
         "spill", "replicas")
# What a read-only shared cache serves to other users (readable, never writable by them); the rest is private.
SHARED = ("trees", "bootstrap", "shims")
SHARED_MODE, PRIVATE_MODE = 0o755, 0o700


def area_mode(name: str) -> int:
    return SHARED_MODE if name in SHARED else PRIVATE_MODE


def owned(st: os.stat_result) -> bool:
    """Ours, or root's (root can write anything anyway)."""
    return st.st_uid == os.getuid() or st.st_uid == 0


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


def dir_problem(path: Path, *, follow: bool = False) -> Problem | None:
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
    return stat_problem(path, st, root=follow)


def stat_problem(path: Path, st: os.stat_result, *, root: bool = False) -> Problem | None:
    """Rule 1 on what `path` is (an lstat or fstat): ours or root's, and
    writable by nobody else.  `root`: the cache root, where a sticky
    world-writable directory gets its own explanation."""
    if not owned(st):
        me = _user(os.getuid())
        return Problem(path, f"is owned by {_user(st.st_uid)} (uid {st.st_uid}), not by you ({me}): its "
                             "owner decides what every launch runs",
                       f"chown -R {me} {path}, or set LAUNCHER_CACHE_DIR to a directory you own")
    if root and st.st_mode & LOOSE and st.st_mode & stat.S_ISVTX:
        return Problem(path, f"is a shared sticky directory (mode {oct(st.st_mode & 0o7777)}, like /tmp): "
                             "other users could create the cache's directories in it before you",
                       f"set LAUNCHER_CACHE_DIR to a directory of your own inside it "
                       f"(mkdir -m 700 {path}/launcher)")
    if st.st_mode & LOOSE:
        what = "directory" if stat.S_ISDIR(st.st_mode) else "file"
        return Problem(path, f"is writable by group or others (mode {oct(st.st_mode & 0o7777)}): another "
                             "user could plant code that every launch runs",
                       f"chmod {'go-w' if what == 'file' else '700'} {path}, or set LAUNCHER_CACHE_DIR "
                       "to a directory only you can write")
    return None


def name_problem(root: Path) -> Problem | None:
    """A cache path every interpreter can carry: valid UTF-8 (the workload's
    os.environ must encode it), no newline (records are lines) and no
    os.pathsep (PYTHONPATH)."""
    text = str(root)
    try:
        os.fsencode(text).decode("utf-8")
    except UnicodeDecodeError:
        return Problem(Path(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")),
                       "is not valid UTF-8, which child interpreters cannot carry in their environment",
                       "set LAUNCHER_CACHE_DIR to a UTF-8 path")
    if "\n" in text or "\r" in text:
        return Problem(Path(text.replace("\n", "\\n").replace("\r", "\\r")), "contains a newline",
                       "set LAUNCHER_CACHE_DIR to a path without newlines")
    if os.pathsep in text:
        return Problem(root, f"contains {os.pathsep!r}, which PYTHONPATH cannot carry",
                       f"set LAUNCHER_CACHE_DIR to a path without {os.pathsep!r}")
    return None


def _entries_problem(directory: Path) -> Problem | None:
    """The first entry of a code directory (the gate's, a shim dir) that breaks rule 1."""
    try:
        fd = os.open(directory, _DIR_FLAGS)
    except OSError:
        return None  # absent, or dir_problem said why
    try:
        for entry in os.scandir(fd):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                return Problem(directory / entry.name, "is a symlink; launcher never follows links "
                               "inside its cache", f"rm {directory / entry.name}")
            found = stat_problem(directory / entry.name, st)
            if found is not None:
                return found
    finally:
        os.close(fd)
    return None


def problems(layout: CacheLayout, *, extra: tuple[Path, ...] = ()) -> list[Problem]:
    """Every reason not to trust this cache (empty: trust it).  `extra`: code
    directories to hold to the rule with every entry in them (the gate's
    dir and its __pycache__, a shim dir)."""
    out = []
    for found in (name_problem(layout.root), dir_problem(layout.root, follow=True)):
        if found is not None:
            return [found]
    for name in AREAS:
        p = dir_problem(layout.root / name)
        if p is not None:
            out.append(p)
    for path in extra:
        p = dir_problem(path) or _entries_problem(path)
        if p is not None:
            out.append(p)
    return out


def code_dir_problems(layout: CacheLayout) -> list[Problem]:
    """Rule 1 on every directory of code outside the trees, and all in them:
    each gate in bootstrap/ (and its __pycache__), each shim dir in shims/.
    What `cache verify` and `doctor` report; `launcher run` checks the ones it uses."""
    out = []
    for area in (layout.bootstrap, layout.shims):
        try:
            names = sorted(os.listdir(area)) if real_dir(area) else []
        except OSError:
            continue
        for name in names:
            path = area / name
            if not real_dir(path):
                found = dir_problem(path) or stat_problem(path, os.lstat(path))
                if found is not None:
                    out.append(found)
                continue
            for d in (path, path / "__pycache__"):
                found = dir_problem(d) or _entries_problem(d)
                if found is not None:
                    out.append(found)
    return out


def check(layout: CacheLayout, *, extra: tuple[Path, ...] = ()) -> None:
    """Refuse (UntrustedCache, exit 2) unless the cache is safe to run code from."""
    found = problems(layout, extra=extra)
    if found:
        raise found[0].error()


# ------------------------------------------------------ at an open directory


def _fd_problem(fd: int, where: Path, *, root: bool = False) -> Problem | None:
    return stat_problem(where, os.fstat(fd), root=root)


def open_dir(root: Path, *parts: str, create: bool = False, mode: int | None = None) -> int:
    """A descriptor of root/parts..., reached one checked component at a time:
    each opened relative to the last with O_NOFOLLOW | O_DIRECTORY and held to
    rule 1 on the opened object itself, so no component can be swapped
    between the check and the use.  `create`: make missing components, with
    `mode` (default: each area's own) whatever the umask.  UntrustedCache
    when a component breaks the rule; OSError otherwise (FileNotFoundError:
    absent and not created)."""
    fd = os.open(root, _DIR_FLAGS & ~getattr(os, "O_NOFOLLOW", 0))  # the root may be a link the user made
    where = root
    try:
        found = _fd_problem(fd, where, root=True)
        if found is not None:
            raise found.error()
        for i, part in enumerate(parts):
            where = where / part
            want = mode if mode is not None else (area_mode(part) if i == 0 else PRIVATE_MODE)
            try:
                sub = _open_sub(part, fd, create, want)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    odd = dir_problem(where)
                    if odd is not None:
                        raise odd.error() from None
                raise
            os.close(fd)
            fd = sub
            found = _fd_problem(fd, where)
            if found is not None:
                raise found.error()
        return fd
    except BaseException:
        os.close(fd)
        raise


def _open_sub(name: str, dir_fd: int, create: bool, mode: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            raise
    try:
        os.mkdir(name, mode, dir_fd=dir_fd)
    except FileExistsError:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)  # a concurrent launch made it
    sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    os.fchmod(sub, mode)  # the umask decides nothing
    return sub


@contextlib.contextmanager
def opened(root: Path, *parts: str, create: bool = False, mode: int | None = None) -> Iterator[int]:
    """`open_dir` as a context manager."""
    fd = open_dir(root, *parts, create=create, mode=mode)
    try:
        yield fd
    finally:
        os.close(fd)


_FILE_FLAGS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def write_at(dir_fd: int, name: str, data: bytes, mode: int = 0o600) -> None:
    """Replace `name` in the directory `dir_fd` atomically: a new file of
    exactly `mode`, renamed over it (never written through a link)."""
    tmp = f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, mode, dir_fd=dir_fd)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)  # a full disk leaves no temp file behind
        raise


def append_at(dir_fd: int, name: str, data: bytes, mode: int = 0o600) -> None:
    """Append to `name` (created with `mode`): never through a link, never to
    a file another user owns or can write."""
    fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _FILE_FLAGS, mode, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not owned(st) or st.st_mode & LOOSE:
            raise PermissionError(errno.EPERM, "not a private file of ours", name)
        os.write(fd, data)
    finally:
        os.close(fd)


def read_at(dir_fd: int, name: str) -> bytes | None:
    """The bytes of `name`, when it is a regular file of ours nobody else can
    write (None otherwise: absent, a link, foreign or loose -- never trusted)."""
    try:
        fd = os.open(name, os.O_RDONLY | _FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not owned(st) or st.st_mode & LOOSE:
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_file(root: Path, area: str, name: str) -> bytes | None:
    """`read_at` of root/area/name, every component checked (None: absent or untrusted)."""
    try:
        with opened(root, area) as fd:
            return read_at(fd, name)
    except (OSError, UntrustedCache):
        return None


def write_file(root: Path, area: str, name: str, data: bytes, mode: int = 0o600) -> None:
    """`write_at` into root/area (created when missing), every component checked."""
    with opened(root, area, create=True) as fd:
        write_at(fd, name, data, mode)


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


def remove_at(dir_fd: int, name: str, where: Path) -> list[str]:
    """`remove` of the entry `name` of the open directory `dir_fd` (shown as
    `where`): the directory it sits in cannot be swapped for a link meanwhile."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [f"{where}: {exc.strerror or exc}"]
    errors: list[str] = []
    if not stat.S_ISDIR(st.st_mode):
        _unlink(name, dir_fd, errors, str(where.parent))
        return errors
    try:
        fd = _open_dir(name, dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # replaced by a link meanwhile: unlink the link
            _unlink(name, dir_fd, errors, str(where.parent))
            return errors
        return [f"{where}: {exc.strerror or exc}"]
    try:
        _empty(fd, str(where), errors)
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except OSError as exc:
        errors.append(f"{where}: {exc.strerror or exc}")
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
    """Make a tree immutable and readable by all, whatever the umask or the
    installer's modes: directories 0555, files 0444 (0555 when executable)."""
    for rel, st in walk(root):
        if stat.S_ISDIR(st.st_mode):
            os.chmod(root / rel, 0o555)
        elif stat.S_ISREG(st.st_mode):
            os.chmod(root / rel, 0o555 if st.st_mode & stat.S_IXUSR else 0o444)
    os.chmod(root, 0o555)


def real_dir(path: Path) -> bool:
    """`path` is a directory itself, not a link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
