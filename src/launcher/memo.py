"""Remember a prepared `launcher run` for the warm path (_launcher_warm).

The full path's side of the memo: after a clean plan it writes the
invocation's entry and its shared, content-addressed plan, keeps the newest
MAX_ENTRIES entries of each Python, and caches the warm path's own bytecode.
Kept apart from _launcher_warm so the warm path loads none of this.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from _launcher_warm import VERSION, cache_root, entry_path, key, py_tag, signature, tree_digest
from launcher.cache import safety

MAX_ENTRIES = 64


def remember(args: list[str], environ: Mapping[str, str], cwd: str,
             argv: list[str], ours: dict[str, str], ld_preload: str | None,
             watch: list[str], root: str, watch_trees: list[str] | tuple[str, ...] = (),
             supervised: tuple[float | None, float | None] | None = None) -> None:
    """Store a clean plan for the next identical invocation (best effort);
    `supervised` is (timeout, kill_after) when it runs under `launcher.supervise`."""
    if cache_root(environ) != root:
        return
    plan = (dict(ours), ld_preload, tuple((p, signature(p)) for p in watch),
            tuple((t, tree_digest(t)) for t in watch_trees))
    # Version 2: no back-references, so equal plans give equal bytes.
    digest = hashlib.sha256(marshal.dumps(plan, 2)).hexdigest()[:16]
    plan_name = f"plan-{py_tag()}-{digest}.marshal"
    text = key(args, environ, cwd)
    # Every write and delete relative to memo/ as opened and checked: a
    # component swapped for a link meanwhile is refused, never followed.
    try:
        with safety.opened(Path(root), "memo", create=True) as memo:
            if plan_name not in os.listdir(memo):
                _write(memo, plan_name, marshal.dumps(plan))
            _write(memo, entry_path(root, text).rsplit("/", 1)[1],
                   marshal.dumps((VERSION, text, tuple(argv), plan_name, supervised)))
            _evict(memo)
    except (OSError, safety.UntrustedCache):
        pass  # a full, read-only or untrusted cache: no memo, the next run takes the full path
    ensure_bytecode()


def _write(memo: int, name: str, data: bytes) -> None:
    safety.write_at(memo, name, data)  # exactly 0600 whatever the umask, never through a link
    # A fine-grained mtime (the kernel's is per tick): eviction goes by it.
    now = time.time_ns()
    os.utime(name, ns=(now, now), dir_fd=memo, follow_symlinks=False)


def _evict(memo: int) -> None:
    """Keep the newest MAX_ENTRIES entries of this Python and the plans they name."""
    runs, plans = f"run-{py_tag()}-", f"plan-{py_tag()}-"
    names = os.listdir(memo)
    old = f"run-{py_tag()}.marshal"  # the single memo file earlier versions kept: never read now
    if old in names:
        try:
            os.unlink(old, dir_fd=memo)
        except FileNotFoundError:
            pass  # a concurrent run removed it first
    entries = sorted((n for n in names if n.startswith(runs)), key=lambda n: _mtime(memo, n))
    for n in entries[:-MAX_ENTRIES]:
        os.unlink(n, dir_fd=memo)
    entries = entries[-MAX_ENTRIES:]
    if len(entries) < MAX_ENTRIES and sum(n.startswith(plans) for n in names) <= len(entries):
        return  # nothing evicted, and plans stay no more than entries: bounded
    _drop_unnamed_plans(memo, [n for n in names if n.startswith(plans)], entries)


def _mtime(memo: int, name: str) -> int:
    return os.stat(name, dir_fd=memo, follow_symlinks=False).st_mtime_ns


def _drop_unnamed_plans(memo: int, plans: list[str], entries: list[str]) -> None:
    kept = set()
    for n in entries:
        try:
            fd = os.open(n, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=memo)
            with open(fd, "rb") as f:
                kept.add(marshal.loads(f.read())[3])
        except (OSError, ValueError, EOFError, TypeError, IndexError):
            continue
    now = time.time_ns()
    for n in plans:
        try:
            # A plan younger than a minute may be a concurrent run's, its entry not written yet.
            if n not in kept and now - _mtime(memo, n) > 60 * 10**9:
                os.unlink(n, dir_fd=memo)
        except OSError:
            pass


# The modules the warm path imports (tests/test_gate_imports.py holds it to these).
FAST_MODULES = ("_launcher_warm", "launcher", "launcher.__main__", "launcher.execute")
# ...and, under --supervise, these (stdlib-only as well).
SUPERVISE_MODULES = ("launcher.supervise", "launcher._proctree")


def ensure_bytecode() -> None:
    """Cache the warm path's own bytecode (best effort, full path only).

    Under PYTHONDONTWRITEBYTECODE the import system never writes it (an
    editable or `uv` install ships none), and compiling these modules at every
    warm start would cost more than the rest of the fast path: like the gate,
    write it ourselves once, and again only when a source changed.
    """
    if not sys.dont_write_bytecode:
        return
    import importlib.util
    import py_compile

    for name in (*FAST_MODULES, *SUPERVISE_MODULES):
        mod = sys.modules.get(name)
        src, cached = getattr(mod, "__file__", None), getattr(mod, "__cached__", None)
        if not src or not cached:
            continue
        try:
            st = os.stat(src)
            with open(cached, "rb") as f:
                head = f.read(16)
            if head[:4] == importlib.util.MAGIC_NUMBER and (
                    head[4:8] != b"\0\0\0\0"  # hash-based: the import system checks it itself
                    or (int.from_bytes(head[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
                        and int.from_bytes(head[12:16], "little") == st.st_size & 0xFFFFFFFF)):
                continue
        except OSError:
            pass
        try:
            py_compile.compile(src, cfile=cached, doraise=True)
        except (OSError, py_compile.PyCompileError):
            pass
