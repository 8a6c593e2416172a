"""`launcher.Executor` behaves as `ProcessPoolExecutor` where callers rely on
it (each of issue 19's six gaps, minimally reproduced), and nothing its
workers start outlives the driver."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import pwd
import shutil
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest

import executor_tasks as tasks
from conftest import WHEELHOUSE, gone, missing
from launcher.errors import LauncherError
from launcher.executor import PayloadError, WorkerDied, WorkerStartError
from test_executor import OFFLINE, environ, executor

__all__ = ["environ"]  # the fixture, shared with test_executor.py


def test_initializer_from_a_project_module(environ: dict[str, str], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # The module is importable in the worker only through the project paths
    # (here the working directory), which the worker adds before loading it.
    (tmp_path / "proj_init.py").write_text("STATE = []\n\ndef setup(x):\n    STATE.append(x)\n\n"
                                           "def state():\n    return STATE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import proj_init

    with executor(None, environ, max_workers=1, cwd=tmp_path, initializer=proj_init.setup,
                  initargs=("ready",)) as ex:
        assert ex.submit(proj_init.state).result(timeout=60) == ["ready"]


def test_systemexit_while_the_driver_loads_a_result_fails_only_that_task(environ: dict[str, str]) -> None:
    with executor(None, environ, max_workers=1) as ex:
        fut = ex.submit(tasks.exit_at_unpickle)
        exc = fut.exception(timeout=60)
        assert isinstance(exc, PayloadError) and isinstance(exc, BrokenProcessPool), exc
        assert isinstance(exc.__cause__, SystemExit) and "cannot be loaded in the driver" in str(exc)
        assert ex.submit(tasks.pid).result(timeout=60) > 0  # the one slot thread goes on


SHUTDOWN_NO_WAIT = """
import sys
import launcher, executor_tasks
ex = launcher.Executor(max_workers=2, flags={"find-links": [sys.argv[1]], "offline": True})
ex.submit(executor_tasks.sleep_and_print, 1.0, "apple")
ex.shutdown(wait=False)
"""


def test_shutdown_without_wait_then_exit_lets_pending_work_finish(environ: dict[str, str],
                                                                  tmp_path: Path) -> None:
    (tmp_path / "driver.py").write_text(SHUTDOWN_NO_WAIT)
    proc = subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(WHEELHOUSE)], env=environ,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "apple\n"


def test_unpicklable_argument_is_a_pickling_error_on_the_future(environ: dict[str, str]) -> None:
    with executor(None, environ, max_workers=1) as ex:
        fut = ex.submit(tasks.pid_and, threading.Lock())  # no exception here
        exc = fut.exception(timeout=5)
        assert isinstance(exc, pickle.PicklingError) and "_thread.lock" in str(exc), exc
        assert isinstance(exc.__cause__, TypeError)
        assert ex.submit(tasks.pid).result(timeout=60) > 0


def test_map_chunksize_is_validated_and_batches(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    with executor(None, environ, max_workers=2) as ex:
        with pytest.raises(ValueError, match="chunksize"):
            ex.map(tasks.pid_and, range(3), chunksize=0)
        with pytest.raises(ValueError, match="chunksize"):
            ex.map(tasks.pid_and, range(3), chunksize=-1)
        sent: list[object] = []
        real = ex.submit_with

        def counting(fn: Any, *a: Any, **kw: Any) -> Any:
            sent.append(fn)
            return real(fn, *a, **kw)

        monkeypatch.setattr(ex, "submit_with", counting)
        got = list(ex.map(tasks.pid_and, range(25), chunksize=10))
        assert [v for _, v in got] == list(range(25))
        assert len(sent) == 3  # 10 + 10 + 5: one task per chunk
        for start in (0, 10, 20):  # a chunk runs in one worker
            assert len({pid for pid, _ in got[start:start + 10]}) == 1
        assert list(ex.map(pow, range(5), range(5), chunksize=2)) == [pow(i, i) for i in range(5)]


def test_manager_proxies_work_as_arguments(environ: dict[str, str]) -> None:
    with multiprocessing.Manager() as manager, executor(None, environ, max_workers=1) as ex:
        queue = manager.Queue()
        ex.submit(tasks.put, queue, "through the manager").result(timeout=60)
        assert queue.get(timeout=10) == "through the manager"


def test_a_dead_worker_is_a_broken_process_pool_but_the_executor_goes_on(environ: dict[str, str]) -> None:
    with executor(None, environ, max_workers=1) as ex:
        victim = ex.submit(tasks.pid).result(timeout=60)
        fut = ex.submit(os.kill, victim, 9)
        with pytest.raises(BrokenProcessPool):
            fut.result(timeout=60)
        assert isinstance(fut.exception(), WorkerDied)
        assert ex.submit(tasks.pid).result(timeout=60) != victim
    assert issubclass(WorkerStartError, BrokenProcessPool)


LEAVER = """
import sys, time
import launcher, executor_tasks
ex = launcher.Executor(max_workers=1, flags={"find-links": [sys.argv[1]], "offline": True})
print(" ".join(map(str, ex.submit(executor_tasks.leave_sleepers, sys.argv[2]).result())), flush=True)
time.sleep(120)
"""


def _survivors_of_a_sigkilled_driver(script: str, environ: dict[str, str], tmp_path: Path,
                                        groups: int | None = None) -> list[int]:
    """Run `script` as a driver that prints the pids its work left behind,
    SIGKILL it, and return those still alive 5 s later."""
    (tmp_path / "driver.py").write_text(script)
    tag = str(400 + uuid.uuid4().int % 10**6)
    driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(WHEELHOUSE), tag],
                              env=environ, stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout is not None
        pids = [int(p) for p in driver.stdout.readline().split()]
        assert len(pids) == 3 and not any(gone(p) for p in pids), pids
        if groups is not None:
            assert len({os.getpgid(p) for p in pids}) == groups
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 5
        while not all(gone(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        return [p for p in pids if not gone(p)]
    finally:
        driver.kill()
        driver.wait()
        subprocess.run(["pkill", "-KILL", "-x", "-f", f"sleep {tag}"], check=False)


def test_what_a_task_started_dies_with_a_sigkilled_driver(environ: dict[str, str], tmp_path: Path) -> None:
    """Children in their own process group, their own session, daemonised:
    none survives the driver's SIGKILL (the worker is their subreaper)."""
    # three groups, none the worker's
    assert _survivors_of_a_sigkilled_driver(LEAVER, environ, tmp_path, groups=3) == []


REPLICA_LEAVER = """
import sys, time
from launcher.replicas import LocalReplicaExecutor
ex = LocalReplicaExecutor(flags={"find-links": [sys.argv[1]], "offline": True})
(h,) = ex.launch_replicas(1, "executor_tasks.leave_sleepers_and_wait", {"tag": sys.argv[2]})
while not ex.stream_logs(h).strip():
    time.sleep(0.05)
print(ex.stream_logs(h).splitlines()[0], flush=True)
time.sleep(120)
"""


def test_what_a_replica_started_dies_with_a_sigkilled_driver(environ: dict[str, str], tmp_path: Path) -> None:
    """The replica's own group is not enough: children in another group, in
    another session or daemonised die with the driver too."""
    assert _survivors_of_a_sigkilled_driver(REPLICA_LEAVER, environ, tmp_path) == []


def test_a_let_go_worker_takes_its_tasks_children_along(environ: dict[str, str]) -> None:
    tag = str(400 + uuid.uuid4().int % 10**6)
    with executor(None, environ, max_workers=1) as ex:
        pids = ex.submit(tasks.leave_sleepers, tag).result(timeout=60)
        assert not any(gone(p) for p in pids)
    # The executor let its worker go: what its tasks left ends with it.
    deadline = time.monotonic() + 5
    while not all(gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if not gone(p)] == []


OTHER_USER = "launcher-other"


def _other_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(OTHER_USER)
    except KeyError:
        pass
    if os.getuid() != 0 or shutil.which("useradd") is None:
        missing("a second local user needs root and useradd")
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER],
                   check=True, capture_output=True)
    return pwd.getpwnam(OTHER_USER)


@pytest.mark.parametrize("area", ["spill", "replicas"])
def test_a_spill_or_replica_dir_of_another_user_is_one_clear_error(area: str, tmp_path: Path,
                                                                  environ: dict[str, str]) -> None:
    other = _other_user()
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    env = dict(environ, LAUNCHER_CACHE_DIR=str(cache))
    planted = cache / area
    planted.mkdir(mode=0o700)
    os.chown(planted, other.pw_uid, other.pw_gid)

    def start() -> None:
        if area == "spill":
            executor(None, env, max_workers=1).shutdown()
        else:
            from launcher.replicas import LocalReplicaExecutor

            LocalReplicaExecutor(flags=dict(OFFLINE), environ=env).launch_replicas(1, tasks.pid, {})

    with pytest.raises(LauncherError) as info:
        start()
    # (the cache's one trust rule says it: the path, and whose it is)
    assert str(planted) in str(info.value) and f"owned by {OTHER_USER}" in str(info.value)
    assert os.lstat(planted).st_uid == other.pw_uid  # left as it was
    # Not a directory at all: the same kind of error, naming it.
    os.rmdir(planted)
    planted.write_text("")
    with pytest.raises(LauncherError, match=f"{planted} is not a directory"):
        start()


def test_the_worker_does_not_import_multiprocessing_up_front(environ: dict[str, str]) -> None:
    with executor(None, environ, max_workers=1) as ex:
        assert ex.submit(tasks.multiprocessing_loaded).result(timeout=60) is False
