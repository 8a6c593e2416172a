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
    # One line, stderr only; stderr may be closed or broken in a daemon.
    try:
        sys.stderr.write("launcher: " + msg + "\n")
        sys.stderr.flush()
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
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError:
        try:
            os.makedirs(cache + "/runs", 0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError:
            return
    try:
        os.write(fd, line)
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


def _build(env, key, tree, exe):
    """Miss path.  Cold workers of one tree queue on a lock file of their own:
    the first asks the launcher to build, the others sleep (no launcher
    process each) until the tree is published and use it ("waited")."""
    try:
        import fcntl

        fd = os.open("%s/locks/%s-%s.gate-lock" % (env["LAUNCHER_CACHE_DIR"], key, env.get("LAUNCHER_SPEC", "")),
                     os.O_RDWR | os.O_CREAT, 0o600)
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
        if os.path.exists(tree + "/" + MANIFEST):
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
        if fd is not None and os.path.exists(tree + "/" + MANIFEST):
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
        if time.time() - os.stat(failed).st_mtime < ttl:
            _say(
                "runtime for %s is unavailable (a build failed moments ago); "
                "continuing without it. Run 'launcher doctor' for the reason." % key
            )
            return "failed-recently"
    except OSError:
        pass
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
    if proc.returncode == 0 and os.path.exists(tree + "/" + MANIFEST):
        _record(env, "built", key=key, tree=tree, seconds=int(time.time() - start))
        return "built"
    reason = (proc.stderr or b"").decode("utf-8", "replace").strip().splitlines()
    _say(
        "could not build the runtime for %s (%s); continuing without it. "
        "Run 'launcher doctor' for details."
        % (key, reason[-1].replace("launcher: ", "") if reason else "exit %d" % proc.returncode)
    )
    return "failed"


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


def shim_path(shim_dir, real):
    """Where the shim for interpreter `real` (path kept unresolved) lives."""
    import zlib

    return "%s/%s-%08x" % (shim_dir, os.path.basename(real), zlib.crc32(real.encode("utf-8", "surrogateescape")))


def _sh_quote(s):
    return "'" + s.replace("'", "'\"'\"'") + "'"


def shim_text(path, real, preloads):
    """A /bin/sh shim: remember the caller's LD_PRELOAD (unset distinct from
    empty), put ours first, mark this pid, exec the real interpreter by its
    unresolved path (so a venv stays a venv)."""
    return (
        "#!/bin/sh\n"
        "# launcher preload shim for %(real)s -- generated, do not edit\n"
        'if [ "${LD_PRELOAD+set}" = set ]; then LAUNCHER_ORIG_LD_PRELOAD="set:$LD_PRELOAD"; '
        "else LAUNCHER_ORIG_LD_PRELOAD=unset; fi\n"
        'LD_PRELOAD=%(pre)s"${LD_PRELOAD:+:$LD_PRELOAD}"\n'
        "LAUNCHER_SHIM_PID=$$\n"
        "LAUNCHER_SHIM=%(self)s\n"
        "export LD_PRELOAD LAUNCHER_ORIG_LD_PRELOAD LAUNCHER_SHIM_PID LAUNCHER_SHIM\n"
        'exec %(real)s "$@"\n'
    ) % {"real": _sh_quote(real), "pre": _sh_quote(":".join(preloads)), "self": _sh_quote(path)}


def write_shim(shim_dir, real, preloads):
    """Create (atomically, idempotently) the shim for `real`; return its path."""
    path = shim_path(shim_dir, real)
    text = shim_text(path, real, preloads)
    try:
        with open(path) as f:
            if f.read() == text:
                return path
    except OSError:
        pass
    os.makedirs(shim_dir, 0o755, exist_ok=True)
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.rename(tmp, path)
    return path


def mapped(names):
    """Which of `names` (paths or sonames) are really mapped into this process."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return None
    out = []
    for n in names:
        base = os.path.basename(n)
        if ("/" + base) in maps or (os.path.realpath(n) in maps):
            out.append(n)
    return out


def _preloads(env):
    """Return True when this process came up through a shim of ours.

    sys.executable stays the real interpreter (pip, venv, ipykernel and
    virtualenv persist it); the shim reaches children only through transient
    channels: the multiprocessing executable, PYTHON_EXEC, and the re-exec
    of any other Python child that starts without it."""
    shim_dir = env.get("LAUNCHER_SHIM_DIR")
    if not shim_dir:
        return False
    pid = str(os.getpid())
    via_shim = env.get("LAUNCHER_SHIM_PID") == pid
    libs = env.get("LAUNCHER_PRELOAD_LIBS", "").split(":")
    if via_shim:
        # Consume the mark: if this pid later execs the real interpreter
        # directly, LD_PRELOAD is already restored, so it must not pass.
        env.pop("LAUNCHER_SHIM_PID", None)
    shim = env.get("LAUNCHER_SHIM") if via_shim else None
    if not via_shim:
        policy = env.get("LAUNCHER_PRELOAD_MISSING", "reexec")
        if policy == "reexec":
            _reexec(env, shim_dir)  # returns only when it must not or could not
        elif policy == "warn":
            _say("this interpreter (pid %s) was not started through the launcher's shim, "
                 "so its preloads are not loaded (--preload-missing=warn)" % pid)
        if sys.executable:
            try:
                shim = write_shim(shim_dir, sys.executable, libs)
            except OSError:
                shim = None
    if shim:
        _children_through(shim, env.get("LAUNCHER_BOOTSTRAP"), shim_dir)
        _python_exec(env, shim_dir, shim, libs)
    orig = env.get("LAUNCHER_ORIG_LD_PRELOAD")
    if via_shim and orig is not None:
        # Non-Python children (/bin/sh, compilers, git) see the caller's value.
        if orig.startswith("set:"):
            os.environ["LD_PRELOAD"] = orig[4:]
        else:
            os.environ.pop("LD_PRELOAD", None)
    return via_shim


def _python_exec(env, shim_dir, shim, libs):
    """torchrun starts its workers with PYTHON_EXEC (default sys.executable).
    A value the user set keeps naming their interpreter, through a shim of
    its own; otherwise this interpreter's shim.  The user's value travels in
    LAUNCHER_USER_PYTHON_EXEC so descendants (and a nested launch) keep it."""
    cur = env.get("PYTHON_EXEC")
    user = None
    if cur:
        user = env.get("LAUNCHER_USER_PYTHON_EXEC") if cur.startswith(shim_dir + "/") else cur
    if not user:
        env.pop("LAUNCHER_USER_PYTHON_EXEC", None)
        env["PYTHON_EXEC"] = shim
        return
    env["LAUNCHER_USER_PYTHON_EXEC"] = user
    # The shim names it as the workers' sys.executable will (an absolute
    # path), so their own children match it and start through a shim too.
    target = os.path.abspath(user) if "/" in user else _which(user, env.get("PATH", os.defpath)) or user
    try:
        env["PYTHON_EXEC"] = write_shim(shim_dir, target, libs)
    except OSError:
        env["PYTHON_EXEC"] = user  # its workers re-exec through a shim of their own


def _which(name, path):
    for d in path.split(os.pathsep):
        cand = os.path.join(d or ".", name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return os.path.abspath(cand)
    return None


def _set_mp(mod, shim):
    try:
        mod.set_executable(shim)
    except Exception:
        pass


def _children_through(shim, boot, shim_dir):
    """Python children start through the shim while sys.executable stays real:
    multiprocessing.spawn captures its executable when imported (spawn and
    forkserver workers, the resource tracker), and subprocess children of
    sys.executable get the shim as their `executable` (argv unchanged), so
    neither pays a re-exec.  Both are set when those modules are imported, by
    a one-shot finder that exists on the preload path only."""
    hooks = {}
    mod = sys.modules.get("multiprocessing.spawn")
    if mod is not None:
        _set_mp(mod, shim)
    else:
        hooks["multiprocessing.spawn"] = lambda m: _set_mp(m, shim)
    mod = sys.modules.get("subprocess")
    if mod is not None:
        _wrap_popen(mod, shim, boot, shim_dir)
    else:
        hooks["subprocess"] = lambda m: _wrap_popen(m, shim, boot, shim_dir)
    if hooks:
        _after_import(hooks)


def _after_import(hooks):
    """Call hooks[name](module) right after `name` is first executed."""

    class Loader(object):
        def __init__(self, inner, name):
            self.inner = inner
            self.name = name

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def create_module(self, spec):
            return self.inner.create_module(spec)

        def exec_module(self, module):
            # Nothing of ours stays on the module, nor (once done) in sys.meta_path.
            module.__loader__ = self.inner
            if getattr(module, "__spec__", None) is not None:
                module.__spec__.loader = self.inner
            self.inner.exec_module(module)
            hook = hooks.pop(self.name, None)
            if not hooks:
                try:
                    sys.meta_path.remove(finder)
                except ValueError:
                    pass
            if hook is not None:
                try:
                    hook(module)
                except Exception:
                    pass

    class Finder(object):
        def find_spec(self, name, path=None, target=None):
            if name not in hooks:
                return None
            for other in sys.meta_path:
                find = getattr(other, "find_spec", None)
                if other is self or find is None:
                    continue
                spec = find(name, path, target)
                if spec is not None:
                    if hasattr(spec.loader, "exec_module"):
                        spec.loader = Loader(spec.loader, name)
                    return spec
            return None

    finder = Finder()
    sys.meta_path.insert(0, finder)


def _wrap_popen(mod, shim, boot, shim_dir):
    cls = getattr(mod, "Popen", None)
    inner = getattr(cls, "_execute_child", None)
    if inner is None or getattr(inner, "_launcher_shim", None) is not None:
        return
    real = sys.executable

    def _execute_child(self, args, executable, *rest, **kw):
        # (args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo,
        # creationflags, shell, ...) on every CPython 3.8+ and PyPy.
        try:
            env = rest[4] if len(rest) > 4 else kw.get("env")
            shell = rest[7] if len(rest) > 7 else kw.get("shell")
            if (executable is None and not shell and isinstance(args, (list, tuple)) and args
                    and args[0] == real and _gated_env(os.environ if env is None else env, boot, shim_dir)
                    and not _isolating(args)):
                executable = shim
        except Exception:
            pass
        return inner(self, args, executable, *rest, **kw)

    _execute_child._launcher_shim = shim
    cls._execute_child = _execute_child


def _gated_env(env, boot, shim_dir):
    """Will the gate run (and restore LD_PRELOAD) in a child with this env?"""
    return (env.get("LAUNCHER_BOOTSTRAP") == boot and env.get("LAUNCHER_SHIM_DIR") == shim_dir
            and boot in env.get("PYTHONPATH", "").split(os.pathsep))


def _isolating(argv):
    # -I/-E/-S skip PYTHONPATH or site: no gate there to restore LD_PRELOAD,
    # so such a child must not start through the shim.
    flags = _flags(argv)[0]
    return "I" in flags or "E" in flags or "S" in flags


def _reexec(env, shim_dir):
    """Re-exec once, preloaded, with the exact original argv."""
    pid = str(os.getpid())
    if env.get("LAUNCHER_REEXEC_PID") == pid:
        return  # we already tried in this process: never loop
    exe = sys.executable
    if not exe:
        return
    try:
        # An embedded interpreter (uwsgi, blender, ld.so --preload) is not
        # the binary sys.executable names: never re-exec it.
        if os.path.realpath("/proc/self/exe") != os.path.realpath(exe):
            return
    except OSError:
        return
    argv = getattr(sys, "orig_argv", None) or _orig_argv()
    if not argv:
        return
    try:
        shim = write_shim(shim_dir, exe, env.get("LAUNCHER_PRELOAD_LIBS", "").split(":"))
    except OSError as exc:
        _say("cannot write the preload shim in %s (%s); preloads are not loaded here" % (shim_dir, exc))
        return
    # What the shim does, done here: one exec (of the interpreter) instead of
    # two (/bin/sh, then the interpreter).  Keep in step with shim_text.
    new = dict(os.environ)
    cur = new.get("LD_PRELOAD")
    new["LAUNCHER_ORIG_LD_PRELOAD"] = "unset" if cur is None else "set:" + cur
    new["LD_PRELOAD"] = env.get("LAUNCHER_PRELOAD_LIBS", "") + (":" + cur if cur else "")
    new["LAUNCHER_SHIM_PID"] = new["LAUNCHER_REEXEC_PID"] = pid
    new["LAUNCHER_SHIM"] = shim
    try:
        os.execve(exe, [exe] + list(argv[1:]), new)
    except OSError as exc:
        _say("could not re-exec %s with its preloads (%s)" % (exe, exc))


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
    if name[:3] == "pip":  # pip, pip3, pip3.13: the console scripts
        return not name[3:].strip("0123456789.")
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
        if os.path.exists(tree + "/" + MANIFEST):
            state = "hit"
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
            preloads_mapped=mapped(preloads.split(":")) if preloads and env.get("LAUNCHER_RECORD") else None,
        )
    _ensure_pyc()
    _chain(boot)


if __name__ == "sitecustomize":
    try:
        _main()
    except BaseException as _exc:  # never raise from start-up: SystemExit here is fatal
        if isinstance(_exc, KeyboardInterrupt):
            pass
        _say("start-up gate error (%s: %s); the program continues. Run 'launcher doctor'."
             % (type(_exc).__name__, _exc))
