"""Progress (issue 13): a build that takes longer than about half a second
shows a live line on a terminal's stderr (what, for which ABI, elapsed), a
plain line off a terminal, nothing under -q, never anything on stdout; `-v`
reports a warm start in one line.  The terminal is a real pty."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
from pathlib import Path

import pytest

from conftest import LAUNCHER, WHEELHOUSE, launcher
from support import make_sdist, read_pty

# A build that takes a while for certain: setup.py sleeps, and a fresh uv
# cache means uv cannot reuse a wheel it built before.
SLOW_SETUP = "import time\ntime.sleep(1.5)\nfrom setuptools import setup\nsetup()\n"
PROGRAM = "import slowpkg; print('out:', slowpkg.VERSION)"


@pytest.fixture
def slow(tmp_path: Path, env: dict[str, str]) -> list[str]:
    links = tmp_path / "links"
    links.mkdir()
    make_sdist(links, "slowpkg", "1.0", setup_py=SLOW_SETUP)
    [setuptools] = WHEELHOUSE.glob("setuptools-*.whl")
    (links / setuptools.name).symlink_to(setuptools)
    env["UV_CACHE_DIR"] = str(tmp_path / "uv-cache")
    return ["--with", "slowpkg", "--find-links", str(links), "--offline"]


def on_pty(args: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[int, str, str]:
    """Run the launcher with stderr on a pty (120 columns) and stdout on a pipe."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    e = dict(env, TERM="xterm-256color")
    e.pop("NO_COLOR", None)
    proc = subprocess.Popen([str(LAUNCHER), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave, env=e, cwd=cwd)
    os.close(slave)
    data = read_pty(master)
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    rc = proc.wait(timeout=300)
    # Colours off, cursor control kept: what a person sees, minus the paint.
    return rc, out, re.sub(r"\x1b\[[0-9;]*m", "", data.decode("utf-8", "replace"))


def test_a_slow_build_shows_a_live_line_on_a_terminal(slow: list[str], env: dict[str, str],
                                                      py311: str) -> None:
    rc, out, err = on_pty(["run", *slow, "--", py311, "-c", PROGRAM], env)
    assert rc == 0, err
    assert out == "out: 1.0\n"  # stdout is the command's alone
    live = re.findall(r"preparing the runtime for (cp311-[\w.-]+) \(slowpkg\) +(\d:\d\d:\d\d)", err)
    assert live, err
    assert "\x1b[" in err  # terminal control: a live line, redrawn
    assert max(t for _, t in live) >= "0:00:01"  # the elapsed time runs
    assert re.search(r"launcher: built runtime cp311-\S+ \(1 package\) in \d+\.\ds", err)


def test_off_a_terminal_one_plain_line(slow: list[str], env: dict[str, str], py311: str) -> None:
    proc = launcher("run", *slow, "--", py311, "-c", PROGRAM, env=env)
    assert proc.returncode == 0 and proc.stdout == "out: 1.0\n", proc.stderr
    assert "\x1b" not in proc.stderr
    lines = proc.stderr.splitlines()
    # slowpkg is an sdist only: wheels-first says it builds, then the build outlasts half a second.
    notes = [ln for ln in lines if "building from source" in ln]
    progress = [ln for ln in lines if ln not in notes]
    assert len(notes) == 1 and len(progress) == 1, lines
    assert re.fullmatch(r"launcher: preparing the runtime for cp311-\S+ \(slowpkg\) \.\.\.", progress[0])


def test_quiet_says_nothing_even_on_a_terminal(slow: list[str], env: dict[str, str], py311: str) -> None:
    rc, out, err = on_pty(["run", "-q", *slow, "--", py311, "-c", PROGRAM], env)
    assert rc == 0 and out == "out: 1.0\n" and err == "", err


def test_prewarm_shows_live_lines_and_quiet_silences_it(slow: list[str], env: dict[str, str],
                                                        py311: str) -> None:
    rc, out, err = on_pty(["prewarm", "-q", "--python", py311, *slow], env)
    assert rc == 0 and out == "" and err == "", err
    env["LAUNCHER_CACHE_DIR"] += "-2"
    env["UV_CACHE_DIR"] += "-2"
    rc, out, err = on_pty(["prewarm", "--python", py311, *slow], env)
    assert rc == 0 and out == "", err
    assert re.search(r"cp311-\S+: preparing for \S+ +\d:\d\d:\d\d", err), err
    assert re.search(r"cp311-\S+: built \(1 package\)", err), err


def test_verbose_reports_a_warm_start_in_one_line(env: dict[str, str], py311: str) -> None:
    args = ["run", "-v", "--with", "six", "--find-links", str(WHEELHOUSE), "--offline", "--", py311, "-c",
            "print('out')"]
    cold = launcher(*args, env=env, check=True)
    assert "warm start" not in cold.stderr
    warm = launcher(*args, env=env, check=True)
    assert warm.stdout == "out\n"
    [line] = warm.stderr.splitlines()
    # One runtime tree (3.11, --with six), and the files it watches: never 0 of either.
    assert re.fullmatch(r"launcher: warm start: [1-9]\d* watched files and 1 runtime tree unchanged, "
                        r"reusing the prepared plan; "
                        rf"exec {re.escape(py311)} -c print\('out'\)", line), line
    quiet = launcher(*[a for a in args if a != "-v"], env=env, check=True)
    assert quiet.stderr == ""
    # -v after the command belongs to the command, not to the launcher.
    theirs = launcher("run", "--with", "six", "--find-links", str(WHEELHOUSE), "--offline", "--", py311,
                      "-c", "import sys; print(sys.argv[1:])", "-v", env=env, check=True)
    again = launcher("run", "--with", "six", "--find-links", str(WHEELHOUSE), "--offline", "--", py311,
                     "-c", "import sys; print(sys.argv[1:])", "-v", env=env, check=True)
    assert theirs.stdout == again.stdout == "['-v']\n" and again.stderr == ""
