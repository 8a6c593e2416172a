# The warm path of `launcher run`: when this exact invocation (argv, cwd,
# PATH, LAUNCHER_* settings) was prepared before and nothing it depends on
# has changed since, exec straight away without importing click, pydantic or
# uv.  Stdlib only, and only modules the interpreter has already loaded
# (marshal, posix, sys).
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
# cost one plan.  The full path writes them (launcher.memo); this module only
# reads, and holds no more code than that: a fresh interpreter pays for every
# byte of bytecode it loads.
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


def py_tag() -> str:
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
    return f"{root}/memo/run-{py_tag()}-{h:016x}.marshal"


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
