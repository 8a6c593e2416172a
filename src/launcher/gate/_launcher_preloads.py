# launcher gate, the rarely used part: preload shims, the re-exec, and the
# hooks that start Python children through the shim.  The gate
# (sitecustomize.py, beside this file) loads it only on the preload path,
# so the matched path without preloads never pays for this code.  Same rules
# as the gate: stdlib only, CPython 3.8+ and PyPy, no threads, nothing on
# stdout, never raise.  The launcher imports it too (write_shim).
import os
import sys

# The gate sets these to its own functions when it loads this part
# (launcher-side users -- plan, tests -- need none of them).
_say = _flags = _orig_argv = None


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
    """Create (atomically, idempotently) the shim for `real`; return its path.

    `shim_dir` is <cache>/shims/<hash>: it is reached one checked component
    at a time (ours or root's, writable by nobody else, never a link), and
    the shim is written relative to it, 0755 whatever the umask.  OSError
    when that cannot be done safely."""
    path = shim_path(shim_dir, real)
    name = os.path.basename(path)
    text = shim_text(path, real, preloads).encode("utf-8")
    fd = _open_shim_dir(shim_dir)
    try:
        try:
            with os.fdopen(os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=fd), "rb") as f:
                if f.read() == text:
                    return path
        except OSError:
            pass
        tmp = "%s.tmp%d" % (name, os.getpid())
        try:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o755, dir_fd=fd)
            try:
                os.fchmod(out, 0o755)
                os.write(out, text)
            finally:
                os.close(out)
            os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=fd)  # a full disk leaves no half-written shim behind
            except OSError:
                pass
            raise
    finally:
        os.close(fd)
    return path


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _open_shim_dir(shim_dir):
    """A descriptor of <cache>/shims/<hash>, made 0755 where missing; every
    component after the cache root checked as opened (the trust rule)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    root = os.path.dirname(os.path.dirname(shim_dir))
    fd = os.open(root, flags)  # the root itself may be a link the user made
    try:
        _check_dir(os.fstat(fd), root)
        for part in ("shims", os.path.basename(shim_dir)):
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
                made = True
            except FileExistsError:
                made = False
            sub = os.open(part, flags | _NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = sub
            if made:
                os.fchmod(fd, 0o755)  # readable by others, writable by nobody else, whatever the umask
            _check_dir(os.fstat(fd), part)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check_dir(st, where):
    if st.st_uid != os.getuid() and st.st_uid != 0 or st.st_mode & 0o022:
        raise OSError("%s is not a directory of ours that nobody else can write" % where)


def mapped(names):
    """Which of `names` (paths or sonames) are really mapped into this process."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            maps = f.read()
    except OSError:
        return None
    out = []
    for n in names:
        base = os.path.basename(n)
        if ("/" + base) in maps or (os.path.realpath(n) in maps):
            out.append(n)
    return out


def not_via_shim(env, shim_dir, pid):
    """This interpreter did not start through a shim: apply the policy, and
    return the shim its own Python children should start through."""
    libs = env.get("LAUNCHER_PRELOAD_LIBS", "").split(":")
    policy = env.get("LAUNCHER_PRELOAD_MISSING", "reexec")
    if policy == "reexec":
        _reexec(env, shim_dir)  # returns only when it must not or could not
    elif policy == "warn":
        _say("this interpreter (pid %s) was not started through the launcher's shim, "
             "so its preloads are not loaded (--preload-missing=warn)" % pid)
    if sys.executable:
        try:
            return write_shim(shim_dir, sys.executable, libs)
        except OSError:
            return None
    return None


def user_python_exec(env, shim_dir, user):
    """torchrun starts its workers with PYTHON_EXEC.  A value the user set
    keeps naming their interpreter, through a shim of its own (so the
    workers get the preloads and their own ABI's tree).  The value travels
    in LAUNCHER_USER_PYTHON_EXEC, for descendants and a nested launch."""
    env["LAUNCHER_USER_PYTHON_EXEC"] = user
    # The shim names it as the workers' sys.executable will (an absolute
    # path), so their own children match it and start through a shim too.
    target = os.path.abspath(user) if "/" in user else _which(user, env.get("PATH", os.defpath)) or user
    try:
        env["PYTHON_EXEC"] = write_shim(shim_dir, target, env.get("LAUNCHER_PRELOAD_LIBS", "").split(":"))
    except OSError:
        env["PYTHON_EXEC"] = user  # its workers re-exec themselves, preloaded


def _which(name, path):
    for d in path.split(os.pathsep):
        cand = os.path.join(d or ".", name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return os.path.abspath(cand)
    return None


def hook_children(shim, boot, shim_dir):
    """Python children start through the shim while sys.executable stays real:
    multiprocessing.spawn captures its executable when imported (spawn and
    forkserver workers, the resource tracker), and subprocess children of
    sys.executable get the shim as their `executable` (argv unchanged), so
    neither pays a re-exec.  Modules already imported are set now; the
    others when they are imported.  Returns the finder that waits for them."""
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
    return _after_import(hooks) if hooks else None


def _set_mp(mod, shim):
    try:
        mod.set_executable(shim)
    except Exception:
        pass


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
    return finder


def _wrap_popen(mod, shim, boot, shim_dir):
    cls = getattr(mod, "Popen", None)
    inner = getattr(cls, "_execute_child", None)
    if inner is None or getattr(inner, "_launcher_shim", None) is not None:
        return
    # Popen.__init__ passes everything to _execute_child positionally, in the
    # order of its parameters: (self, args, executable, preexec_fn, close_fds,
    # pass_fds, cwd, env, startupinfo, creationflags, shell, ...) on CPython
    # 3.8-3.13 and PyPy alike.  Where env and shell sit is read from the
    # method's own signature, not assumed: a version that moves them is still
    # read right, and one that renames them (or a replaced Popen without a
    # code object) is left alone -- children then re-exec, preloaded.
    try:
        code = inner.__code__
        names = code.co_varnames[:code.co_argcount]
        if names[:3] != ("self", "args", "executable"):
            return
        at_env, at_shell = names.index("env") - 3, names.index("shell") - 3
    except (AttributeError, ValueError):
        return
    real = sys.executable

    def _execute_child(self, args, executable, *rest, **kw):
        try:
            env = rest[at_env] if len(rest) > at_env else kw.get("env")
            shell = rest[at_shell] if len(rest) > at_shell else kw.get("shell")
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
