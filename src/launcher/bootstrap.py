"""The bootstrap dir: the directory put first on PYTHONPATH.

It holds only our `sitecustomize.py` (the gate) and the parts of it the gate
loads on demand (`_launcher_preloads.py`, `_launcher_miss.py`).  Its name is the digest of
the gate's source, so a launcher upgrade never mixes gates, concurrent
launches share one copy, and it is published by atomic rename.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import stat
from pathlib import Path

from launcher.cache import CacheLayout, safety

GATE_SOURCE = Path(__file__).with_name("gate") / "sitecustomize.py"
# The gate and the parts it loads on demand from beside itself (preloads, miss path).
GATE_FILES = (GATE_SOURCE, GATE_SOURCE.with_name("_launcher_preloads.py"),
              GATE_SOURCE.with_name("_launcher_miss.py"))
GATE_FILE_MODE = 0o644
PYCACHE = "__pycache__"


@functools.cache
def gate_digest() -> str:
    return hashlib.sha256(b"".join(f.read_bytes() for f in GATE_FILES)).hexdigest()[:12]


def bootstrap_dir(layout: CacheLayout) -> Path:
    return layout.bootstrap / gate_digest()


def ensure_bootstrap(layout: CacheLayout) -> Path:
    """The gate's directory, published whole: 0755 with 0644 files and an
    empty 0755 __pycache__ (the launcher writes the bytecode of each
    interpreter it prepares, `probe.probe(compile_gate=...)`), whatever the
    umask, every step relative to the checked bootstrap/ area."""
    target = bootstrap_dir(layout)
    with safety.opened(layout.root, "bootstrap", create=True) as area:
        try:
            with safety.opened(layout.root, "bootstrap", target.name) as fd:
                missing = [f for f in GATE_FILES if not _is_file(fd, f.name)]
                if not missing and _is_dir(fd, PYCACHE):
                    return target
                # A cleaner removed a file of ours: put back what is missing.
                for f in missing:
                    safety.write_at(fd, f.name, f.read_bytes(), GATE_FILE_MODE)
                _make_pycache(fd)
                return target
        except FileNotFoundError:
            pass
        tmp = f".tmp-{gate_digest()}-{os.getpid()}"
        safety.remove(layout.bootstrap / tmp)
        os.mkdir(tmp, safety.SHARED_MODE, dir_fd=area)
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=area)
            try:
                os.fchmod(fd, safety.SHARED_MODE)
                for f in GATE_FILES:
                    safety.write_at(fd, f.name, f.read_bytes(), GATE_FILE_MODE)
                _make_pycache(fd)
            finally:
                os.close(fd)
            os.rename(tmp, target.name, src_dir_fd=area, dst_dir_fd=area)
        except OSError as exc:
            safety.remove(layout.bootstrap / tmp)
            if isinstance(exc, FileExistsError) or exc.errno == errno.ENOTEMPTY:
                return target  # another launch published the same gate first (theirs is identical)
            raise
        except BaseException:
            safety.remove(layout.bootstrap / tmp)  # a full disk leaves no temp dir behind
            raise
    return target


def _is_file(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _is_dir(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _make_pycache(dir_fd: int) -> None:
    """Made by us, 0755: an interpreter's import system would make it 0777 under umask 000."""
    try:
        os.mkdir(PYCACHE, safety.SHARED_MODE, dir_fd=dir_fd)
    except FileExistsError:
        return
    os.chmod(PYCACHE, safety.SHARED_MODE, dir_fd=dir_fd)


def code_dirs(layout: CacheLayout) -> tuple[Path, Path]:
    """The gate's directory and its __pycache__: what every interpreter runs."""
    boot = bootstrap_dir(layout)
    return boot, boot / PYCACHE
