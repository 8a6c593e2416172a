"""`launcher run --supervise`: the launcher stays as a small parent (a child
subreaper), forwards signals, exits with the command's status and ends
everything the command left behind, daemonised processes included."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from conftest import LAUNCHER, launcher
from launcher.supervise import parse_duration


def _tagged(tag: str) -> list[psutil.Process]:
    """Live processes whose command line carries `tag` (zombies are ended)."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and tag in " ".join(p.info["cmdline"] or ()):
                out.append(p)
        except psutil.Error:
            continue
    return out


@pytest.fixture
def tag() -> Iterator[str]:
    """A unique number for `sleep`, so this test finds its own processes only."""
    value = str(300 + uuid.uuid4().int % 10**6)
    yield value
    for p in _tagged(value):
        p.kill()


def test_what_the_command_left_behind_is_ended_and_its_status_kept(env: dict[str, str], tag: str) -> None:
    # A background sleep and one daemonised with setsid: both outlive sh.
    script = f"sleep {tag}1 & (setsid sleep {tag}2 &); exit 3"
    start = time.monotonic()
    proc = launcher("run", "--supervise", "--", "sh", "-c", script, env=env)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr == "launcher: ended 2 processes the command left behind\n"
    deadline = start + 1 + (time.monotonic() - start)  # within 1 s of the launcher's own exit
    while _tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _tagged(tag) == []


def test_timeout_ends_the_command_and_its_child(env: dict[str, str], py311: str, tag: str) -> None:
    code = f"import subprocess, time; subprocess.Popen(['sleep', '{tag}']); time.sleep(120)"
    start = time.monotonic()
    proc = launcher("run", "--timeout", "2s", "--kill-after", "1s", "--", py311, "-c", code, env=env)
    took = time.monotonic() - start
    assert proc.returncode == 124, proc.stderr
    assert 2 <= took < 15
    assert proc.stderr == "launcher: the command ran past its timeout of 2s; ended 2 processes\n"
    assert _tagged(tag) == []


def test_sigkill_after_kill_after_for_what_ignores_sigterm(env: dict[str, str], py311: str,
                                                            tag: str) -> None:
    stubborn = (f"import signal, subprocess, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                f"subprocess.Popen(['sleep', '{tag}'], start_new_session=True)")
    start = time.monotonic()
    proc = launcher("run", "--supervise", "--kill-after", "0.5s", "--", "sh", "-c",
                    f"{py311} -c \"{stubborn}; import time; time.sleep(60)\" & sleep 0.5; exit 0", env=env)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 10
    assert "ended 2 processes" in proc.stderr
    assert _tagged(tag) == []


def test_nothing_left_says_nothing_and_a_signal_is_128_plus_n(env: dict[str, str]) -> None:
    proc = launcher("run", "--supervise", "--", "sh", "-c", "kill -TERM $$", env=env)
    assert (proc.returncode, proc.stderr) == (128 + signal.SIGTERM, "")
    proc = launcher("run", "--supervise", "--", "true", env=env)
    assert (proc.returncode, proc.stderr) == (0, "")
    proc = launcher("run", "--supervise", "--", "no-such-command-here", env=env)
    assert proc.returncode == 127 and "command not found" in proc.stderr


def test_signals_sent_to_the_launcher_reach_the_command(env: dict[str, str], py311: str) -> None:
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGUSR1, lambda *a: print('usr1', flush=True))\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(9))\n"
            "print('up', flush=True)\n"
            "while True: time.sleep(0.1)\n")
    child = subprocess.Popen([str(LAUNCHER), "run", "--supervise", "--", py311, "-c", code], env=env,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "up\n"
    assert psutil.Process(child.pid).children()  # a real parent: not exec'd
    child.send_signal(signal.SIGUSR1)
    assert child.stdout.readline() == "usr1\n"
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 9


def test_config_and_environment_turn_it_on_warm_path_included(env: dict[str, str], tmp_path: Path,
                                                             tag: str) -> None:
    (tmp_path / "launcher.toml").write_text("supervise = true\n")
    script = f"(setsid sleep {tag} >/dev/null 2>&1 &); exit 0"  # not holding our pipes
    for _ in range(2):  # cold, then the warm path's memo
        proc = launcher("run", "-v", "--", "sh", "-c", script, env=env, cwd=tmp_path)
        assert proc.returncode == 0 and "ended 1 process the command left behind" in proc.stderr
        assert _tagged(tag) == []
    assert "warm start" in proc.stderr
    (tmp_path / "launcher.toml").write_text("supervise = false\n")
    proc = launcher("run", "--", "sh", "-c", script, env=env, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    assert len(_tagged(tag)) == 1  # exec'd: nothing supervised it
    for p in _tagged(tag):
        p.kill()
    proc = launcher("run", "--", "sh", "-c", script, env=dict(env, LAUNCHER_SUPERVISE="1"), cwd=tmp_path)
    assert "ended 1 process" in proc.stderr and _tagged(tag) == []


def test_durations() -> None:
    assert parse_duration("2s") == 2 and parse_duration("1.5m") == 90 and parse_duration("500ms") == 0.5
    assert parse_duration("10") == 10 and parse_duration("1h") == 3600
    for bad in ("", "x", "-1s", "1x", "nan", "inf"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_bad_duration_is_a_usage_error(env: dict[str, str]) -> None:
    proc = launcher("run", "--timeout", "soon", "--", "true", env=env)
    assert proc.returncode == 2 and "'soon' is not a duration" in proc.stderr


def test_the_supervisor_imports_nothing_heavy() -> None:
    code = ("import sys; from launcher import supervise; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('launcher', 'click', 'pydantic', 'subprocess', 'ctypes', 'psutil')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['launcher', 'launcher._proctree', 'launcher.execute', 'launcher.supervise']"
