# launcher gate: runs at start-up in every Python interpreter started under
# `launcher run`, because the launcher puts this file's directory first on
# PYTHONPATH.  Rules (see DESIGN.md): stdlib only, CPython 3.8+ and PyPy,
# no threads, nothing on stdout, never raise, and on the matched path nothing
# but a few stats -- every import below that is not `os`/`sys` lives inside a
# function that only the miss path, the preload path or chaining reaches.
import os
import sys

FORMAT = 1
MANIFEST = ".launcher-manifest.json"
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


def _jstr(s):
    out = []
    for ch in str(s):
        o = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif o < 0x20:
            out.append("\\u%04x" % o)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _record(env, event, **fields):
    """Append one JSON line to this run's record (cheap: one open/write)."""
    run = env.get("LAUNCHER_RUN_ID")
    cache = env.get("LAUNCHER_CACHE_DIR")
    if not run or not cache:
        return
    fields["event"] = event
    fields["pid"] = os.getpid()
    fields["ppid"] = os.getppid()
    parts = []
    for k, v in fields.items():
        if v is None:
            parts.append('"%s": null' % k)
        elif v is True or v is False:
            parts.append('"%s": %s' % (k, "true" if v else "false"))
        elif isinstance(v, int):
            parts.append('"%s": %d' % (k, v))
        elif isinstance(v, (list, tuple)):
            parts.append('"%s": [%s]' % (k, ", ".join(_jstr(x) for x in v)))
        else:
            parts.append('"%s": %s' % (k, _jstr(v)))
    line = ("{" + ", ".join(parts) + "}\n").encode("utf-8", "replace")
    path = cache + "/runs/" + run + ".jsonl"
    if _untrusted(cache, True) is not None or _untrusted(cache + "/runs") is not None:
        return  # never append through a link, or into a dir others control
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError:
        try:
            os.makedirs(cache + "/runs", 0o700, exist_ok=True)
            fd = os.open(path, flags, 0o600)
        except OSError:
            return
    try:
        os.write(fd, line)
    except OSError:
        pass  # a full disk or quota: the record is skipped, the program runs
    finally:
        os.close(fd)


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
    one).  One lstat: a directory only appears at a tree's name by the atomic
    rename of a complete, validated tree, manifest written first."""
    try:
        return (os.lstat(tree).st_mode & 0o170000) == 0o040000
    except OSError:
        return False


def _untrusted(path, follow=False):
    """Why `path` must not be written or run from: not a real directory of
    ours, or writable by others (the rule `launcher run` applies; None when
    it is fine or does not exist yet).  Only the miss path asks: a hit
    writes nothing."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError:
        return None
    if (st.st_mode & 0o170000) != 0o040000:
        return "is not a directory"
    if st.st_uid != os.getuid():
        return "is owned by uid %d, not you" % st.st_uid
    if st.st_mode & 0o022 and not (follow and st.st_mode & 0o1000):
        return "is writable by others"
    return None


def _build(env, key, tree, exe):
    """Miss path.  Cold workers of one tree queue on a lock file of their own:
    the first asks the launcher to build, the others sleep (no launcher
    process each) until the tree is published and use it ("waited")."""
    cache = env["LAUNCHER_CACHE_DIR"]
    for path, follow in ((cache, True), (cache + "/locks", False)):
        why = _untrusted(path, follow)
        if why is not None:
            _say("the cache dir %s %s, so the runtime for %s is not built from it; continuing "
                 "without it. Run 'launcher doctor' for the fix." % (path, why, key))
            return "untrusted"
    try:
        import fcntl

        fd = os.open("%s/locks/%s-%s.gate-lock" % (cache, key, env.get("LAUNCHER_SPEC", "")),
                     os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except (ImportError, OSError):
        fd = None  # nothing to queue on: build unqueued, as before
    import time

    try:
        limit = float(env.get("LAUNCHER_LOCK_TIMEOUT", "900"))
    except ValueError:
        limit = 900.0
    deadline = time.time() + limit
    pause = 0.002
    while fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            pass
        except OSError:  # no flock here (some network filesystems): unqueued
            os.close(fd)
            fd = None
            break
        # Polled, not blocking: a stuck build must not hang us past the timeout.
        if _published(tree):
            os.close(fd)
            return "waited"
        if time.time() > deadline:
            os.close(fd)
            _say("timed out after %ds waiting for another process to build the runtime for %s; "
                 "continuing without it. Run 'launcher doctor'." % (limit, key))
            return "failed"
        time.sleep(pause)
        pause = min(pause * 1.5, 0.025)
    try:
        if fd is not None and _published(tree):
            return "waited"  # published while we took the lock
        return _build_now(env, key, tree, exe)
    finally:
        if fd is not None:
            os.close(fd)


def _build_now(env, key, tree, exe):
    """Ask the launcher (its own interpreter, scrubbed env) to build."""
    cache = env["LAUNCHER_CACHE_DIR"]
    spec = env.get("LAUNCHER_SPEC", "")
    failed = cache + "/failures/" + key + "-" + spec + ".json"
    try:
        ttl = float(env.get("LAUNCHER_FAILURE_TTL", "60"))
    except ValueError:
        ttl = 60.0
    import time

    try:
        age = time.time() - os.stat(failed).st_mtime
    except OSError:
        age = None
    if age is not None and age < ttl:
        _say("runtime for %s is unavailable: its build failed %ds ago (%s); continuing without it. "
             "Run 'launcher doctor' for details." % (key, age, _failure_reason(failed)))
        return "failed-recently"
    if not os.access(cache, os.W_OK):
        # A read-only cache (a prewarmed CI image) serves what it has; asking
        # the launcher to build would only fail more slowly.
        _say("runtime for %s is not in the cache %s, which is read-only; continuing without it. "
             "Prewarm it with 'launcher prewarm' where the cache is writable." % (key, cache))
        return "read-only"
    launcher_python = env.get("LAUNCHER_SELF_PYTHON")
    if not launcher_python or not os.path.exists(launcher_python):
        _say("cannot build the runtime for %s: the launcher's interpreter %r is gone; "
             "continuing without it. Run 'launcher doctor'." % (key, launcher_python))
        return "no-launcher"
    import subprocess

    child_env = scrubbed_env(env)
    argv = [
        launcher_python, "-I", "-m", "launcher", "_build",
        "--python", exe or "",
        "--spec", spec,
        "--expect-key", key,
        "--cache-dir", cache,
        "--run-id", env.get("LAUNCHER_RUN_ID", ""),
        "--requested-by", str(os.getpid()),
        "--failure-ttl", str(ttl),
        "--build", env.get("LAUNCHER_BUILD") or "fallback",
    ]
    start = time.time()
    try:
        # The builder's own output must never reach the workload's stdout.
        proc = subprocess.run(
            argv, env=child_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        _say("cannot start the launcher to build the runtime for %s (%s); continuing "
             "without it. Run 'launcher doctor'." % (key, exc))
        return "no-launcher"
    if proc.returncode == 0 and _published(tree):
        _record(env, "built", key=key, tree=tree, seconds=int(time.time() - start))
        return "built"
    reason = (proc.stderr or b"").decode("utf-8", "replace").strip().splitlines()
    _say(
        "could not build the runtime for %s (%s); continuing without it. "
        "Run 'launcher doctor' for details."
        % (key, reason[-1].replace("launcher: ", "") if reason else "exit %d" % proc.returncode)
    )
    return "failed"


def _failure_reason(path):
    """The reason a remembered build failure gives (the launcher's Failure record)."""
    try:
        import json

        with open(path, encoding="utf-8") as f:
            reason = json.load(f).get("error")
    except Exception:
        reason = None
    return str(reason).splitlines()[0] if reason else "reason unknown"


def scrubbed_env(env):
    """What the installer and the builder see: no gate (our bootstrap, an outer
    launch's too), no preloads or shim of ours, no LAUNCHER_* variables.  The
    launcher's own installer calls this too (tree.installer_env)."""
    out = {}
    boot = env.get("LAUNCHER_BOOTSTRAP", "")
    for k, v in env.items():
        if k.startswith("LAUNCHER_") or k in ("PYTHONPATH", "PYTHON_EXEC", "VIRTUAL_ENV"):
            continue
        out[k] = v
    kept = [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
            if p and p != boot and "/bootstrap/" not in p]
    if kept:
        out["PYTHONPATH"] = os.pathsep.join(kept)
    orig = env.get("LAUNCHER_ORIG_LD_PRELOAD")
    if orig is not None:
        if orig.startswith("set:"):
            out["LD_PRELOAD"] = orig[4:]
        else:
            out.pop("LD_PRELOAD", None)
    return out


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
                _exit_as(exc)
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
        shim = _preload_mod().not_via_shim(env, shim_dir, pid)
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
        _preload_mod().user_python_exec(env, shim_dir, cur)  # the user's: shim theirs
    elif not cur or not env.get("LAUNCHER_USER_PYTHON_EXEC"):
        if "LAUNCHER_USER_PYTHON_EXEC" in env:
            del env["LAUNCHER_USER_PYTHON_EXEC"]
        env["PYTHON_EXEC"] = shim
    # else: an ancestor already points it at a shim of the user's interpreter


def _hook_children(shim, boot, shim_dir):
    # Children's hooks are set when subprocess / multiprocessing.spawn are
    # imported; until then only this small finder waits (no class, no load).
    if "subprocess" in sys.modules or "multiprocessing.spawn" in sys.modules:
        _preload_mod().hook_children(shim, boot, shim_dir)
        return

    def find_spec(name, path=None, target=None):
        if name != "subprocess" and name != "multiprocessing.spawn":
            return None
        try:
            sys.meta_path.remove(finder)
        except ValueError:
            pass
        try:
            full = _preload_mod().hook_children(shim, boot, shim_dir)
            return full.find_spec(name, path, target) if full is not None else None
        except Exception:
            return None  # the user's import goes on as if we were not here

    finder = type(sys)("launcher_children")
    finder.find_spec = find_spec
    sys.meta_path.insert(0, finder)


_PRELOAD_MOD = []


def _preload_mod():
    """_launcher_preloads, beside this file, loaded by path (never found on
    sys.path by accident), from its own bytecode: written here like ours in
    _ensure_pyc when PYTHONDONTWRITEBYTECODE keeps the import system from it."""
    if _PRELOAD_MOD:
        return _PRELOAD_MOD[0]
    try:
        import _frozen_importlib_external as ext
    except ImportError:
        from importlib import _bootstrap_external as ext
    name = "_launcher_preloads"
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    loader = ext.SourceFileLoader(name, path)
    code = loader.get_code(name)
    if sys.dont_write_bytecode:
        try:
            cached = ext.cache_from_source(path)
            if not os.path.exists(cached):
                st = os.stat(path)
                loader._cache_bytecode(path, cached, ext._code_to_timestamp_pyc(code, st.st_mtime, st.st_size))
        except Exception:
            pass
    mod = type(sys)(name)
    mod.__file__ = path
    mod.__loader__ = loader
    exec(code, mod.__dict__)
    mod._say, mod._flags, mod._orig_argv = _say, _flags, _orig_argv
    _PRELOAD_MOD.append(mod)
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
    via_shim = _preloads(env) if env.get("LAUNCHER_SHIM_DIR") else None
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
            state = _build(env, key, tree, exe)
        if state == "hit" or state == "built" or state == "waited":
            _place(tree, env.get("LAUNCHER_PRIORITY", "last"))
            _load_plugins(env, tree)
    if (state != "hit" and state != "no-spec") or env.get("LAUNCHER_RECORD"):
        preloads = env.get("LAUNCHER_PRELOAD_LIBS", "")
        _record(
            env, "gate", key=key or abi_key(), state=state, tree=tree,
            executable=sys.executable, via_shim=via_shim,
            preloads_mapped=_preload_mod().mapped(preloads.split(":"))
            if preloads and env.get("LAUNCHER_RECORD") else None,
        )
    _ensure_pyc()
    _chain(boot)


def _exit_as(exc):
    """End the process as a SystemExit raised by the program would (its
    code, its message), not as one raised during start-up would: there
    CPython turns it into a fatal init error with exit code 1."""
    code = exc.code
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code & 0xFF
    else:
        _say_raw(str(code))
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(status)


def _say_raw(text):
    try:
        os.write(2, (text + "\n").encode("utf-8", "replace"))
    except Exception:
        pass


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
        _say("start-up gate error (%s: %s); the program continues. Run 'launcher doctor'."
             % (type(_exc).__name__, _exc))
