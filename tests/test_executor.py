"""`launcher.Executor`: real workers on real interpreters (3.11, 3.13,
free-threaded 3.13t), started the launcher way, with runtime trees built
offline from the wheelhouse (which holds cloudpickle)."""

from __future__ import annotations

import os
import pickle
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import executor_tasks as tasks
import launcher
from conftest import UNREACHABLE, WHEELHOUSE, base_env, foreign_python, gone
from launcher.executor import (
    BytecodeNotPortable,
    RemoteTraceback,
    TaskTimeout,
    WorkerDied,
    WorkerStartError,
    _protocol,
)

TESTS = Path(__file__).resolve().parent
OFFLINE = {"find-links": [str(WHEELHOUSE)], "offline": True}


@pytest.fixture(scope="module")
def environ(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One cache for the module (trees are built once per ABI); this directory
    on PYTHONPATH, as a user's project would be."""
    env = base_env(tmp_path_factory.mktemp("executor-cache"))
    env["PYTHONPATH"] = str(TESTS)
    return env


def executor(python: str | None, environ: dict[str, str], **kw: object) -> launcher.Executor:
    flags = dict(OFFLINE, **kw.pop("flags", {}))  # type: ignore[arg-type]
    return launcher.Executor(python, flags=flags, environ=environ, **kw)  # type: ignore[arg-type]


def test_free_threaded_workers_use_their_own_markupsafe(py313t: str, environ: dict[str, str]) -> None:
    with executor(py313t, environ, max_workers=2, flags={"with": ["markupsafe"]}) as ex:
        futures = [ex.submit(tasks.markupsafe_where, f"<{i}>") for i in range(4)]
        results = [f.result(timeout=120) for f in futures]
    for i, (fut, got) in enumerate(zip(futures, results, strict=True)):
        assert got["escaped"] == f"&lt;{i}&gt;"
        assert got["speedups"].endswith(".cpython-313t-x86_64-linux-gnu.so"), got
        assert got["gil"] is False  # really the free-threaded build, not a 3.13 with the GIL
        # Who ran it: the worker's own report.
        who = fut.worker
        assert who is not None and who.pid == got["pid"]
        assert who.abi_key is not None and who.abi_key.startswith("cp313t-x86_64-linux-gnu")
        assert who.tree is not None and got["speedups"].startswith(who.tree + "/")
        assert Path(who.tree).parent == Path(environ["LAUNCHER_CACHE_DIR"]) / "trees"
        assert who.executable == py313t and who.version.startswith("3.13")


def test_same_version_lambda_and_main_function(environ: dict[str, str]) -> None:
    with executor(None, environ, max_workers=1) as ex:
        assert ex.submit(lambda x: x + 1, 41).result(timeout=60) == 42
        assert list(ex.map(lambda x: x * x, range(5))) == [0, 1, 4, 9, 16]
        who = ex.submit(tasks.pid).result(timeout=60)
        assert who != os.getpid()


def test_lambda_to_another_version_fails_at_submit(py313: str, environ: dict[str, str]) -> None:
    with executor(py313, environ, max_workers=1) as ex:
        with pytest.raises(BytecodeNotPortable) as info:
            ex.submit(lambda: 1)
        msg = str(info.value)
        assert "<lambda>" in msg and "test_executor.py" in msg
        assert "Move it into a module" in msg and "3.13" in msg
        # A lambda hidden in the arguments is caught as well; nothing was sent.
        with pytest.raises(BytecodeNotPortable):
            ex.submit(tasks.boom, lambda: 2)
        assert ex.workers == []
        # Functions of importable modules go by name and work across versions.
        assert ex.submit(tasks.state).result(timeout=60)["pid"] != os.getpid()
        # ... if the worker can import them: click is the driver's, not the worker's.
        import click

        with pytest.raises(ModuleNotFoundError, match="'click' in the worker .*flags=") as err:
            ex.submit(click.echo, "hi").result(timeout=60)
        assert err.value.name == "click"


def test_exception_keeps_type_message_and_worker_traceback(py313: str, environ: dict[str, str]) -> None:
    with executor(py313, environ, max_workers=1) as ex:
        fut = ex.submit(tasks.boom, "bad input 7")
        with pytest.raises(ValueError, match="^bad input 7$") as info:
            fut.result(timeout=60)
        cause = info.value.__cause__
        assert isinstance(cause, RemoteTraceback)
        assert "executor_tasks.py" in cause.tb and "in boom" in cause.tb
        assert "ValueError: bad input 7" in cause.tb
        with pytest.raises(pickle.PicklingError, match=r"result of type _thread\.lock cannot be pickled"):
            ex.submit(tasks.unpicklable).result(timeout=60)
        # The worker survived both.
        assert ex.submit(tasks.pid).result(timeout=60) > 0


def test_large_result_is_spilled_privately_and_removed(py313: str, environ: dict[str, str]) -> None:
    size = 100 * 1024 * 1024
    with executor(py313, environ, max_workers=1) as ex:
        spill = ex.spill_dir
        st = os.lstat(spill)
        assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()
        assert stat.S_IMODE(os.lstat(spill.parent).st_mode) == 0o700
        data = ex.submit(tasks.big, size).result(timeout=120)
        assert len(data) == size and data[:1] == data[-1:] == b"\x01" and data.count(b"\x01") == size
        del data
        assert list(spill.iterdir()) == []  # removed on success
        with pytest.raises(pickle.PicklingError, match="cannot be pickled"):
            ex.submit(tasks.half_spilled, 8 * 1024 * 1024).result(timeout=120)
        assert list(spill.iterdir()) == []  # and on failure, after part of it was written
        # A planted symlink where the next result goes is never followed.
        victim = spill.parent.parent / "victim"
        victim.write_bytes(b"untouched")
        task_id = 3  # tasks are numbered from 1 in submission order
        (spill / f"{task_id}.result").symlink_to(victim)
        with pytest.raises(FileExistsError):
            ex.submit(tasks.big, 4 * 1024 * 1024).result(timeout=120)
        assert victim.read_bytes() == b"untouched"
    assert not spill.exists()  # the executor's directory goes with it


def test_spill_file_is_private(tmp_path: Path) -> None:
    import errno

    _protocol.write_private(str(tmp_path / "r"), b"pickled")
    assert stat.S_IMODE(os.stat(tmp_path / "r").st_mode) == 0o600
    (tmp_path / "link").symlink_to(tmp_path / "r")
    # Readable through the link (it has content), so only O_NOFOLLOW refuses it.
    with pytest.raises(OSError) as err:
        _protocol.load_spill(str(tmp_path / "link"), lambda f: f.read())
    assert err.value.errno == errno.ELOOP
    for existing in ("r", "link"):  # never written through, never truncated
        with pytest.raises(FileExistsError):
            _protocol.write_private(str(tmp_path / existing), b"other")
    assert (tmp_path / "r").read_bytes() == b"pickled"
    assert _protocol.load_spill(str(tmp_path / "r"), lambda f: f.read()) == b"pickled"


def test_killed_worker_fails_its_task_and_is_replaced(py313: str, environ: dict[str, str],
                                                     tmp_path: Path) -> None:
    marker = tmp_path / "started"
    with executor(py313, environ, max_workers=1) as ex:
        fut = ex.submit(tasks.mark_and_sleep, str(marker), 60)
        deadline = time.monotonic() + 60
        # Created, then written: wait for the whole line.
        while not (marker.exists() and marker.read_text().endswith("\n")) and time.monotonic() < deadline:
            time.sleep(0.05)
        victim = int(marker.read_text())
        assert fut.worker is not None and fut.worker.pid == victim
        os.kill(victim, signal.SIGKILL)
        exc = fut.exception(timeout=30)
        assert isinstance(exc, WorkerDied), exc
        assert "SIGKILL" in str(exc) and "mark_and_sleep" in str(exc) and "not retried" in str(exc)
        after = ex.submit(tasks.pid).result(timeout=60)
        assert after != victim
        assert marker.read_text().count("\n") == 1  # not retried
        # A worker that dies while idle costs no task: the next one goes to its replacement.
        os.kill(after, signal.SIGKILL)
        while not gone(after):
            time.sleep(0.02)
        fresh = ex.submit(tasks.pid)
        assert fresh.result(timeout=60) not in (victim, after)


def test_timeout_stops_that_task_without_retry(py313: str, environ: dict[str, str], tmp_path: Path) -> None:
    marker = tmp_path / "runs"
    with executor(py313, environ, max_workers=1) as ex:
        started = time.monotonic()
        fut = ex.submit_with(tasks.mark_and_sleep, (str(marker), 60), timeout=2)
        with pytest.raises(TaskTimeout, match="timeout of 2s"):
            fut.result(timeout=60)
        assert time.monotonic() - started < 30
        first = int(marker.read_text())
        assert gone(first)
        assert ex.submit(tasks.pid).result(timeout=60) != first
        assert marker.read_text().count("\n") == 1
        # Stopped while its result was half-way into a spill file: the file goes too.
        fut = ex.submit_with(tasks.half_written, (8 * 1024 * 1024,), timeout=3)
        deadline = time.monotonic() + 30
        while not list(ex.spill_dir.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [p.name for p in ex.spill_dir.iterdir()] == ["3.result"]  # tasks are numbered from 1
        with pytest.raises(TaskTimeout):
            fut.result(timeout=60)
        assert list(ex.spill_dir.iterdir()) == []


def test_scrub_keeps_only_the_allow_list(environ: dict[str, str]) -> None:
    secrets = {"AWS_SECRET_ACCESS_KEY": "s1", "GITHUB_TOKEN": "s2", "OPENAI_API_KEY": "s3",
               "DB_PASSWORD": "s4", "PYTHON_KEYRING_TOKEN": "s5", "RANDOM_SETTING": "x"}
    env = dict(environ, **secrets, KEEP_ME="1", MYAPP_MODE="fast", LC_ALL="C.UTF-8")
    with executor(None, env, max_workers=1, env_policy="scrub", env_allow=["KEEP_ME", "MYAPP_*"]) as ex:
        got = ex.submit(tasks.environment).result(timeout=60)
    for key in secrets:
        assert key not in got, key
    assert got["KEEP_ME"] == "1" and got["MYAPP_MODE"] == "fast" and got["LC_ALL"] == "C.UTF-8"
    assert got["PATH"] == env["PATH"] and got["HOME"] == env["HOME"]
    assert got["LAUNCHER_CACHE_DIR"] == env["LAUNCHER_CACHE_DIR"]
    assert got["PYTHONPATH"].split(os.pathsep)[1:] == [str(TESTS)]
    # The default policy inherits (what a plain pool would do).
    with executor(None, env, max_workers=1) as ex:
        assert ex.submit(tasks.environment).result(timeout=60)["GITHUB_TOKEN"] == "s2"
    with pytest.raises(ValueError, match="env_policy"):
        executor(None, env, env_policy="clean")


def test_cwd_and_sys_path_do_not_leak_between_tasks(py313: str, environ: dict[str, str],
                                                    tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    with executor(py313, environ, max_workers=1, cwd=project) as ex:
        before = ex.submit(tasks.state).result(timeout=60)
        assert ex.submit(tasks.wander, "/tmp").result(timeout=60) == "/tmp"
        after = ex.submit(tasks.state).result(timeout=60)
    assert after == before
    assert before["cwd"] == str(project)
    path = before["path"]
    assert str(project) in path and str(TESTS) in path
    # The 3.13 worker has its own stdlib, never the 3.11 driver's nor its site-packages.
    driver = [p for p in sys.path if p and ("site-packages" in p or "python3.11" in p)]
    assert driver and not set(driver) & set(path), driver
    assert any("python3.13" in p for p in path)


def test_workers_have_default_signal_dispositions(environ: dict[str, str]) -> None:
    # A driver that ignores SIGINT and blocks SIGUSR1 (as daemons and loky do).
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    try:
        ex = executor(None, environ, max_workers=1)
        got = ex.submit(tasks.signals).result(timeout=60)
    finally:
        signal.signal(signal.SIGINT, old)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR1])
    try:
        assert got == {"int": True, "term": True, "hup": True, "blocked": []}
        with pytest.raises(KeyboardInterrupt):  # SIGINT is KeyboardInterrupt in the task
            ex.submit(tasks.interrupt_me).result(timeout=60)
        assert ex.submit(tasks.signals).result(timeout=60) == got  # the worker lives on
    finally:
        ex.shutdown()


DRIVER = """\
import os, sys, time
import launcher
from helpers import nap

flags = {"find-links": [sys.argv[2]], "offline": True}
ex = launcher.Executor(sys.argv[1] if sys.argv[1] != "-" else None, max_workers=2, flags=flags)
busy = ex.submit(nap, 120)
idle = ex.submit(nap, 0)  # workers start as tasks need them: a second one for this
while len(ex.workers) < 2:
    time.sleep(0.05)
print(" ".join(str(w.pid) for w in ex.workers), flush=True)
time.sleep(120)
"""


def test_sigkill_of_the_driver_leaves_no_worker(py313: str, environ: dict[str, str], tmp_path: Path) -> None:
    """One busy and one idle worker; the driver is a script, its helper module
    sits next to it (the script's directory is importable in the 3.13 worker)."""
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "helpers.py").write_text("import time\n\ndef nap(s):\n    time.sleep(s)\n")
    env = dict(environ)
    env.pop("PYTHONPATH")
    work = tmp_path / "elsewhere"
    work.mkdir()
    driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), py313, str(WHEELHOUSE)],
                              env=env, cwd=work, stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout is not None
        pids = [int(p) for p in driver.stdout.readline().split()]
        assert len(pids) == 2 and all(not gone(p) for p in pids), pids
        assert all(psutil.Process(p).ppid() == driver.pid for p in pids)
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 2
        while not all(gone(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for p in pids if not gone(p)] == []
        # What the killed driver left in the cache goes with the next executor.
        spill = Path(environ["LAUNCHER_CACHE_DIR"]) / "spill"
        assert [d.name for d in spill.iterdir() if d.name.startswith(f"{driver.pid}-")]
        with executor(None, environ, max_workers=1) as ex:
            assert not [d for d in spill.iterdir() if d.name.startswith(f"{driver.pid}-")]
            assert ex.spill_dir.parent == spill
    finally:
        driver.kill()
        driver.wait()


def test_pypy_workers_and_an_initializer(environ: dict[str, str]) -> None:
    pypy = foreign_python("pypy")
    with executor(pypy, environ, max_workers=2, initializer=tasks.remember, initargs=("set",)) as ex:
        futures = [ex.submit(tasks.remembered) for _ in range(4)]
        assert [f.result(timeout=120) for f in futures] == [["set"]] * 4
        who = futures[0].worker
        assert who is not None and who.implementation == "pypy"
        assert who.abi_key is not None and who.abi_key.startswith("pypy3")
        with pytest.raises(ValueError, match="from pypy"):
            ex.submit(tasks.boom, "from pypy").result(timeout=60)


def test_failing_initializer_breaks_the_executor_clearly(environ: dict[str, str]) -> None:
    with executor(None, environ, max_workers=1, initializer=tasks.boom, initargs=("no init",)) as ex:
        fut = ex.submit(tasks.pid)
        with pytest.raises(WorkerStartError, match="initializer failed(.|\n)*ValueError: no init"):
            fut.result(timeout=60)
        with pytest.raises(WorkerStartError):
            ex.submit(tasks.pid)


def test_workers_get_the_preloads(py313t: str, jemalloc: str, environ: dict[str, str]) -> None:
    with executor(py313t, environ, max_workers=1, flags={"preload": ["jemalloc"]}) as ex:
        got = ex.submit(tasks.preloads).result(timeout=120)
    # Mapped in the worker, while the task sees the caller's LD_PRELOAD (none) for its children.
    assert got == {"jemalloc": True, "LD_PRELOAD": environ.get("LD_PRELOAD")}


QUIET = """\
import sys
import launcher
from launcher.replicas import LocalReplicaExecutor
from helpers import nap

flags = {"find-links": [sys.argv[2]], "offline": True}
with launcher.Executor(sys.argv[1], max_workers=2, flags=flags) as ex:
    print(sum(ex.map(nap, [0, 0, 0])), len(ex.submit(bytes, 3 << 20).result()))
with LocalReplicaExecutor(sys.argv[1], flags=flags) as rep:
    print([r["status"] for r in rep.collect(rep.launch_replicas(2, "helpers.nap", {"s": 0}))])
"""


@pytest.mark.parametrize("strict", [False, True])
def test_quiet_under_user_settings(strict: bool, py313: str, environ: dict[str, str], tmp_path: Path) -> None:
    """Nothing on stderr, with or without -X dev -W error, PYTHONDONTWRITEBYTECODE,
    PYTHONUNBUFFERED and PYTHONWARNINGS=error (which the workers inherit)."""
    (tmp_path / "driver.py").write_text(QUIET)
    (tmp_path / "helpers.py").write_text("def nap(s):\n    return s\n")
    env = dict(environ)
    env.pop("PYTHONPATH")
    flags: list[str] = []
    if strict:
        flags = ["-X", "dev", "-W", "error"]
        env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1", PYTHONWARNINGS="error")
    proc = subprocess.run([sys.executable, *flags, str(tmp_path / "driver.py"), py313, str(WHEELHOUSE)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert proc.stdout.splitlines() == ["0 3145728", "['succeeded', 'succeeded']"]


def test_worker_side_is_stdlib_and_cloudpickle_only() -> None:
    """_worker.py and _protocol.py run inside foreign interpreters (3.8+, PyPy)
    where the launcher is not importable: stdlib + cloudpickle, 3.8 syntax."""
    import ast

    from launcher.executor import _start

    for path in (_start.WORKER_SCRIPT, Path(_protocol.__file__)):
        tree = ast.parse(path.read_text(), feature_version=(3, 8))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and n.module and not n.level}
        assert names <= set(sys.stdlib_module_names) | {"cloudpickle"}, (path.name, names)


def test_interpreter_by_name_on_path_or_a_clear_error(py313: str, environ: dict[str, str]) -> None:
    env = dict(environ, PATH=f"{Path(py313).parent}{os.pathsep}{environ['PATH']}")
    with executor(Path(py313).name, env, max_workers=1) as ex:
        assert ex.submit(tasks.state).result(timeout=60)["pid"] > 0
        assert ex.workers[0].executable == py313
    from launcher.errors import CommandNotFound, UsageError

    with pytest.raises(UsageError, match="/bin/true is not a Python interpreter"):
        executor("/bin/true", environ)
    with pytest.raises(CommandNotFound, match="command not found: no-such-python"):
        executor("no-such-python", env)


def test_worker_without_cloudpickle_is_a_clear_error(py313: str, tmp_path: Path) -> None:
    """An index nothing answers at: the runtime (cloudpickle) cannot be built."""
    env = base_env(tmp_path / "cache")
    with launcher.Executor(py313, flags={"index-url": UNREACHABLE}, environ=env) as ex:
        assert ex.prepared.warnings and "could not build the runtime" in ex.prepared.warnings[0]
        fut = ex.submit(tasks.pid)
        with pytest.raises(WorkerStartError, match="cannot import cloudpickle.*launcher doctor"):
            fut.result(timeout=120)
        with pytest.raises(WorkerStartError):
            ex.submit(tasks.pid)
