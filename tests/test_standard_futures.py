"""CPython's own concurrent.futures tests, run against `launcher.Executor`
(tests/standard/: the ProcessPool mixins with the constructor adapted).

The suite is Debian's libpython3.11-testsuite, for the system python3.11,
which therefore runs it (in a subprocess); the launcher comes from our
venv's site-packages.  Deselected tests (they read ProcessPoolExecutor's
internals) are listed with their reasons and count; every test that still
fails is one of the known few, each named in docs/api.md."""

from __future__ import annotations

import json
import subprocess
import sysconfig
from pathlib import Path

import pytest

from conftest import WHEELHOUSE, base_env, missing

TESTS = Path(__file__).resolve().parent
SYSTEM_PYTHON = Path("/usr/bin/python3.11")
SUITE = Path("/usr/lib/python3.11/test/test_concurrent_futures.py")
# The six gaps of issue 19 (and the standard's view of WorkerDied), as the standard tests them.
MUST_PASS = (
    "LauncherInitializerTest.test_initializer",
    "LauncherExecutorDeadlockTest.test_exit_during_result_unpickle_in_result_handler",
    "LauncherExecutorDeadlockTest.test_error_during_result_unpickle_in_result_handler",
    "LauncherExecutorDeadlockTest.test_error_at_task_pickle",
    "LauncherExecutorDeadlockTest.test_error_during_result_pickle_on_worker",
    "LauncherExecutorDeadlockTest.test_crash_during_func_exec_on_worker",
    "LauncherExecutorTest.test_map_chunksize",
    "LauncherExecutorTest.test_ressources_gced_in_workers",
    "LauncherShutdownTest.test_hang_issue12364",
)


def test_the_standards_process_pool_tests_pass_on_launcher_executor(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    if not SUITE.is_file() or not SYSTEM_PYTHON.is_file():
        missing(f"{SUITE} (apt-get install libpython3.11-testsuite python3.11)")
    env = base_env(tmp_path / "cache")
    env.update(LAUNCHER_FIND_LINKS=str(WHEELHOUSE), LAUNCHER_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([str(SYSTEM_PYTHON), str(TESTS / "standard" / "run.py"), sysconfig.get_paths()["purelib"]],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr[-5000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    with capsys.disabled():  # the deselections, said every run, with their count
        print(f"\nstandard concurrent.futures suite: ran {got['ran']}, deselected {len(got['deselected'])}, "
              f"failed {len(got['failed'])} (known: {', '.join(got['failed']) or 'none'})")
        for line in proc.stderr.splitlines():
            if line.startswith(("deselected ", "  Launcher")):
                print(line)
    context = proc.stderr[-8000:]
    assert got["skipped"] == [] and got["unknown_deselections"] == [], got
    assert got["ran"] >= 40, got
    assert set(got["failed"]) <= set(got["known_failures"]), context
    assert set(MUST_PASS) <= set(got["names"]) and not set(MUST_PASS) & set(got["failed"]), context
    assert len(got["known_failures"]) <= 6
    api = (TESTS.parent / "docs" / "api.md").read_text()
    for name in got["known_failures"]:
        assert f"`{name}`" in api, f"docs/api.md does not name {name}"
