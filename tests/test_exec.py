"""`launcher run` execs: exit codes, signals and stdio are the command's own;
bad input is one clear line and a non-zero exit before anything runs."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import LAUNCHER, launcher, offline_with


def test_exit_code_passes_through(env: dict[str, str], py311: str) -> None:
    proc = launcher("run", "--", py311, "-c", "raise SystemExit(7)", env=env)
    assert proc.returncode == 7
    assert proc.stderr == ""


def test_killed_by_sigterm_is_seen_as_such(env: dict[str, str], py311: str) -> None:
    proc = launcher("run", "--", py311, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
                    env=env)
    assert proc.returncode == -signal.SIGTERM


def test_sigterm_to_launcher_pid_reaches_the_command(env: dict[str, str], py311: str) -> None:
    child = subprocess.Popen([str(LAUNCHER), "run", "--", py311, "-c",
                              "import sys, time; print('up', flush=True); time.sleep(60)"],
                             env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "up\n"
    child.send_signal(signal.SIGTERM)  # same pid: we exec'd
    assert child.wait(timeout=30) == -signal.SIGTERM


def test_stdin_and_stdout_pass_through(env: dict[str, str], py311: str) -> None:
    proc = launcher("run", "--", py311, "-c", "import sys; sys.stdout.write(sys.stdin.read()[::-1])",
                    env=env, input="abc\n")
    assert proc.stdout == "\ncba"


def test_unknown_command_is_127(env: dict[str, str]) -> None:
    proc = launcher("run", "--", "no-such-command-xyz", env=env)
    assert proc.returncode == 127
    assert proc.stderr == "launcher: command not found: no-such-command-xyz\n"


def test_not_executable_is_126(tmp_path: Path, env: dict[str, str]) -> None:
    f = tmp_path / "script.sh"
    f.write_text("#!/bin/sh\necho hi\n")
    proc = launcher("run", "--", str(f), env=env)
    assert proc.returncode == 126
    assert proc.stderr.startswith("launcher: permission denied:")
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--with", "markupsafe>>=3"], "invalid requirement 'markupsafe>>=3'"),
        (["--with-priority", "middle"], "Invalid value for '--with-priority'"),
        (["--bogus-option"], "No such option '--bogus-option'"),
        (["--find-links", "/no/such/dir"], "--find-links /no/such/dir: no such file or directory"),
    ],
)
def test_bad_input_is_one_line_before_anything_runs(args: list[str], needle: str, tmp_path: Path,
                                                     env: dict[str, str], py311: str) -> None:
    marker = tmp_path / "ran"
    proc = launcher("run", *args, "--", py311, "-c", f"open({str(marker)!r}, 'w')", env=env)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert proc.stderr.startswith("launcher: ") and proc.stderr.count("\n") == 1
    assert not marker.exists()
    assert proc.stdout == ""


def test_unwritable_cache_dir(tmp_path: Path, env: dict[str, str], py311: str) -> None:
    if os.geteuid() == 0:
        # root writes anywhere; a path under a regular file can never be created
        blocker = tmp_path / "file"
        blocker.write_text("")
        env["LAUNCHER_CACHE_DIR"] = str(blocker / "cache")
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        env["LAUNCHER_CACHE_DIR"] = str(ro / "cache")
    proc = launcher("run", *offline_with("six"), "--", py311, "-c", "print('ran')", env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("launcher: cache dir ")
    assert "LAUNCHER_CACHE_DIR" in proc.stderr and proc.stderr.count("\n") == 1
    assert proc.stdout == ""
