"""`launcher.Executor`: a `concurrent.futures.Executor` whose workers are
started the way `launcher run python` starts Python, on any interpreter.

One thread per worker slot spawns its worker, hands it one task at a time and
waits for the reply: a worker is never sent a task it is not reading, and its
replies are always drained, so nothing deadlocks on a pipe.  The slot thread
holds the write end of its worker's lifeline pipe: when the driver dies, even
by SIGKILL, the worker sees EOF and ends every process its tasks started
(it is their subreaper), then itself.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pickle
import signal
import subprocess
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor as _BaseExecutor
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.cache import safety
from launcher.executor import _protocol as P
from launcher.executor._pickling import BytecodeNotPortable, dumps_for
from launcher.executor._start import WorkerCommand, argv_for, private_dir, worker_command

if TYPE_CHECKING:
    from launcher.config import Settings
    from launcher.plan import Prepared


# ----------------------------------------------------------------- public types


@dataclass(frozen=True)
class WorkerInfo:
    """Who ran a task, as the worker itself reports it."""

    pid: int
    abi_key: str | None
    tree: str | None
    executable: str
    version: str
    implementation: str


class TaskFuture(Future):
    """A Future that also says which worker ran (or runs) its task."""

    worker: WorkerInfo | None = None


class RemoteTraceback(Exception):
    """The worker's traceback, attached as `__cause__` of a task's exception."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


class RemoteError(Exception):
    """A task's exception whose type cannot be rebuilt in the driver."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message


class WorkerDied(BrokenProcessPool):
    """The worker running a task died; the task is not retried, the worker is replaced.

    A `BrokenProcessPool`, so code written for `ProcessPoolExecutor` catches
    it; unlike there, only that task fails and the executor stays usable."""


class WorkerStartError(BrokenProcessPool):
    """Workers cannot be started (no cloudpickle in the runtime, a failing initializer)."""


class PayloadError(BrokenProcessPool):
    """A task could not be loaded in its worker, or its result in the driver
    (its `__cause__` says why).  Only that task fails."""


class TaskTimeout(TimeoutError):
    """A task ran past its `timeout`: its worker was stopped and replaced, the task not retried."""


# ------------------------------------------------------------------- pickling


def _rebuild_error(payload: bytes | bytearray, name: str) -> BaseException:
    info = pickle.loads(payload)
    exc: BaseException | None = None
    if info["exc"] is not None:
        try:
            exc = pickle.loads(info["exc"])
        except BaseException:  # SystemExit from a __reduce__ included: never the slot thread's end
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteError(f"{info['module']}.{info['qualname']}", info["message"])
    exc.__cause__ = RemoteTraceback(info["traceback"])
    if info.get("stage") == "load":
        err = PayloadError(f"{name} cannot be loaded in the worker: {info['qualname']}: {info['message']}")
        err.__cause__ = exc
        return err
    return exc


def exit_status(code: int) -> str:
    """`exited with code 3`, `killed by SIGKILL` (or `by signal 40`: no name)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "is gone"
    return ("was " if code < 0 else "") + exit_status(code)


# -------------------------------------------------------------------- workers


@dataclass
class _Task:
    id: int
    future: TaskFuture
    payload: bytes
    timeout: float | None
    name: str


class _Chunk:
    """`map(fn, ..., chunksize=n)`: one task runs `fn` over a chunk of argument tuples."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, chunk: Iterable[tuple[Any, ...]]) -> list[Any]:
        # What the worker does with it (see _worker._call); never run here.
        return [self.fn(*args) for args in chunk]


def _chunks(iterables: tuple[Iterable[Any], ...], size: int) -> Iterator[tuple[tuple[Any, ...], ...]]:
    it = zip(*iterables, strict=False)  # map() stops at the shortest, as zip does
    while True:
        chunk = tuple(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


def _flatten(lists: Iterator[list[Any]]) -> Iterator[Any]:
    """The chunks' results in order, each dropped as soon as it is yielded."""
    for part in lists:
        part.reverse()
        while part:
            yield part.pop()


DONE, GONE, UNSENT = "done", "gone", "unsent"


class _Worker:
    """One worker process and the driver's ends of its two pipes."""

    def __init__(self, cmd: WorkerCommand, spill: Path, init: bytes) -> None:
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        # The lifeline: only we hold its write end; EOF tells the worker that
        # the driver is gone (however it died) or has let it go.
        life_r, life_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                argv_for(cmd, "pool", [to_r, from_w, os.getpid(), spill, life_r]), env=cmd.env, cwd=cmd.cwd,
                pass_fds=(to_r, from_w, life_r), stdin=subprocess.DEVNULL)
        except BaseException:
            for fd in (to_r, to_w, from_r, from_w, life_r, life_w):
                os.close(fd)
            raise
        os.close(to_r)
        os.close(from_w)
        os.close(life_r)
        self.lifeline = life_w
        self.wfd = to_w
        self.reader = P.FrameReader(from_r)
        self.spill = spill
        self.info = self._handshake(init, cmd)

    def _handshake(self, init: bytes, cmd: WorkerCommand) -> WorkerInfo:
        try:
            P.write_frame(self.wfd, P.INIT, 0, init)
            kind, _, payload = self.reader.read()
        except (P.Closed, BrokenPipeError):
            self.close(kill=True)
            raise WorkerStartError(f"the worker ({cmd.interpreter.executable}) "
                                   f"{_exit_reason(self.proc.returncode)} before it was ready; "
                                   "its stderr has the reason") from None
        if kind == P.FATAL:
            self.close(kill=False)
            raise WorkerStartError(bytes(payload).decode("utf-8", "replace"))
        return WorkerInfo(**pickle.loads(payload))

    def run(self, task: _Task) -> str:
        """Run `task` and settle its future: DONE, or GONE when the worker died
        or was stopped with it.  UNSENT (future untouched) when the worker had
        died while idle: the task never reached it, so it may go to another."""
        if self.proc.poll() is not None or _dying(self.proc.pid):
            self.close(kill=True)
            return UNSENT
        try:
            P.write_frame(self.wfd, P.TASK, task.id, task.payload)
        except BrokenPipeError:
            self.close(kill=True)
            return UNSENT
        try:
            if not self.reader.wait(task.timeout):
                return self._lose(task, timed_out=True)
            kind, _, payload = self.reader.read()
        except P.Closed:
            return self._lose(task, timed_out=False)
        try:
            if kind == P.OK:
                value = pickle.loads(payload)
            elif kind == P.SPILLED:
                value = P.load_spill(str(self._spill_of(task)), pickle.load)
            else:
                task.future.set_exception(_rebuild_error(payload, task.name))
                return DONE
        except BaseException as exc:  # SystemExit from a __reduce__ too: the slot thread goes on
            _unlink(self._spill_of(task))
            err = PayloadError(f"the result of {task.name} cannot be loaded in the driver: "
                               f"{type(exc).__name__}: {exc}")
            err.__cause__ = exc
            task.future.set_exception(err)
            return DONE
        task.future.set_result(value)
        return DONE

    def _spill_of(self, task: _Task) -> Path:
        """Where the worker writes a result too big for the pipe."""
        return self.spill / f"{task.id}.result"

    def _lose(self, task: _Task, *, timed_out: bool) -> str:
        """Stop this worker (it ran past the task's timeout, or it died) and
        fail the task; GONE.  The reason is read after the kill has been reaped."""
        self.close(kill=True)
        _unlink(self._spill_of(task))
        if timed_out:
            task.future.set_exception(TaskTimeout(
                f"{task.name} ran past its timeout of {task.timeout:g}s; its worker "
                f"(pid {self.info.pid}) was stopped and replaced; the task is not retried"))
        else:
            task.future.set_exception(WorkerDied(
                f"the worker (pid {self.info.pid}) running {task.name} "
                f"{_exit_reason(self.proc.returncode)}; it is replaced, the task is not retried"))
        return GONE

    def close(self, *, kill: bool, grace: float = 5.0) -> None:
        """Let the worker go; `kill`: now.  Either way what its tasks started
        ends with it: it sees its lifeline close and ends them first."""
        if not kill:
            try:
                P.write_frame(self.wfd, P.EXIT, 0)
            except OSError:
                pass
        # Killed: the lifeline closes first (the worker then ends its tasks'
        # processes and itself); let go: last, so it exits its own way.
        if kill:
            self._let_go()
        for fd in (self.wfd, self.reader.fd):
            _close(fd)
        try:
            # One stuck in C code that holds the GIL does not get long.
            self.proc.wait(1.0 if kill else grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._let_go()

    def _let_go(self) -> None:
        if self.lifeline >= 0:
            fd, self.lifeline = self.lifeline, -1
            _close(fd)


def _dying(pid: int) -> bool:
    """Killed and on its way out, though not reapable yet: the main thread of
    a worker is a zombie until its lifeline thread has exited too, and until
    then the task pipe still takes a write that nobody will read."""
    # (os-level reads: this runs before every task, and open()'s buffered
    # file object would cost more than the check itself)
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        data = os.read(fd, 4096)
    except OSError:
        return False
    finally:
        os.close(fd)
    return data[data.rfind(b")") + 2:][:1] in (b"Z", b"X")


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _task_name(fn: Callable[..., Any]) -> str:
    if isinstance(fn, _Chunk):
        return f"a chunk of map({_task_name(fn.fn)})"
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _authkey() -> bytes:
    """This process's multiprocessing authkey: Manager proxies passed as
    arguments connect back with it, as in a spawned child."""
    import multiprocessing.process

    return bytes(multiprocessing.process.current_process().authkey)


# ------------------------------------------------------------------- executor

_LIVE: weakref.WeakSet[Executor] = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    for ex in list(_LIVE):
        ex.shutdown(wait=True)


class Executor(_BaseExecutor):
    """Run callables in Python workers started the launcher way.

    ``Executor(python=None, *, max_workers=None, flags=None, settings=None,
    cwd=None, environ=None, env_policy="inherit", env_allow=(),
    initializer=None, initargs=(), timeout=None)``: `python` is the workers'
    interpreter (default: this one); `flags`/`settings`/`cwd`/`environ` are
    as for `launcher.prepare()`, and cloudpickle is added to the runtime.
    `env_policy="scrub"` starts workers from an allow-list of variables
    (plus `env_allow` names and `PREFIX*`es).  `timeout` is the default
    per-task limit in seconds (see `submit_with`).
    """

    def __init__(self, python: str | os.PathLike[str] | None = None, *, max_workers: int | None = None,
                 flags: Mapping[str, Any] | None = None, settings: Settings | None = None,
                 cwd: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None,
                 env_policy: str = "inherit", env_allow: Iterable[str] = (),
                 initializer: Callable[..., object] | None = None, initargs: tuple[Any, ...] = (),
                 timeout: float | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError("max_workers must be greater than 0")
        self.max_workers = max_workers or os.cpu_count() or 1
        self.timeout = timeout
        self.command = worker_command(python, flags=flags, settings=settings, cwd=cwd, environ=environ,
                                      env_policy=env_policy, env_allow=tuple(env_allow))
        # Plain data first: the worker adds the project paths (and the
        # authkey) before it loads an initializer that may live there.
        self._init = pickle.dumps({
            "paths": self.command.paths, "authkey": _authkey(),
            "initializer": None if initializer is None else self._dumps((initializer, tuple(initargs))),
        }, protocol=4)
        self._spill = private_dir(self.command.prepared.layout.root, "spill")
        self._cv = threading.Condition()
        self._pending: deque[_Task] = deque()
        self._ids = itertools.count(1)
        self._threads: list[threading.Thread] = []
        self._workers: dict[int, _Worker] = {}
        self._shutdown = False
        self._broken: BaseException | None = None
        _LIVE.add(self)

    # -------------------------------------------------------------- submitting

    @property
    def prepared(self) -> Prepared:
        """The `launcher.Prepared` the workers are started with."""
        return self.command.prepared

    @property
    def spill_dir(self) -> Path:
        """This executor's private (0700) directory for spilled results."""
        return self._spill

    @property
    def workers(self) -> list[WorkerInfo]:
        with self._cv:
            return [w.info for w in self._workers.values()]

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        return self.submit_with(fn, args, kwargs)

    def submit_with(self, fn: Callable[..., Any], args: Iterable[Any] = (),
                    kwargs: Mapping[str, Any] | None = None, *, timeout: float | None = None) -> TaskFuture:
        """`submit` with options: `timeout` (seconds) stops the task's worker
        when it runs longer; the future then raises `TaskTimeout`."""
        with self._cv:
            self._check_open()
        future = TaskFuture()
        name = _task_name(fn)
        try:
            if isinstance(fn, _Chunk):
                payload = self._dumps((fn.fn, tuple(args)[0]))
            else:
                payload = self._dumps((fn, tuple(args), dict(kwargs or {})))
        except BytecodeNotPortable:
            raise  # a mistake in the caller's code, said where it was made
        except Exception as exc:
            # As ProcessPoolExecutor: the error is the future's, as a PicklingError.
            err = exc if isinstance(exc, pickle.PicklingError) else pickle.PicklingError(
                f"cannot pickle {name} or its arguments: {type(exc).__name__}: {exc}")
            if err is not exc:
                err.__cause__ = exc
            future.set_exception(err)
            return future
        task = _Task(next(self._ids), future, payload, self.timeout if timeout is None else timeout, name)
        with self._cv:
            self._check_open()
            self._pending.append(task)
            if not self._threads:
                self._start_slots()
            self._cv.notify()
        return future

    def _check_open(self) -> None:
        if self._broken is not None:
            raise WorkerStartError(str(self._broken)) from self._broken
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1) -> Iterator[Any]:
        """As `Executor.map`; `chunksize` > 1 sends the items to the workers
        in chunks of that many (one task, one round trip each)."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if chunksize == 1:
            return super().map(fn, *iterables, timeout=timeout)
        return _flatten(super().map(_Chunk(fn), _chunks(iterables, chunksize), timeout=timeout))

    def _dumps(self, obj: Any) -> bytes:
        return dumps_for(self.command, obj)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cv:
            self._shutdown = True
            if cancel_futures:
                while self._pending:
                    self._pending.popleft().future.cancel()
            self._cv.notify_all()
            threads = list(self._threads)
        if wait:
            for t in threads:
                t.join()
        if not threads or wait:
            safety.remove(self._spill)
            # After shutdown(wait=False) the executor stays here: at exit the
            # interpreter waits for its pending work, as the standard's does.
            _LIVE.discard(self)

    # ------------------------------------------------------------- worker slots

    def _start_slots(self) -> None:
        for i in range(self.max_workers):
            t = threading.Thread(target=self._slot, name=f"launcher-executor-{i}", daemon=True)
            self._threads.append(t)
            t.start()

    def _next(self) -> _Task | None:
        with self._cv:
            while True:
                if self._broken is not None:
                    return None
                while self._pending:
                    task = self._pending.popleft()
                    if task.future.set_running_or_notify_cancel():
                        return task
                if self._shutdown:
                    return None
                self._cv.wait()

    def _spawn(self) -> _Worker | None:
        try:
            worker = _Worker(self.command, self._spill, self._init)
        except BaseException as exc:
            self._break(exc)
            return None
        with self._cv:
            self._workers[worker.info.pid] = worker
        return worker

    def _break(self, exc: BaseException) -> None:
        with self._cv:
            if self._broken is None:
                self._broken = exc
            failed = list(self._pending)
            self._pending.clear()
            self._cv.notify_all()
        for task in failed:
            if task.future.set_running_or_notify_cancel():
                task.future.set_exception(WorkerStartError(str(exc)))

    def _slot(self) -> None:
        """Take a task, then start a worker for it if this slot has none yet:
        workers start as work needs them, as the standard's do (one task
        never waits for a whole pool to start, nor shutdown for it to stop)."""
        worker: _Worker | None = None
        try:
            while True:
                task = self._next()
                if task is None:
                    break
                if worker is None:
                    worker = self._spawn()
                    if worker is None:  # the executor is broken: this task fails with the rest
                        task.future.set_exception(WorkerStartError(str(self._broken)))
                        break
                worker = self._run(worker, task)
                del task  # the result belongs to the caller now, not to this idle thread
        finally:
            if worker is not None:
                with self._cv:
                    self._workers.pop(worker.info.pid, None)
                worker.close(kill=False)
            self._slot_done()

    def _run(self, worker: _Worker, task: _Task) -> _Worker | None:
        """Run `task` on `worker`; the worker to go on with (a replacement if it died)."""
        current: _Worker | None = worker
        for _ in range(2):  # a task that never reached a dead worker goes to its replacement
            assert current is not None
            task.future.worker = current.info
            outcome = current.run(task)
            if outcome == DONE:
                return current
            with self._cv:
                self._workers.pop(current.info.pid, None)
            current = self._spawn()
            if outcome == GONE or current is None:
                break
        if outcome == UNSENT:
            task.future.set_exception(WorkerDied(
                f"no worker could be started for {task.name}" if current is None else
                f"two fresh workers died before {task.name} reached them"))
        return current

    def _slot_done(self) -> None:
        with self._cv:
            me = threading.current_thread()
            alive = [t for t in self._threads if t is not me and t.is_alive()]
        if not alive and self._shutdown:
            safety.remove(self._spill)
            _LIVE.discard(self)
