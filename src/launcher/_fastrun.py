# The warm path of `launcher run`: when this exact invocation (argv, cwd,
# PATH, LAUNCHER_* settings) was prepared before and nothing it depends on
# has changed since, exec straight away without importing click, pydantic or
# uv.  Stdlib only, and only modules the interpreter has already loaded
# (marshal, os, sys).
#
# What it checks, in time that does not grow with the size of the trees or
# the number of remembered runs:
# - trust: the cache root and every area are real directories of ours (or
#   root's) that nobody else can write, and so are the memo entry and plan
#   (else the full path runs, and refuses with the line that names the fix);
#   the gate's directory, its __pycache__ and the shim dir are watched;
# - every watched file keeps its stat signature (or its absence): config
#   files, interpreters, shims, the gate, the launcher itself, manifests;
# - every runtime tree keeps its directory signature: one hash over (inode,
#   mtime, link count, mode, owner) of each of its directories.  Published
#   directories are read-only, so adding, removing or renaming a file
#   changes them; the full path then verifies the tree and rebuilds it.
#
# The memo: one small file per invocation (memo/run-<py>-<hash of the key>)
# naming a shared, content-addressed plan (memo/plan-<py>-<digest>), so one
# invocation's entry never slows another's and 64 invocations of one tree
# cost one plan.
#
# Not even `os`: the `launcher` script starts its python with -S, so nothing
# has imported os yet, and importing it (collections.abc's classes) would cost
# more than everything else here.  The builtin `posix` module has every call.
import marshal
import posix
import sys

from launcher import execute

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

VERSION = 3  # 3: entries say whether to supervise
MAX_ENTRIES = 64
DIRS = ".launcher-dirs"  # tree.DIRS: every directory of a published tree
# cache.safety.AREAS: every area must pass the rule, not only those this run reads.
TRUSTED = ("/trees", "/bootstrap", "/shims", "/specs", "/memo", "/locks", "/failures", "/probes", "/runs", "/log",
           "/used", "/spill", "/replicas")


def cache_root(environ: "Mapping[str, str]") -> "str | None":
    """The root the full path uses (config.cache_root: LAUNCHER_CACHE_DIR, else
    platformdirs' user cache dir, as `Path(...).expanduser().absolute()`) on
    Linux, or None where that needs more than the environment (a `~user`, no
    or a relative HOME): the full path decides.  A test keeps the two in step
    over every kind of value.  Elsewhere the fast path is simply not used."""
    root = environ.get("LAUNCHER_CACHE_DIR")
    if not root:
        xdg = environ.get("XDG_CACHE_HOME", "")
        # platformdirs ignores a relative one
        root = (xdg if xdg.startswith("/") else "~/.cache") + "/launcher"
    if root[:1] == "~":
        home = environ.get("HOME", "")
        if root[1:2] not in ("", "/") or not home.startswith("/"):
            return None
        root = home.rstrip("/") + root[1:] or "/"
    return absolute(root)


def absolute(path: str) -> str:
    """str(Path(path).absolute()) on Linux, without pathlib or os: empty and
    `.` parts dropped, `..` kept, a leading `//` (and only two) kept."""
    if not path.startswith("/"):
        path = posix.getcwd() + "/" + path
    lead = "//" if path[:2] == "//" and path[:3] != "///" else "/"
    return lead + "/".join(part for part in path.split("/") if part and part != ".")


def _tag() -> str:
    return f"{sys.version_info[0]}{sys.version_info[1]}"


def key(args: "list[str]", environ: "Mapping[str, str]", cwd: str) -> str:
    # uv's variables and where its user configuration lives choose the
    # trees too (launcher.uvconfig): a change re-plans.
    settings = sorted(f"{k}={v}" for k, v in environ.items()
                      if k.startswith(("LAUNCHER_", "UV_", "XDG_CONFIG_")) and k != "LAUNCHER_RUN_ID")
    # Which installation of the launcher (and which Python runs it) asks:
    # two installs sharing a cache must never exec each other's plans (their
    # gates, their own files watched, not this one's).
    return "\0".join([str(VERSION), __file__, sys.executable, cwd, environ.get("PATH") or "", *settings, "",
                      *args])


def entry_path(root: str, text: str) -> str:
    # hash() of an int is the same in every process (str hashing is salted):
    # a stable 64-bit name without importing hashlib.  The entry stores the
    # whole key, so two keys sharing a name only evict each other.
    h = hash(int.from_bytes(text.encode("utf-8", "surrogateescape"), "little")) & 0xFFFFFFFFFFFFFFFF
    return f"{root}/memo/run-{_tag()}-{h:016x}.marshal"


def signature(path: str) -> "tuple[int, int, int, int, int] | None":
    try:
        st = posix.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode, st.st_uid)


def tree_digest(tree: str) -> "int | None":
    """One hash over the signature of every directory of a published tree."""
    try:
        with open(tree + "/" + DIRS, "rb") as f:
            rels = f.read().decode("utf-8", "surrogateescape").split("\n")
    except (OSError, ValueError):
        return None
    sigs = []
    for rel in rels:
        if not rel:
            continue
        try:
            st = posix.lstat(tree if rel == "." else tree + "/" + rel)
        except OSError:
            return None
        sigs.append((st.st_ino, st.st_mtime_ns, st.st_nlink, st.st_mode, st.st_uid))
    return hash(tuple(sigs))


def trusted(root: str) -> bool:
    """The cache root and its areas are real directories of ours (or root's)
    nobody else can write; the root is not a sticky shared directory either.

    cache.safety's rule (and the gate's _untrusted), as a yes/no without
    pathlib: keep the three in step."""
    uid = posix.getuid()
    try:
        st = posix.stat(root)  # the root itself may be a link the user made
        if (st.st_uid != uid and st.st_uid != 0) or st.st_mode & 0o022:
            return False
    except OSError:
        return False
    for sub in TRUSTED:
        try:
            st = posix.lstat(root + sub)
        except FileNotFoundError:
            continue  # only we can create it (the root is ours alone)
        except OSError:
            return False
        if (st.st_uid != uid and st.st_uid != 0) or st.st_mode & 0o170022 != 0o040000:
            return False
    return True


def _ours(f: "object") -> bool:
    """An open memo file: a regular file of ours (or root's) nobody else can write."""
    st = posix.fstat(f.fileno())  # type: ignore[attr-defined]
    return (st.st_uid == posix.getuid() or st.st_uid == 0) and st.st_mode & 0o170022 == 0o100000


def try_fast(args: "list[str]") -> None:
    """Exec the memoised plan for `launcher <args>`, or return to take the full path."""
    if not sys.platform.startswith("linux"):
        return
    environ = execute.read_environ()
    if environ.get("LAUNCHER_NO_FASTPATH"):
        return
    try:
        cwd = posix.getcwd()
        root = cache_root(environ)
        if root is None or not trusted(root):
            return
        if "--refresh" in args and verbose(args, ("--refresh",)):
            return  # resolve again, forget failures: the full path's work
        text = key(args, environ, cwd)
        with open(entry_path(root, text), "rb") as f:
            if not _ours(f):
                return
            version, stored, argv, plan_name, supervised = marshal.loads(f.read())
        if version != VERSION or stored != text or "/" in plan_name:
            return
        with open(root + "/memo/" + plan_name, "rb") as f:
            if not _ours(f):
                return
            ours, ld_preload, watched, trees = marshal.loads(f.read())
        # A plan names only code in trusted places: this cache's gate and trees.
        if not ours.get("LAUNCHER_BOOTSTRAP", root + "/bootstrap/").startswith(root + "/bootstrap/"):
            return
        for path, sig in watched:
            if signature(path) != sig:
                return
        for tree, digest in trees:
            if not tree.startswith(root + "/trees/") or tree_digest(tree) != digest:
                return
        env = execute.child_env(environ, ours, ld_preload)
    except Exception:  # a memo we cannot use: the full path decides
        return
    if ("-v" in args or "--verbose" in args) and verbose(args):
        try:
            posix.write(2, (f"launcher: warm start: {len(watched)} watched files and {len(trees)} runtime "
                         f"tree{'s' if len(trees) != 1 else ''} unchanged, reusing the prepared plan; exec {' '.join(argv)}\n"
                         ).encode("utf-8", "replace"))
        except OSError:
            pass
    if supervised is not None:
        from launcher import supervise

        supervise.leave(supervise.run(list(argv), env, *supervised))
    sys.exit(execute.exec_command(list(argv), env))


# `launcher run` options that take no value (every other option takes one):
# the is_flag options of commands/run.py and commands/options.py.
FLAGS = ("-q", "--quiet", "-v", "--verbose", "--supervise", "--offline", "--isolated", "--refresh", "--record")


def verbose(args: "list[str]", names: "tuple[str, ...]" = ("-v", "--verbose")) -> bool:
    """Whether `launcher run` itself got -v (or another of `names`; not the command after it)."""
    it = iter(args[1:])
    for a in it:
        if a in names:
            return True
        if a == "--" or not a.startswith("-"):
            return False
        if a not in FLAGS and "=" not in a:
            next(it, None)
    return False


def remember(args: "list[str]", environ: "Mapping[str, str]", cwd: str,
             argv: "list[str]", ours: "dict[str, str]", ld_preload: "str | None",
             watch: "list[str]", root: str, watch_trees: "list[str] | tuple[str, ...]" = (),
             supervised: "tuple[float | None, float | None] | None" = None) -> None:
    """Store a clean plan for the next identical invocation (best effort);
    `supervised` is (timeout, kill_after) when it runs under `launcher.supervise`."""
    if cache_root(environ) != root:
        return
    import hashlib

    plan = (dict(ours), ld_preload, tuple((p, signature(p)) for p in watch),
            tuple((t, tree_digest(t)) for t in watch_trees))
    # Version 2: no back-references, so equal plans give equal bytes.
    digest = hashlib.sha256(marshal.dumps(plan, 2)).hexdigest()[:16]
    plan_name = f"plan-{_tag()}-{digest}.marshal"
    text = key(args, environ, cwd)
    from pathlib import Path

    from launcher.cache import safety

    # Every write and delete relative to memo/ as opened and checked: a
    # component swapped for a link meanwhile is refused, never followed.
    try:
        with safety.opened(Path(root), "memo", create=True) as memo:
            if plan_name not in posix.listdir(memo):
                _write(memo, plan_name, marshal.dumps(plan))
            _write(memo, entry_path(root, text).rsplit("/", 1)[1],
                   marshal.dumps((VERSION, text, tuple(argv), plan_name, supervised)))
            _evict(memo)
    except (OSError, safety.UntrustedCache):
        pass  # a full, read-only or untrusted cache: no memo, the next run takes the full path
    ensure_bytecode()


def _write(memo: int, name: str, data: bytes) -> None:
    import time

    from launcher.cache import safety

    safety.write_at(memo, name, data)  # exactly 0600 whatever the umask, never through a link
    # A fine-grained mtime (the kernel's is per tick): eviction goes by it.
    now = time.time_ns()
    posix.utime(name, ns=(now, now), dir_fd=memo, follow_symlinks=False)


def _evict(memo: int) -> None:
    """Keep the newest MAX_ENTRIES entries of this Python and the plans they name."""
    runs, plans = f"run-{_tag()}-", f"plan-{_tag()}-"
    names = posix.listdir(memo)
    old = f"run-{_tag()}.marshal"  # the single memo file earlier versions kept: never read now
    if old in names:
        try:
            posix.unlink(old, dir_fd=memo)
        except FileNotFoundError:
            pass  # a concurrent run removed it first
    entries = sorted((n for n in names if n.startswith(runs)), key=lambda n: _mtime(memo, n))
    for n in entries[:-MAX_ENTRIES]:
        posix.unlink(n, dir_fd=memo)
    entries = entries[-MAX_ENTRIES:]
    if len(entries) < MAX_ENTRIES and sum(n.startswith(plans) for n in names) <= len(entries):
        return  # nothing evicted, and plans stay no more than entries: bounded
    _drop_unnamed_plans(memo, [n for n in names if n.startswith(plans)], entries)


def _mtime(memo: int, name: str) -> int:
    return posix.stat(name, dir_fd=memo, follow_symlinks=False).st_mtime_ns


def _drop_unnamed_plans(memo: int, plans: "list[str]", entries: "list[str]") -> None:
    import time

    kept = set()
    for n in entries:
        try:
            fd = posix.open(n, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=memo)
            with open(fd, "rb") as f:
                kept.add(marshal.loads(f.read())[3])
        except (OSError, ValueError, EOFError, TypeError, IndexError):
            continue
    now = time.time_ns()
    for n in plans:
        try:
            # A plan younger than a minute may be a concurrent run's, its entry not written yet.
            if n not in kept and now - _mtime(memo, n) > 60 * 10**9:
                posix.unlink(n, dir_fd=memo)
        except OSError:
            pass


# The modules the warm path imports (tests/test_gate_imports.py holds it to these).
FAST_MODULES = ("launcher", "launcher.__main__", "launcher._fastrun", "launcher.execute")
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
            st = posix.stat(src)
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
