# The gate's miss path and rare exits, loaded on demand by sitecustomize.py
# (`_part("miss")`) so that every matched start does not pay for reading and
# unmarshalling them: building a runtime (queued on a lock, by the launcher
# in a scrubbed environment), run records, and the exit a plugin's sys.exit
# asks for during start-up.  Same rules as the gate: stdlib only,
# CPython 3.8+ and PyPy, never raises into the program, nothing on stdout.
# The launcher imports `scrubbed_env` from here as an ordinary module.
import os
import sys

# The gate sets these to its own functions when it loads this part
# (scrubbed_env, all the launcher uses, needs neither).
_say = _published = _orig_argv = None


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


def record(env, event, **fields):
    """Append one JSON line to this run's record (cheap: one open/write)."""
    run = env.get("LAUNCHER_RUN_ID")
    cache = env.get("LAUNCHER_CACHE_DIR")
    if not run or not cache:
        return
    fields["event"] = event
    fields["pid"] = os.getpid()
    fields["ppid"] = os.getppid()
    if env.get("LAUNCHER_RECORD"):  # every start is recorded (else only the gate's misses)
        import time

        fields["at"] = time.time()  # `launcher runs show` orders and dates by it
        if event == "gate":
            fields["recording"] = True
            fields["argv"] = command_line()
    parts = []
    for k, v in fields.items():
        if v is None:
            parts.append('"%s": null' % k)
        elif v is True or v is False:
            parts.append('"%s": %s' % (k, "true" if v else "false"))
        elif isinstance(v, int):
            parts.append('"%s": %d' % (k, v))
        elif isinstance(v, float):
            parts.append('"%s": %.6f' % (k, v))
        elif isinstance(v, (list, tuple)):
            parts.append('"%s": [%s]' % (k, ", ".join(_jstr(x) for x in v)))
        else:
            parts.append('"%s": %s' % (k, _jstr(v)))
    line = ("{" + ", ".join(parts) + "}\n").encode("utf-8", "replace")
    if "/" in run:
        return
    runs = _open_area(cache, "runs", create=True)
    if runs is None:
        return  # never append through a link, or into a dir others control
    try:
        fd = os.open(run + ".jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                     0o600, dir_fd=runs)
    except (OSError, NotImplementedError):
        return
    finally:
        os.close(runs)
    try:
        st = os.fstat(fd)
        if (st.st_uid == os.getuid() or st.st_uid == 0) and not st.st_mode & 0o022:
            os.write(fd, line)  # (never into a file someone else owns or can write)
    except OSError:
        pass  # a full disk or quota: the record is skipped, the program runs
    finally:
        os.close(fd)


def command_line():
    """This interpreter's command line, as `ps` shows it (recorded runs only)."""
    argv = getattr(sys, "orig_argv", None) or _orig_argv() or getattr(sys, "argv", None) or []
    return [str(a) for a in argv]


def watch_exit(env):
    """Record how this interpreter ends, and how the children it waits for
    ended (recorded runs only).  Exact: a child's status as its parent
    reaped it (os.waitpid, which subprocess and multiprocessing use: the
    code, or minus the signal).  Seen from inside: sys.exit's code, 1 for an
    uncaught exception.  A plain end is recorded without a status: a
    top-level `raise SystemExit(n)` (`python -m pytest`) is invisible from
    inside, and a status is never guessed.  The program's only traces are
    sys.exit and os.waitpid themselves, wrapped to see the codes."""
    import atexit

    pid = os.getpid()
    seen = {}
    real_exit, real_waitpid = sys.exit, os.waitpid

    def exit(status=None):
        seen["code"] = status
        return real_exit(status)

    def waitpid(child, options):
        got = real_waitpid(child, options)
        if got[0] > 0:
            status = got[1]
            try:
                record(env, "reaped", child=got[0],
                       status=(status >> 8) & 0xFF if status & 0x7F == 0 else -(status & 0x7F))
            except Exception:
                pass  # the program's wait is never the record's problem
        return got

    for wrapper, real in ((exit, real_exit), (waitpid, real_waitpid)):
        wrapper.__doc__, wrapper.__wrapped__ = real.__doc__, real
    sys.exit, os.waitpid = exit, waitpid

    def exited():
        if os.getpid() != pid:
            return  # a forked child ending through our parent's hook: not this interpreter
        failed = getattr(sys, "last_value", None)
        if failed is not None and not hasattr(sys, "ps1"):
            status, how = 1, "uncaught %s" % type(failed).__name__
        elif "code" in seen:
            code = seen["code"]
            status = 0 if code is None else code & 0xFF if isinstance(code, int) else 1
            how = "sys.exit"
        else:
            status, how = None, "end"
        try:
            record(env, "exit", status=status, how=how)
        except Exception:
            pass  # nothing of ours at the program's exit

    atexit.register(exited)


def _open_area(cache, area, create=False):
    """A descriptor of the directory cache/area, each component checked as
    it is opened (the root may be a link the user made; `area` is never
    followed): what is written there is written where the check looked, and
    a component swapped for a link meanwhile is refused.  None when it is
    missing (and not `create`d), not ours, or writable by others."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        root = os.open(cache, flags)
    except OSError:
        return None
    try:
        if _problem(os.fstat(root)) is not None:
            return None
        flags |= getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(area, flags, dir_fd=root)
        except FileNotFoundError:
            if not create:
                return None
            try:
                os.mkdir(area, 0o700, dir_fd=root)
            except FileExistsError:
                pass
            fd = os.open(area, flags, dir_fd=root)
        if _problem(os.fstat(fd)) is not None:
            os.close(fd)
            return None
        return fd
    except (OSError, NotImplementedError):
        return None
    finally:
        os.close(root)


def _problem(st):
    """The trust rule for a directory already stat'ed (see _untrusted)."""
    if (st.st_mode & 0o170000) == 0o120000:
        return "is a symlink (the launcher never follows links inside its cache)"
    if (st.st_mode & 0o170000) != 0o040000:
        return "is not a directory"
    if st.st_uid != os.getuid() and st.st_uid != 0:
        return "is owned by uid %d, not you" % st.st_uid
    if st.st_mode & 0o022:
        return "is a shared sticky directory" if st.st_mode & 0o1000 else "is writable by others"
    return None


def _untrusted(path, follow=False):
    """Why `path` must not be written or run from: not a real directory of
    ours, or writable by others (None when it is fine or does not exist yet).
    Only the miss path asks: a hit writes nothing.

    The rule is cache.safety.dir_problem's, and _launcher_warm.trusted's on the
    warm path: three copies, kept in step by hand, because the gate can
    import nothing of the launcher's and the warm path cannot afford to
    import this file or pathlib."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError:
        return None
    return _problem(st)


def build(env, key, tree, exe):
    """Miss path.  Cold workers of one tree queue on a lock file of their own:
    the first asks the launcher to build, the others sleep (no launcher
    process each) until the tree is published and use it ("waited")."""
    cache = env["LAUNCHER_CACHE_DIR"]
    for path, follow in ((cache, True), (cache + "/locks", False), (cache + "/failures", False)):
        why = _untrusted(path, follow)
        if why is not None:
            _say("the cache dir %s %s, so the runtime for %s is not built from it; continuing "
                 "without it. Run 'launcher doctor' for the fix." % (path, why, key))
            return "untrusted"
    locks = _open_area(cache, "locks")
    try:
        import fcntl

        if locks is None:
            raise OSError("no locks/ of ours to queue on")
        fd = os.open("%s-%s.gate-lock" % (key, env.get("LAUNCHER_SPEC", "").replace("/", "")),
                     os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600, dir_fd=locks)
    except (ImportError, OSError, NotImplementedError):
        fd = None  # nothing to queue on (no locks/ yet): build unqueued, as before
    finally:
        if locks is not None:
            os.close(locks)
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
    report = _report_fd(env)
    if report is not None:
        argv += ["--report-fd", str(report)]
    start = time.time()
    try:
        # The builder's own output must never reach the workload's stdout;
        # its stderr is ours to read (the reason of a failure, said once by
        # us), and its progress goes to our stderr through `report`.
        proc = subprocess.run(
            argv, env=child_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, pass_fds=() if report is None else (report,),
        )
    except OSError as exc:
        _say("cannot start the launcher to build the runtime for %s (%s); continuing "
             "without it. Run 'launcher doctor'." % (key, exc))
        return "no-launcher"
    finally:
        if report is not None:
            os.close(report)
    if proc.returncode == 0 and _published(tree):
        # What the build had to say (a pin of the job this ABI cannot have)
        # went to our stderr through `report`; under -q nothing is said.
        record(env, "built", key=key, tree=tree, seconds=int(time.time() - start))
        return "built"
    reason = (proc.stderr or b"").decode("utf-8", "replace").strip().splitlines()
    _say(
        "could not build the runtime for %s (%s); continuing without it. "
        "Run 'launcher doctor' for details."
        % (key, reason[-1].replace("launcher: ", "") if reason else "exit %d" % proc.returncode)
    )
    return "failed"


def _report_fd(env):
    """A copy of our stderr for the builder's progress, as `launcher run`
    shows it in the foreground (a live line when it is a terminal); None
    under `run -q` or with stderr closed."""
    if env.get("LAUNCHER_QUIET"):
        return None
    try:
        return os.dup(2)
    except OSError:
        return None


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


def exit_as(exc):
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
