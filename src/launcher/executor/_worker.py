# The worker of `launcher.Executor` and `launcher.replicas`, run as a script
# (`python .../launcher/executor/_worker.py MODE ...`) by any interpreter the
# user picked, started with `launcher.prepare()`'s argv and environment: the
# gate has put the runtime tree (which holds cloudpickle) on sys.path.  The
# launcher package itself is NOT importable here, so: stdlib + cloudpickle,
# CPython 3.8+ and PyPy.
#
#   pool    RFD WFD PARENT_PID SPILL_DIR LIFELINE_FD   serve tasks over two pipes
#   replica PARENT_PID RUN_DIR RANK FD     run one entrypoint, write its outcome
import os
import sys
from pickle import PicklingError

_HERE = os.path.dirname(os.path.realpath(__file__))
# Python put this script's directory first on sys.path: it is ours, not the
# user's, and must not make our private modules importable to tasks.
if sys.path and sys.path[0] and os.path.realpath(sys.path[0]) == _HERE:
    del sys.path[0]


def _load(name, path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


P = _load("_launcher_executor_protocol", os.path.join(_HERE, "_protocol.py"))


def _proctree():
    return _load("_launcher_proctree", os.path.join(os.path.dirname(_HERE), "_proctree.py"))


def _tree_dies_with_parent(lifeline):
    """Nothing a task started outlives the driver.  This worker adopts its
    tasks' orphans (a child subreaper: a process that daemonises or leaves
    our process group stays in our tree), and when the lifeline closes (the
    driver died, even by SIGKILL, or let us go) a thread SIGKILLs every
    descendant, then this process."""
    return _watch_lifeline(lifeline, "launcher-worker-lifeline", lambda: os._exit(1))


def _watch_lifeline(lifeline, name, end):
    """Become the subreaper of what we start and, when `lifeline` reads EOF
    (the driver holds its only write end: it is gone), SIGKILL every
    descendant, then `end()`.  Returns the process tree."""
    import threading

    os.set_inheritable(lifeline, False)
    tree = _proctree()
    tree.become_subreaper()

    def watch():
        try:
            while os.read(lifeline, 1):
                pass
        except OSError:
            pass
        tree.end_tree(0)
        end()

    threading.Thread(target=watch, name=name, daemon=True).start()
    return tree


def _default_signals():
    """Python's own dispositions, whatever the driver had: an ignored SIGINT
    or a blocked mask is inherited through fork/exec, loky-style handlers
    are not what user code expects."""
    import signal

    for name in ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGCHLD"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _who():
    """Who runs the tasks: pid, ABI key (the gate's own function), runtime tree."""
    gate = sys.modules.get("sitecustomize")
    key = None
    if hasattr(gate, "abi_key"):
        try:
            key = gate.abi_key()
        except Exception:
            key = None
    cache = os.environ.get("LAUNCHER_CACHE_DIR")
    tree = None
    if cache:
        trees = os.path.join(cache, "trees") + os.sep
        tree = next((p for p in sys.path if p.startswith(trees)), None)
    return {
        "pid": os.getpid(),
        "abi_key": key,
        "tree": tree,
        "executable": sys.executable,
        "version": "%d.%d.%d" % sys.version_info[:3],
        "implementation": sys.implementation.name,
    }


def _add_project_paths(paths):
    # The driver's project (script dir, cwd), ahead of the interpreter's own
    # entries as Python itself would put a script's directory.
    for p in reversed([p for p in paths if p not in sys.path]):
        sys.path.insert(0, p)


def _error_payload(exc, cloudpickle, stage="run"):
    import pickle
    import traceback

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        blob = cloudpickle.dumps(exc, protocol=P.PROTOCOL)
        pickle.loads(blob)  # must round-trip here, or the driver gets a broken object
    except Exception:
        blob = None
    cls = type(exc)
    return pickle.dumps({
        "module": cls.__module__, "qualname": cls.__qualname__, "message": str(exc),
        "traceback": tb, "exc": blob, "stage": stage,
    }, protocol=4)


class _LazyCloudpickle:
    """What the pool worker pickles with: plain pickle, and cloudpickle only
    for what pickle cannot do by reference (functions and classes sent by
    value).  Importing cloudpickle costs a worker's start-up about as much
    as the interpreter's own start; most tasks and results never need it.
    Loading needs no help: a payload that holds by-value code names
    cloudpickle's own functions, and unpickling imports it then."""

    def __init__(self):
        self._module = None

    @property
    def module(self):
        if self._module is None:
            import cloudpickle

            self._module = cloudpickle
        return self._module

    @staticmethod
    def loads(data):
        import pickle

        return pickle.loads(data)

    def dumps(self, obj, protocol):
        import pickle

        try:
            return pickle.dumps(obj, protocol=protocol)
        except Exception:
            return self.module.dumps(obj, protocol=protocol)

    def dump_into(self, obj, sink, protocol):
        import pickle

        try:
            pickle.Pickler(sink, protocol=protocol).dump(obj)
            return
        except OSError:
            raise
        except Exception:
            sink.discard()
            sink.__init__(sink.path, sink.threshold)
        self.module.Pickler(sink, protocol=protocol).dump(obj)


def _dump_result(result, sink, cloudpickle):
    """Pickle `result` into `sink`; an unpicklable result is an error naming its type."""
    try:
        if isinstance(cloudpickle, _LazyCloudpickle):
            cloudpickle.dump_into(result, sink, P.PROTOCOL)
        else:
            cloudpickle.Pickler(sink, protocol=P.PROTOCOL).dump(result)
    except OSError:
        sink.discard()  # the spill file could not be written (never one we did not create)
        raise
    except Exception as exc:
        sink.discard()
        if isinstance(exc, PicklingError):
            raise
        cls = type(result)
        raise PicklingError("the task's result of type %s.%s cannot be pickled: %s"
                            % (cls.__module__, cls.__qualname__, exc)) from exc


def _load_task(payload, cloudpickle):
    try:
        return cloudpickle.loads(payload)
    except ImportError as exc:
        # Functions and classes of modules travel by name: say where the worker looked.
        raise type(exc)(
            "%s in the worker (%s %s): the module must be importable there; add its "
            "distribution to the runtime (flags={'with': [...]}) or keep it in your project "
            "(the script's directory, the working directory or PYTHONPATH)"
            % (exc, sys.implementation.name, sys.version.split()[0]), name=exc.name) from exc


class _State:
    """The per-task sandbox: cwd and sys.path are restored after each task."""

    def __init__(self):
        self.cwd = os.getcwd()
        self.path = list(sys.path)

    def restore(self):
        if sys.path != self.path:
            sys.path[:] = self.path
        try:
            if os.getcwd() != self.cwd:
                os.chdir(self.cwd)
        except OSError:
            os.chdir(self.cwd)


class _Sigint:
    """SIGINT is blocked while the worker waits or talks to the driver, and
    delivered (as KeyboardInterrupt) only while a task runs; one that came
    while idle is discarded rather than hitting the next task."""

    def __init__(self):
        try:
            # The C module: `signal`'s wrappers turn every mask they return
            # into a set of enum members, twice for every task.
            import _signal as signal
        except ImportError:  # PyPy and others
            import signal

        self.signal = signal
        self.ok = hasattr(signal, "pthread_sigmask")
        self.block()

    def block(self):
        if self.ok:
            self.signal.pthread_sigmask(self.signal.SIG_BLOCK, [self.signal.SIGINT])

    def unblock(self):
        if not self.ok:
            return
        if hasattr(self.signal, "sigtimedwait"):
            while self.signal.sigtimedwait([self.signal.SIGINT], 0) is not None:
                pass
        self.signal.pthread_sigmask(self.signal.SIG_UNBLOCK, [self.signal.SIGINT])


class _AuthkeyOnImport:
    """Give multiprocessing the driver's authkey when (and only if) a task
    imports it, as a spawned child gets its parent's: Manager proxies passed
    as arguments then connect back.  Importing multiprocessing up front
    would cost every worker's start-up some 20 ms."""

    def __init__(self, key):
        self.key = key

    def find_spec(self, name, path=None, target=None):
        if name != "multiprocessing.process":
            return None
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            run, key = spec.loader.exec_module, self.key

            def exec_module(module):
                run(module)
                module.current_process().authkey = key

            spec.loader.exec_module = exec_module
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
        return spec


def _use_authkey(key):
    loaded = sys.modules.get("multiprocessing.process")
    if loaded is not None:
        loaded.current_process().authkey = key
    else:
        sys.meta_path.insert(0, _AuthkeyOnImport(key))


def _serve(rfd, wfd, spill_dir, cloudpickle):
    reader = P.FrameReader(rfd)
    kind, _, payload = reader.read()
    if kind != P.INIT:
        return 3
    try:
        # Plain data first, then what may need the project's paths.
        init = cloudpickle.loads(payload)
        _add_project_paths(init["paths"])
        if init.get("authkey"):
            _use_authkey(init["authkey"])
        if init.get("initializer") is not None:
            initializer, initargs = cloudpickle.loads(init["initializer"])
            initializer(*initargs)
    except BaseException as exc:
        import traceback

        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        P.write_frame(wfd, P.FATAL, 0, ("the initializer failed:\n" + text).encode("utf-8", "replace"))
        return 3
    P.write_frame(wfd, P.READY, 0, cloudpickle.dumps(_who(), protocol=P.PROTOCOL))
    state = _State()
    sigint = _Sigint()
    while True:
        try:
            kind, task_id, payload = reader.read()
        except P.Closed:
            return 0
        if kind == P.EXIT:
            return 0
        if kind != P.TASK:
            continue
        sink = P.SpillSink(os.path.join(spill_dir, "%d.result" % task_id))
        stage = "load"
        try:
            task = _load_task(payload, cloudpickle)
            del payload
            stage = "run"
            sigint.unblock()
            try:
                result = _call(task)
            finally:
                sigint.block()
                del task  # the arguments go now (a Manager proxy's __del__ may matter to the caller)
            _dump_result(result, sink, cloudpickle)
            del result
        except BaseException as exc:
            sigint.block()
            # An ImportError is the user's to fix (the message says how); any
            # other failure to load the task is the transport's (PayloadError).
            reply = (P.ERROR, _error_payload(
                exc, cloudpickle, "load" if stage == "load" and not isinstance(exc, ImportError) else "run"))
        else:
            if sink.spilled:
                sink.close()
                reply = (P.SPILLED, b"")
            else:
                reply = (P.OK, sink.getvalue())
        finally:
            state.restore()
            _flush()
        P.write_frame(wfd, reply[0], task_id, reply[1])


def _call(task):
    """(fn, args, kwargs) is one call; (fn, chunk) a chunk of `map`: a list of results."""
    if len(task) == 2:
        fn, chunk = task
        return [fn(*args) for args in chunk]
    fn, args, kwargs = task
    return fn(*args, **kwargs)


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def pool_main(argv):
    rfd, wfd, parent = int(argv[0]), int(argv[1]), int(argv[2])
    spill_dir = argv[3]
    for fd in (rfd, wfd):
        os.set_inheritable(fd, False)  # the tasks' own children must not hold our pipes
    tree = _tree_dies_with_parent(int(argv[4]))
    if os.getppid() != parent:  # the driver died before the watch began
        return 1
    _default_signals()
    import importlib.util

    if importlib.util.find_spec("cloudpickle") is None:
        P.write_frame(wfd, P.FATAL, 0, _no_cloudpickle("not found").encode("utf-8", "replace"))
        return 3
    try:
        return _serve(rfd, wfd, spill_dir, _LazyCloudpickle())
    finally:
        tree.end_tree(1.0)  # a task's processes live no longer than its worker


def _no_cloudpickle(exc):
    return ("%s (%s %s) cannot import cloudpickle (%s): its runtime tree is missing or failed "
            "to build; run 'launcher doctor'" % (sys.executable, sys.implementation.name,
                                                 sys.version.split()[0], exc))


# ------------------------------------------------------------------ replicas


def _resolve(entrypoint):
    if not isinstance(entrypoint, str):
        return entrypoint
    import importlib

    mod, _, name = entrypoint.rpartition(".")
    if not mod:
        raise ValueError("entrypoint %r is not a dotted path 'pkg.module.function'" % entrypoint)
    obj = importlib.import_module(mod)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _group_dies_with_parent(lifeline):
    """The driver holds the only write end of `lifeline`: EOF means it is gone,
    and then so is this replica's whole process group, and every process it
    started, those that left the group included (it is their subreaper).
    (Not PR_SET_PDEATHSIG here: it would kill this process before it could
    take its children along.)"""
    import signal

    _watch_lifeline(lifeline, "launcher-replica-lifeline", lambda: os.killpg(os.getpgid(0), signal.SIGKILL))


def replica_main(argv):
    run_dir, rank, lifeline = argv[1], int(argv[2]), int(argv[3])
    _group_dies_with_parent(lifeline)
    _default_signals()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)  # the log file is read while we run
        except Exception:
            pass
    try:
        import cloudpickle
    except ImportError as exc:
        sys.stderr.write("launcher: " + _no_cloudpickle(exc) + "\n")
        return 3
    base = os.path.join(run_dir, "rank-%d" % rank)
    try:
        fd = os.open(os.path.join(run_dir, "entry.pkl"), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            import pickle

            # The project's paths come first in the file and go on sys.path
            # before the entrypoint is unpickled: it may be a function of a
            # module only they make importable.
            _add_project_paths(pickle.load(f))
            entry = cloudpickle.load(f)
        fn = _resolve(entry["entrypoint"])
        result = fn(**entry["kwargs"])
        sink = P.SpillSink(base + ".result", threshold=0)
        _dump_result(result, sink, cloudpickle)
        sink.close()
    except BaseException as exc:
        _flush()
        P.write_private(base + ".error", _error_payload(exc, cloudpickle))
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)
        _flush()
        return 1
    _flush()
    return 0


def main(argv):
    mode = argv[0] if argv else ""
    if mode == "pool":
        return pool_main(argv[1:])
    if mode == "replica":
        return replica_main(argv[1:])
    sys.stderr.write("launcher: executor worker: unknown mode %r\n" % mode)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
