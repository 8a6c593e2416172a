"""`launcher.replicas`: N ranks of an entrypoint on a real CPython 3.13,
started the launcher way, each in its own process group with its own log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import executor_tasks as tasks
from conftest import WHEELHOUSE, base_env, gone
from launcher.replicas import LocalReplicaExecutor, ReplicaHandle, ServerlessExecutor

TESTS = Path(__file__).resolve().parent
OFFLINE = {"find-links": [str(WHEELHOUSE)], "offline": True}


@pytest.fixture(scope="module")
def replicas(py313: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalReplicaExecutor]:
    env = base_env(tmp_path_factory.mktemp("replica-cache"))
    env["PYTHONPATH"] = str(TESTS)
    with LocalReplicaExecutor(py313, flags=OFFLINE, environ=env, grace=1.0) as ex:
        yield ex


def test_three_ranks_with_one_failing(replicas: LocalReplicaExecutor) -> None:
    assert isinstance(replicas, ServerlessExecutor)
    handles = replicas.launch_replicas(3, "executor_tasks.rank_work", {"scale": 10})
    assert [h.rank for h in handles] == [0, 1, 2]
    assert {h.backend_name for h in handles} == {replicas.backend_name} == {"local_process"}
    assert {replicas.poll(h) for h in handles} <= {"pending", "running", "succeeded", "failed"}
    out = replicas.collect(handles, timeout=120)
    assert [r["rank"] for r in out] == [0, 1, 2]
    assert [r["status"] for r in out] == ["succeeded", "failed", "succeeded"]
    assert [r["exit_code"] for r in out] == [0, 1, 0]
    assert out[0]["result"] == 0 and out[2]["result"] == 20 and out[1]["result"] is None
    assert out[0]["error"] is None and out[1]["error"] == "ValueError: rank 1 refuses"
    assert "executor_tasks.py" in out[1]["traceback"]
    assert [replicas.poll(h) for h in handles] == ["succeeded", "failed", "succeeded"]
    for h in handles:
        text = replicas.stream_logs(h)
        assert isinstance(text, str)
        assert text.splitlines()[0] == f"rank {h.rank} of 3 on 3.13", text
    assert replicas.stream_logs(handles[1]).splitlines()[-1] == "ValueError: rank 1 refuses"
    assert replicas.stream_logs(handles[1], n_lines=1) == "ValueError: rank 1 refuses"
    assert replicas.stream_logs(handles[0], n_lines=0) == ""
    # Best effort and silent on a finished replica.
    replicas.cancel(handles[0])
    assert replicas.poll(handles[0]) == "succeeded"


def test_the_seeds_protocol_to_the_letter(replicas: LocalReplicaExecutor,
                                          capfd: pytest.CaptureFixture[str]) -> None:
    """entrypoint_args are keyword arguments; their `rank_env` names the rank
    variable and is not passed on; gpu= is one warning line, then ignored."""
    assert LocalReplicaExecutor.supports_inter_replica_network is True
    assert ReplicaHandle(0, "x").metadata == {}
    handles = replicas.launch_replicas(2, "executor_tasks.rank_seen", {"a": 1, "rank_env": "MY_RANK"},
                                       gpu="A100")
    err = capfd.readouterr().err
    assert err == ("launcher: LocalReplicaExecutor ignores gpu='A100': local replicas share whatever "
                   "GPUs this machine shows them\n")
    out = replicas.collect(handles, timeout=120)
    assert [r["result"] for r in out] == [
        {"kwargs": {"a": 1}, "REPLICA_RANK": None, "MY_RANK": str(rank)} for rank in (0, 1)]
    (h,) = replicas.launch_replicas(1, "executor_tasks.rank_seen", {})
    assert replicas.collect([h], timeout=120)[0]["result"]["REPLICA_RANK"] == "0"


@pytest.mark.parametrize("args", [(10,), [10], "x", None])
def test_positional_entrypoint_args_are_refused(replicas: LocalReplicaExecutor, args: object) -> None:
    """A sequence used to be iterated into positional arguments (a dict into its keys)."""
    with pytest.raises(TypeError, match=r"entrypoint_args must be a Mapping .* not (tuple|list|str|NoneType)"):
        replicas.launch_replicas(1, "executor_tasks.rank_work", args)  # type: ignore[arg-type]


def test_callable_entrypoint(replicas: LocalReplicaExecutor) -> None:
    """A function of an importable module travels by name to the 3.13 ranks."""
    (h,) = replicas.launch_replicas(1, tasks.rank_work, {"scale": 5})
    (out,) = replicas.collect([h], timeout=120)
    assert out["status"] == "succeeded" and out["result"] == 0
    # A large result comes back through a private file, not a pipe.
    (h,) = replicas.launch_replicas(1, "executor_tasks.big", {"size": 64 << 20})
    (out,) = replicas.collect([h], timeout=120)
    assert out["status"] == "succeeded" and len(out["result"]) == 64 << 20
    assert not Path(out["log"]).with_suffix(".result").exists()


def test_cancel_ends_the_replica_and_its_children(replicas: LocalReplicaExecutor) -> None:
    (h,) = replicas.launch_replicas(1, "executor_tasks.parent_of_sleeper", {})
    deadline = time.monotonic() + 60
    while not replicas.stream_logs(h) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert replicas.poll(h) == "running"
    child = int(replicas.stream_logs(h).split()[1])
    leader = psutil.Process(child).ppid()
    assert psutil.Process(leader).ppid() == psutil.Process().pid
    replicas.cancel(h)
    assert replicas.poll(h) == "cancelled"
    (out,) = replicas.collect([h], timeout=10)
    assert out["status"] == "cancelled" and out["pid"] == leader
    # SIGKILL went to the whole group: the child dies too (a zombie until init reaps it).
    deadline = time.monotonic() + 2
    while not all(gone(p) for p in (leader, child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(leader) and gone(child)


def test_a_replica_that_returns_leaves_nothing_running(replicas: LocalReplicaExecutor) -> None:
    """What a rank started and left behind ends with it: its whole group is
    killed once the rank has exited, as after a cancel."""
    (h,) = replicas.launch_replicas(1, "executor_tasks.leave_a_sleeper", {})
    (out,) = replicas.collect([h], timeout=120)
    assert out["status"] == "succeeded", out
    sleeper = out["result"]
    deadline = time.monotonic() + 5
    while not gone(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(sleeper)


def test_exit_without_a_result_is_a_failure_that_says_so(replicas: LocalReplicaExecutor) -> None:
    """An entrypoint that ends its process itself returns nothing: a failure
    with one plain reason, not a missing-file error of ours."""
    handles = (replicas.launch_replicas(2, "executor_tasks.hard_exit", {"code": 0})
               + replicas.launch_replicas(1, "executor_tasks.kill_self", {"sig": 40}))
    out = replicas.collect(handles, timeout=60)
    assert [(r["status"], r["exit_code"], r["error"], r["result"]) for r in out] == [
        ("failed", 0, "exited with code 0 before returning", None)] * 2 + [
        ("failed", -40, "killed by signal 40", None)]


def test_timeout_fails_the_replica(replicas: LocalReplicaExecutor) -> None:
    (h,) = replicas.launch_replicas(1, "executor_tasks.parent_of_sleeper", {}, timeout=1)
    (out,) = replicas.collect([h], timeout=60)
    assert out["status"] == "failed"
    assert out["error"] == "timed out after 1s"


REPLICA_DRIVER = """\
import sys, time
from launcher.replicas import LocalReplicaExecutor

ex = LocalReplicaExecutor(sys.argv[1], flags={"find-links": [sys.argv[2]], "offline": True})
(h,) = ex.launch_replicas(1, "helpers.announce_and_sleep", {})
while not ex.stream_logs(h):
    time.sleep(0.05)
print(ex.stream_logs(h).splitlines()[0], flush=True)
time.sleep(120)
"""


def test_sigkill_of_the_driver_ends_its_replicas_and_their_children(py313: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "driver.py").write_text(REPLICA_DRIVER)
    (tmp_path / "helpers.py").write_text(
        "import os, subprocess, sys, time\n\n"
        "def announce_and_sleep():\n"
        "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "    print(os.getpid(), child.pid)\n"
        "    time.sleep(120)\n")
    env = base_env(tmp_path / "cache")
    driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), py313, str(WHEELHOUSE)],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout is not None
        replica, child = map(int, driver.stdout.readline().split())
        assert psutil.Process(replica).ppid() == driver.pid
        assert os.getpgid(replica) == replica == os.getpgid(child)  # its own process group
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 2
        while not (gone(replica) and gone(child)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(replica) and gone(child)
    finally:
        driver.kill()
        driver.wait()


PROJECT_DRIVER = """\
import sys
from launcher.replicas import LocalReplicaExecutor
from proj import work  # a module of the driver's project, beside this script

flags = {"find-links": [sys.argv[2]], "offline": True}
with LocalReplicaExecutor(sys.argv[1], flags=flags) as ex:
    out = ex.collect(ex.launch_replicas(2, work, {"x": 5}), timeout=120)
print([(r["status"], r["result"], r["error"]) for r in out])
"""


def test_a_callable_of_the_drivers_project_is_an_entrypoint(py313: str, tmp_path: Path) -> None:
    """The entry is pickled by reference to `proj.work`: the replica must put
    the project's paths on sys.path before it unpickles it."""
    import subprocess
    import sys

    app = tmp_path / "app"
    app.mkdir()
    (app / "driver.py").write_text(PROJECT_DRIVER)
    (app / "proj.py").write_text("import os\n\ndef work(x):\n    return x * int(os.environ['REPLICA_RANK'])\n")
    env = base_env(tmp_path / "cache")
    proc = subprocess.run([sys.executable, str(app / "driver.py"), py313, str(WHEELHOUSE)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[('succeeded', 0, None), ('succeeded', 5, None)]", proc.stdout
