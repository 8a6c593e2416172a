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
# And not inside the `launcher` package, with the child's environment and the
# exec here too (launcher.execute re-exports them for the full path): one
# module found and loaded instead of three (the package, this, execute) is a
# twentieth of a bare interpreter start off every warm launch.  Named like the
# gate's parts (_launcher_*), which are loaded without the package as well.
import marshal
import posix
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

# Every variable this launcher sets for its children.  A nested launch
# replaces all of them (the inner launch owns its subtree) except the run id.
OURS = (
    "LAUNCHER_BOOTSTRAP", "LAUNCHER_CACHE_DIR", "LAUNCHER_SPEC", "LAUNCHER_PRIORITY",
    "LAUNCHER_SELF_PYTHON", "LAUNCHER_SHIM_DIR", "LAUNCHER_PRELOAD_LIBS",
    "LAUNCHER_PRELOAD_SCOPE", "LAUNCHER_PRELOAD_MISSING", "LAUNCHER_FAILURE_TTL",
    "LAUNCHER_RECORD", "LAUNCHER_QUIET", "LAUNCHER_VERBOSE", "LAUNCHER_REPORTED", "LAUNCHER_BUILD",
    # per-process marks of an outer launch's shim and re-exec
    "LAUNCHER_SHIM", "LAUNCHER_SHIM_PID", "LAUNCHER_ORIG_LD_PRELOAD", "LAUNCHER_REEXEC_PID",
    "LAUNCHER_USER_PYTHON_EXEC",
)


def new_run_id() -> str:
    import time

    return f"{time.time_ns():x}-{posix.getpid()}"


def read_environ() -> dict[str, str]:
    """os.environ's contents without importing os: decoded the same way."""
    enc, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    return {k.decode(enc, errors): v.decode(enc, errors) for k, v in posix.environ.items()}


def child_env(environ: "Mapping[str, str]", ours: dict[str, str],
              ld_preload: str | None = None) -> dict[str, str]:
    """`environ` with our variables applied.

    PYTHONPATH keeps every user entry, in order, with our bootstrap first and
    exactly once (an outer launch's bootstrap is dropped).  Nothing else of
    the caller's changes, except LD_PRELOAD when preloads apply to all.
    """
    env = dict(environ)
    old_boot = env.get("LAUNCHER_BOOTSTRAP")
    for k in OURS:
        env.pop(k, None)
    if old_boot and "/shims/" in env.get("PYTHON_EXEC", ""):
        # An outer launch's shim: children of this launch use ours (or none),
        # and a PYTHON_EXEC the user set names their interpreter again.
        user = environ.get("LAUNCHER_USER_PYTHON_EXEC")
        if user:
            env["PYTHON_EXEC"] = user
        else:
            env.pop("PYTHON_EXEC")
    env.update(ours)
    boot = ours["LAUNCHER_BOOTSTRAP"]
    user = environ.get("PYTHONPATH")
    kept = [p for p in user.split(":") if p != boot and p != old_boot] if user else []
    env["PYTHONPATH"] = ":".join([boot, *kept]) if kept else boot
    env.setdefault("LAUNCHER_RUN_ID", new_run_id())
    if ld_preload is not None:
        cur = environ.get("LD_PRELOAD")
        env["LD_PRELOAD"] = ld_preload + (":" + cur if cur else "")
    return env


def say(message: str) -> None:
    """One line with one os.write to fd 2: stderr may be closed (`2>&-`) or
    broken (/dev/full), and neither may stop the command from running."""
    try:
        posix.write(2, f"launcher: {message}\n".encode("utf-8", "replace"))
    except OSError:
        pass


def exec_command(argv: list[str], env: dict[str, str]) -> int:
    """Replace this process with `argv`; return an exit code only on failure."""
    for stream in (sys.stdout, sys.stderr):  # None when the caller closed it
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    try:
        _execvpe(argv[0], argv, env)
    except FileNotFoundError:
        say(f"command not found: {argv[0]}")
        return 127
    except PermissionError:
        say(f"permission denied: {argv[0]} is not executable")
        return 126
    except OSError as exc:
        say(f"cannot run {argv[0]}: {exc.strerror or exc}")
        return 126
    return 0  # pragma: no cover - exec does not return


def _execvpe(file: str, argv: list[str], env: dict[str, str]) -> None:
    """os.execvpe without os, nor the `import warnings` of its PATH lookup
    (os.get_exec_path): a few tenths of a millisecond of every warm start.
    The same search and the same error: the first that is not "no such
    file", else the last."""
    if "/" in file:
        posix.execve(file, argv, env)
    path = env.get("PATH")
    first: OSError | None = None
    last: OSError = FileNotFoundError(2, "No such file or directory", file)
    for d in ("/bin:/usr/bin" if path is None else path).split(":"):  # os.defpath, os.pathsep
        try:
            # os.path.join(d, file): an empty entry is the current directory
            posix.execve(d + file if not d or d.endswith("/") else d + "/" + file, argv, env)
        except (FileNotFoundError, NotADirectoryError) as exc:
            last = exc
        except OSError as exc:
            last = exc
            first = first or exc
    raise first or last


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


def _ours(fd: int, kind: int) -> bool:
    """An open memo directory (kind 0o040000) or file (0o100000): ours (or
    root's), of that kind, and nobody else can write it."""
    st = posix.fstat(fd)
    return (st.st_uid == posix.getuid() or st.st_uid == 0) and st.st_mode & 0o170022 == kind


def _read_memo(memo: int, name: str) -> "bytes | None":
    """A memo file, opened relative to memo/ as opened and checked, never
    through a link: what `trusted` saw by path cannot be swapped meanwhile."""
    fd = posix.open(name, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=memo)
    try:
        if not _ours(fd, 0o100000):
            return None
        chunks: list[bytes] = []
        while True:
            chunk = posix.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        posix.close(fd)


def try_fast(args: "list[str]") -> None:
    """Exec the memoised plan for `launcher <args>`, or return to take the full path."""
    if not sys.platform.startswith("linux"):
        return
    environ = read_environ()
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
        memo = posix.open(root + "/memo", posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
        try:
            entry = _read_memo(memo, entry_path(root, text).rsplit("/", 1)[1]) if _ours(memo, 0o040000) else None
            if entry is None:
                return
            version, stored, argv, plan_name, supervised = marshal.loads(entry)
            if version != VERSION or stored != text or "/" in plan_name:
                return
            plan = _read_memo(memo, plan_name)
        finally:
            posix.close(memo)
        if plan is None:
            return
        ours, ld_preload, watched, trees = marshal.loads(plan)
        # A plan names only code in trusted places: this cache's gate and trees.
        if not ours.get("LAUNCHER_BOOTSTRAP", root + "/bootstrap/").startswith(root + "/bootstrap/"):
            return
        for path, sig in watched:
            if signature(path) != sig:
                return
        for tree, digest in trees:
            if not tree.startswith(root + "/trees/") or tree_digest(tree) != digest:
                return
        env = child_env(environ, ours, ld_preload)
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
    sys.exit(exec_command(list(argv), env))


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
