# launcher gate: runs at start-up in every Python interpreter started under
# `launcher run`, because the launcher puts this file's directory first on
# PYTHONPATH.  Rules (see DESIGN.md): stdlib only, CPython 3.8+ and PyPy,
# no threads, nothing on stdout, never raise, and on the matched path nothing
# but a few stats -- every import below that is not `os`/`sys` lives inside a
# function that only the miss path, the preload path or chaining reaches,
# and the code of the miss path and of preloads lives in two parts beside
# this file (_launcher_miss.py, _launcher_preloads.py), read only when a
# process needs them (`_part`): a matched start does not even unmarshal it.
import os
import sys

PLUGINS = ".launcher-plugins"


def abi_key():
    """Readable, exact identity of this interpreter's ABI.

    The first extension suffix carries implementation, version, abiflags
    (`t` free-threaded, `d` debug) and the platform triplet (machine, OS,
    libc family); the C library version comes from confstr.  Both are
    already-loaded builtins, so this costs microseconds.  `cache_tag` is
    NOT used: it is `cpython-313` for cp313 and cp313t alike.
    """
    import _imp

    suffix = _imp.extension_suffixes()[0]
    tag = suffix[1:]
    if tag.endswith(".so") or tag.endswith(".pyd"):
        tag = tag.rsplit(".", 1)[0]
    if not tag or tag in ("so", "pyd"):
        impl = sys.implementation
        tag = "%s-%d%d%s-%s" % (
            impl.name,
            sys.version_info[0],
            sys.version_info[1],
            getattr(sys, "abiflags", ""),
            os.uname().machine,
        )
    if tag.startswith("cpython-"):
        tag = "cp" + tag[len("cpython-"):]
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        libc = ""
    if libc:
        libc = libc.replace(" ", "")
    elif sys.platform.startswith("linux"):
        libc = "musl"
    else:
        libc = sys.platform
    return tag + "-" + libc


def _say(msg):
    # One line with ONE os.write to fd 2: never through sys.stderr, whose
    # buffer would keep what a broken stderr (/dev/full) refused and make the
    # interpreter exit 120 at shutdown; fd 2 may also be closed in a daemon.
    try:
        os.write(2, ("launcher: " + msg + "\n").encode("utf-8", "replace"))
    except Exception:
        pass


def _record(env, event, **fields):
    """Append one JSON line to this run's record (the miss part writes it)."""
    try:
        _part("miss").record(env, event, **fields)
    except Exception:
        pass  # a record is never worth the program


def _place(tree, priority):
    path = sys.path
    if tree in path:
        return
    if priority == "first":
        for i, p in enumerate(path):
            if p.endswith("site-packages") or p.endswith("dist-packages"):
                path.insert(i, tree)
                return
    path.append(tree)


def _published(tree):
    """The tree is a real directory (never a link: nothing is imported through
    one) of ours or root's that nobody else can write (the trust rule, on the
    same lstat: a loosened tree takes the miss path and is rebuilt).  One
    lstat: a directory only appears at a tree's name by the atomic rename of
    a complete, validated tree, manifest written first."""
    try:
        st = os.lstat(tree)
    except OSError:
        return False
    return (st.st_mode & 0o170022) == 0o040000 and (st.st_uid == 0 or st.st_uid == os.getuid())


def _ensure_pyc():
    # With PYTHONDONTWRITEBYTECODE the import system never caches us, and
    # compiling this file at every start would cost more than the gate itself.
    cached = globals().get("__cached__")
    if not cached or not sys.dont_write_bytecode or os.path.exists(cached):
        return
    try:
        # Write what the import system itself would have (SourceLoader.get_code):
        # our own module code object, already compiled -- no second compile and
        # none of the ~20 modules py_compile imports, which N cold workers
        # starting at once would each pay.
        try:
            import _frozen_importlib_external as ext
        except ImportError:
            from importlib import _bootstrap_external as ext
        f = sys._getframe()
        while f is not None and not (f.f_code.co_name == "<module>" and f.f_globals is globals()):
            f = f.f_back
        st = os.stat(__file__)
        ext.SourceFileLoader(__name__, __file__)._cache_bytecode(
            __file__, cached, ext._code_to_timestamp_pyc(f.f_code, st.st_mtime, st.st_size))
    except Exception:
        try:
            import py_compile

            py_compile.compile(__file__, cfile=cached, doraise=True)
        except Exception:
            pass


def _load_plugins(env, tree):
    path = tree + "/" + PLUGINS
    if not os.access(path, os.R_OK):
        return  # most trees have no plugins: a failing open() would cost an exception
    try:
        f = open(path, encoding="utf-8")
    except OSError:
        return
    with f:
        lines = f.read().splitlines()
    import importlib

    for line in lines:
        name, _, target = line.partition("=")
        name, target = name.strip(), target.strip()
        if not target:
            continue
        modname, _, attr = target.partition(":")
        try:
            obj = importlib.import_module(modname.strip())
            for part in attr.strip().split(".") if attr.strip() else ():
                obj = getattr(obj, part)
            if attr and callable(obj):
                obj()
        except BaseException as exc:  # a broken plugin must not take the workload down
            if isinstance(exc, SystemExit):
                _part("miss").exit_as(exc)
            if isinstance(exc, KeyboardInterrupt):
                raise
            _record(env, "plugin-skipped", plugin=name, target=target,
                    error="%s: %s" % (type(exc).__name__, exc))
            if env.get("LAUNCHER_VERBOSE"):
                _say("plugin %s skipped: %s: %s" % (name, type(exc).__name__, exc))
            continue
        if env.get("LAUNCHER_RECORD"):
            _record(env, "plugin-loaded", plugin=name, target=target)


def _chain(boot):
    """Run the sitecustomize we shadow (venv's, Debian's, a user's) once."""
    try:
        from _frozen_importlib_external import PathFinder
    except ImportError:  # PyPy and others
        from importlib.machinery import PathFinder
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if p and p != boot and p != here]
    spec = PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    mod = type(sys)("sitecustomize")
    mod.__file__ = spec.origin
    mod.__spec__ = spec
    mod.__loader__ = spec.loader
    if spec.cached:
        mod.__cached__ = spec.cached
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:
        # What CPython itself prints for a failing sitecustomize.
        try:
            sys.stderr.write(
                "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n"
                "%s: %s\n" % (type(exc).__name__, exc)
            )
        except Exception:
            pass
        return  # as in a bare run, a failed sitecustomize is not importable
    # `import sitecustomize` in user code must give the module we shadowed
    # (its helpers), as in a bare run -- not the gate.
    sys.modules["sitecustomize"] = mod


def _preloads(env):
    """Return True when this process came up through a shim of ours.

    sys.executable stays the real interpreter (pip, venv, ipykernel and
    virtualenv persist it); the shim reaches children only through transient
    channels: the multiprocessing executable, subprocess children of
    sys.executable, PYTHON_EXEC, and the re-exec of any other Python child.
    What is rarely needed lives in _launcher_preloads.py, loaded on demand."""
    shim_dir = env.get("LAUNCHER_SHIM_DIR")
    if not shim_dir:
        return False
    pid = str(os.getpid())
    via_shim = env.get("LAUNCHER_SHIM_PID") == pid
    if via_shim:
        # Consume the mark: if this pid later execs the real interpreter
        # directly, LD_PRELOAD is already restored, so it must not pass.
        env.pop("LAUNCHER_SHIM_PID", None)
        shim = env.get("LAUNCHER_SHIM")
    else:
        shim = _part("preloads").not_via_shim(env, shim_dir, pid)
    if shim:
        _python_exec(env, shim_dir, shim)
        _hook_children(shim, env.get("LAUNCHER_BOOTSTRAP"), shim_dir)
    orig = env.get("LAUNCHER_ORIG_LD_PRELOAD")
    if via_shim and orig is not None:
        # Non-Python children (/bin/sh, compilers, git) see the caller's value.
        if orig.startswith("set:"):
            os.environ["LD_PRELOAD"] = orig[4:]
        else:
            os.environ.pop("LD_PRELOAD", None)
    return via_shim


def _python_exec(env, shim_dir, shim):
    # torchrun starts its workers with PYTHON_EXEC (default sys.executable).
    cur = env.get("PYTHON_EXEC")
    if cur and not cur.startswith(shim_dir + "/"):
        _part("preloads").user_python_exec(env, shim_dir, cur)  # the user's: shim theirs
    elif not cur or not env.get("LAUNCHER_USER_PYTHON_EXEC"):
        if "LAUNCHER_USER_PYTHON_EXEC" in env:
            del env["LAUNCHER_USER_PYTHON_EXEC"]
        env["PYTHON_EXEC"] = shim
    # else: an ancestor already points it at a shim of the user's interpreter


def _hook_children(shim, boot, shim_dir):
    # Children's hooks are set when subprocess / multiprocessing.spawn are
    # imported; until then only this small finder waits (no class, no load).
    if "subprocess" in sys.modules or "multiprocessing.spawn" in sys.modules:
        _part("preloads").hook_children(shim, boot, shim_dir)
        return

    def find_spec(name, path=None, target=None):
        if name != "subprocess" and name != "multiprocessing.spawn":
            return None
        try:
            sys.meta_path.remove(finder)
        except ValueError:
            pass
        try:
            full = _part("preloads").hook_children(shim, boot, shim_dir)
            return full.find_spec(name, path, target) if full is not None else None
        except Exception:
            return None  # the user's import goes on as if we were not here

    finder = type(sys)("launcher_children")
    finder.find_spec = find_spec
    sys.meta_path.insert(0, finder)


_PARTS = {}


def _part(name):
    """The gate's on-demand part _launcher_<name>.py ("preloads": shims and
    children's hooks; "miss": building, records, rare exits), beside this
    file, loaded by path (never found on sys.path by accident) and from its
    own bytecode: written here like ours in _ensure_pyc when
    PYTHONDONTWRITEBYTECODE keeps the import system from it.  Kept out of
    this file so a matched start does not read and unmarshal them."""
    mod = _PARTS.get(name)
    if mod is not None:
        return mod
    try:
        import _frozen_importlib_external as ext
    except ImportError:
        from importlib import _bootstrap_external as ext
    modname = "_launcher_" + name
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), modname + ".py")
    loader = ext.SourceFileLoader(modname, path)
    code = loader.get_code(modname)
    if sys.dont_write_bytecode:
        try:
            cached = ext.cache_from_source(path)
            if not os.path.exists(cached):
                st = os.stat(path)
                loader._cache_bytecode(path, cached, ext._code_to_timestamp_pyc(code, st.st_mtime, st.st_size))
        except Exception:
            pass
    mod = type(sys)(modname)
    mod.__file__ = path
    mod.__loader__ = loader
    exec(code, mod.__dict__)
    # The gate's helpers the parts call (_say: both; _flags, _orig_argv:
    # preloads; _published: miss), one copy of each; a part declares them None.
    mod._say, mod._flags, mod._orig_argv, mod._published = _say, _flags, _orig_argv, _published
    _PARTS[name] = mod
    return mod


INSTALLERS = ("pip", "ensurepip", "venv", "virtualenv")


def _installer():
    """Is this process an installer (pip, `-m venv`, ensurepip, virtualenv)?
    They manage the user's environment: they must not see the runtime tree
    (pip would call its packages installed and list them).  sys.argv is set
    before site runs; for `-m` it holds "-m" and the module name is in
    sys.orig_argv (3.10+) or /proc/self/cmdline -- read only for `-m` runs."""
    argv = getattr(sys, "argv", None)
    first = argv[0] if argv else ""
    if first == "-m":
        mod = _flags(getattr(sys, "orig_argv", None) or _orig_argv() or ())[1]
        return mod.partition(".")[0] in INSTALLERS
    name = first.rpartition("/")[2]
    if name[:3] == "pip":  # pip, pip3, pip3.13; pip-sync (pip-tools) manages the env too
        return not name[3:].strip("0123456789.") or name[3:4] == "-"
    return name == "virtualenv"


def _flags(argv):
    """(single-letter flags, the -m module or "") of `python [flags] ...`;
    flags may be clustered (-sm X, -mX) and -W/-X take a value."""
    flags = ""
    it = iter(argv[1:])
    for a in it:
        if not isinstance(a, str) or a[:1] != "-" or a == "-":
            break
        if a[:2] == "--":
            if a == "--check-hash-based-pycs":
                next(it, None)
            continue
        for j in range(1, len(a)):
            c = a[j]
            if c == "W" or c == "X":  # the rest, or the next argument, is its value
                if j == len(a) - 1:
                    next(it, None)
                break
            if c == "c":
                return flags, ""
            if c == "m":
                return flags, a[j + 1:] or next(it, "")
            flags += c
    return flags, ""


def _orig_argv():
    # 3.8/3.9 have no sys.orig_argv; /proc has the exact command line.
    try:
        with open("/proc/self/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0")[:-1]]


def _main():
    env = os.environ
    boot = env.get("LAUNCHER_BOOTSTRAP")
    if not boot:
        return
    exe = sys.executable
    via_shim = None
    if env.get("LAUNCHER_SHIM_DIR"):
        try:
            via_shim = _preloads(env)
        except Exception as exc:
            # Its part broken or gone (a cleaner): no preloads here, said once;
            # the runtime tree and the chained sitecustomize still come.
            _gate_error(exc)
    cache = env.get("LAUNCHER_CACHE_DIR")
    spec = env.get("LAUNCHER_SPEC")
    key = tree = None
    state = "no-spec"
    if cache and spec and _installer():
        state = "installer"  # pip, venv, ensurepip: they manage the user's environment, not ours
    elif cache and spec:
        key = abi_key()
        tree = cache + "/trees/" + key + "-" + spec
        if _published(tree):
            state = "hit"
        elif key in env.get("LAUNCHER_REPORTED", "").split(","):
            # The launcher already tried this runtime for this run and said
            # why it is unavailable: one failure, one line (and no rebuild).
            state = "reported"
        else:
            _ensure_pyc()
            try:
                state = _part("miss").build(env, key, tree, exe)
            except Exception as exc:
                _gate_error(exc)
                state = "failed"
        if state == "hit" or state == "built" or state == "waited":
            _place(tree, env.get("LAUNCHER_PRIORITY", "last"))
            _load_plugins(env, tree)
    if (state != "hit" and state != "no-spec") or env.get("LAUNCHER_RECORD"):
        preloads = env.get("LAUNCHER_PRELOAD_LIBS", "")
        mapped = None
        if preloads and env.get("LAUNCHER_RECORD"):
            try:
                mapped = _part("preloads").mapped(preloads.split(":"))
            except Exception:
                pass  # the record says "unknown" rather than costing the program
        _record(env, "gate", key=key or abi_key(), state=state, tree=tree,
                executable=sys.executable, via_shim=via_shim, preloads_mapped=mapped)
        if env.get("LAUNCHER_RECORD"):
            try:
                _part("miss").watch_exit(env)
            except Exception:
                pass  # an unrecorded exit is "unknown", never the program's problem
    _ensure_pyc()
    _chain(boot)


def _gate_error(exc):
    _say("start-up gate error (%s: %s); the program continues. Run 'launcher doctor'."
         % (type(exc).__name__, exc))


def _interrupted():
    """Ctrl-C during start-up (e.g. waiting for another process's build):
    die of SIGINT, as Python does for an uncaught KeyboardInterrupt, so the
    shell, torchrun or CI sees an interrupted program, not a gate error."""
    import signal

    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except Exception:
        pass
    raise KeyboardInterrupt  # SIGINT blocked or ignored: interrupt start-up anyway


if __name__ == "sitecustomize":
    try:
        _main()
    except KeyboardInterrupt:
        _interrupted()
    except SystemExit:
        # Raised by the sitecustomize we chain: what a bare run does with it.
        raise
    except BaseException as _exc:  # anything of ours: one line, the program continues
        _gate_error(_exc)
