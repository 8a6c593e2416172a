# The warm path of `launcher run`: when this exact invocation (argv, cwd,
# PATH, LAUNCHER_* settings) was prepared before and nothing it depends on
# has changed since (every watched file keeps its stat signature: config
# files, interpreters, shims, the gate, every file of every runtime tree),
# exec straight away without importing click, pydantic or uv.  Stdlib only,
# and only modules the interpreter has already loaded (marshal, os, sys).
import marshal
import os
import sys

from launcher import execute

VERSION = 1
MAX_ENTRIES = 64


def cache_root(environ: "os._Environ[str] | dict[str, str]") -> str:
    # Must equal cache.default_cache_dir() (platformdirs) on Linux; a test
    # keeps the two in step.  Elsewhere the fast path is simply not used.
    root = environ.get("LAUNCHER_CACHE_DIR")
    if root:
        return os.path.abspath(os.path.expanduser(root))
    xdg = environ.get("XDG_CACHE_HOME", "").strip()
    if not xdg or not os.path.isabs(xdg):
        xdg = os.path.expanduser("~/.cache")
    return os.path.join(xdg, "launcher")


def memo_path(root: str) -> str:
    return f"{root}/memo/run-{sys.version_info[0]}{sys.version_info[1]}.marshal"


def key(args: "list[str]", environ: "os._Environ[str] | dict[str, str]", cwd: str) -> tuple:
    settings = tuple(sorted((k, v) for k, v in environ.items()
                            if k.startswith("LAUNCHER_") and k != "LAUNCHER_RUN_ID"))
    return (VERSION, tuple(args), cwd, environ.get("PATH"), settings)


def signature(path: str) -> "tuple[int, int, int] | None":
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def try_fast(args: "list[str]") -> None:
    """Exec the memoised plan for `launcher <args>`, or return to take the full path."""
    environ = os.environ
    if not sys.platform.startswith("linux") or environ.get("LAUNCHER_NO_FASTPATH"):
        return
    try:
        cwd = os.getcwd()
        with open(memo_path(cache_root(environ)), "rb") as f:
            memo = marshal.loads(f.read())
        rec = memo.get(key(args, environ, cwd))
    except (OSError, ValueError, EOFError, TypeError, AttributeError):
        return
    if rec is None:
        return
    argv, ours, ld_preload, watched = rec
    for path, sig in watched:
        if signature(path) != sig:
            return
    if ("-v" in args or "--verbose" in args) and verbose(args):
        try:
            os.write(2, (f"launcher: warm start: {len(watched)} watched files unchanged, reusing the "
                         f"prepared plan; exec {' '.join(argv)}\n").encode("utf-8", "replace"))
        except OSError:
            pass
    env = execute.child_env(environ, ours, ld_preload)
    sys.exit(execute.exec_command(list(argv), env))


# `launcher run` options that take no value (every other option takes one).
FLAGS = ("-q", "--quiet", "-v", "--verbose", "--offline", "--record")


def verbose(args: "list[str]") -> bool:
    """Whether `launcher run` itself got -v (not the command after it)."""
    it = iter(args[1:])
    for a in it:
        if a in ("-v", "--verbose"):
            return True
        if a == "--" or not a.startswith("-"):
            return False
        if a not in FLAGS and "=" not in a:
            next(it, None)
    return False


def remember(args: "list[str]", environ: "os._Environ[str] | dict[str, str]", cwd: str,
             argv: "list[str]", ours: "dict[str, str]", ld_preload: "str | None",
             watch: "list[str]", root: str) -> None:
    """Store a clean plan for the next identical invocation (best effort)."""
    if cache_root(environ) != root:
        return
    path = memo_path(root)
    watched = tuple((p, signature(p)) for p in watch)
    try:
        with open(path, "rb") as f:
            memo = marshal.loads(f.read())
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, ValueError, EOFError, TypeError):
        memo = {}
    k = key(args, environ, cwd)
    memo.pop(k, None)
    memo[k] = (tuple(argv), dict(ours), ld_preload, watched)
    while len(memo) > MAX_ENTRIES:
        memo.pop(next(iter(memo)))
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(marshal.dumps(memo))
        os.replace(tmp, path)
    except OSError:
        pass
    ensure_bytecode()


# The modules the warm path imports (tests/test_gate_imports.py holds it to these).
FAST_MODULES = ("launcher", "launcher.__main__", "launcher._fastrun", "launcher.execute")


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

    for name in FAST_MODULES:
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
