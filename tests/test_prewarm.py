"""`launcher prewarm`: trees built ahead of time, serially by default, in
parallel with --jobs / LAUNCHER_PREWARM_JOBS (clamped, invalid -> 1)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from conftest import LAUNCHER, base_env, installs, launcher, offline_with, unreachable_with

JOBS_LINE = re.compile(r"^launcher: prewarming (\d+) runtime trees? in (.+), (\d+) at a time$", re.M)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prewarm") / "cache"


@pytest.fixture(scope="module")
def built(shared: Path, py311: str, py313: str, py313t: str) -> subprocess.CompletedProcess[str]:
    """Three ABIs prewarmed in parallel into the module's cache."""
    env = base_env(shared)
    env["LAUNCHER_PREWARM_JOBS"] = "3"
    return launcher("prewarm", "--python", py311, "--python", py313, "--python", py313t,
                    *offline_with("six"), env=env, check=True)


@pytest.fixture
def penv(shared: Path) -> dict[str, str]:
    return base_env(shared)


def jobs_used(stderr: str) -> int:
    m = JOBS_LINE.search(stderr)
    assert m, stderr
    return int(m.group(3))


def spans(rows: list[dict]) -> list[tuple[float, float]]:
    return sorted((r["at"] - r["seconds"], r["at"]) for r in rows)


def test_parallel_build_of_three_abis(built: subprocess.CompletedProcess[str], penv: dict[str, str],
                                      shared: Path, py313t: str) -> None:
    assert jobs_used(built.stderr) == 3
    done = [ln for ln in built.stderr.splitlines() if ln.startswith("launcher: prewarm: ")]
    assert len(done) == 3 and all(": built (1 package) in " in ln for ln in done), built.stderr
    assert "\x1b[" not in built.stderr  # not a terminal: plain lines
    built_rows = installs(shared)
    assert sorted(r["abi_key"].split("-")[0] for r in built_rows) == ["cp311", "cp313", "cp313t"]
    (_, a1), (b0, _), _ = spans(built_rows)
    assert b0 < a1, "with 3 jobs the builds should overlap in time"
    # `launcher run` with the same settings finds its tree ready.
    run = launcher("run", *offline_with("six"), "--", py313t, "-c", "import six; print(six.__file__)",
                   env=penv, check=True)
    assert run.stdout.startswith(str(shared / "trees" / "cp313t-"))
    assert len(installs(shared)) == 3


def test_serial_by_default(penv: dict[str, str], shared: Path, py311: str, py313: str) -> None:
    before = len(installs(shared))
    # A different requirement set: new trees, built one after the other.
    proc = launcher("prewarm", "--python", py311, "--python", py313, *offline_with("six==1.17.0"),
                    env=penv, check=True)
    assert jobs_used(proc.stderr) == 1
    new = installs(shared)[before:]
    assert len(new) == 2
    (_, a1), (b0, _) = spans(new)
    assert a1 <= b0, "serial builds must not overlap"


@pytest.mark.parametrize(
    ("flag", "variable", "jobs", "warning"),
    [
        ("99", None, 3, None),  # clamped to the number of trees
        ("2", None, 2, None),
        (None, "2", 2, None),
        ("2", "not-a-number", 2, None),  # the flag wins; the variable is not even read
        ("0", None, 1, "--jobs='0' is not a positive whole number; building one tree at a time"),
        ("-4", None, 1, "--jobs='-4' is not a positive whole number; building one tree at a time"),
        ("many", None, 1, "--jobs='many' is not a positive whole number; building one tree at a time"),
        (None, "not-a-number", 1,
         "LAUNCHER_PREWARM_JOBS='not-a-number' is not a positive whole number; building one tree at a time"),
        (None, "0", 1, "LAUNCHER_PREWARM_JOBS='0' is not a positive whole number; building one tree at a time"),
    ],
)
def test_jobs_clamping_and_fallback(flag: str | None, variable: str | None, jobs: int, warning: str | None,
                                    built: object, penv: dict[str, str], shared: Path, py311: str, py313: str,
                                    py313t: str) -> None:
    if variable is not None:
        penv["LAUNCHER_PREWARM_JOBS"] = variable
    args = ["--jobs", flag] if flag is not None else []
    before = len(installs(shared, None))
    proc = launcher("prewarm", *args, "--python", py311, "--python", py313, "--python", py313t,
                    *offline_with("six"), env=penv, check=True)
    assert jobs_used(proc.stderr) == jobs
    warnings = [ln for ln in proc.stderr.splitlines() if "positive whole number" in ln]
    assert warnings == ([f"launcher: {warning}"] if warning else [])
    assert proc.stderr.count(": already present (1 package) in ") == 3
    assert len(installs(shared, None)) == before  # present: nothing built, no lock taken


def test_jobs_never_exceed_eight() -> None:
    from launcher.prewarm import effective_jobs

    assert effective_jobs("20", None, 12) == (8, None)
    assert effective_jobs(None, "9", 30) == (8, None)
    assert effective_jobs("5", "bogus", 12) == (5, None)
    assert effective_jobs(None, None, 12) == (1, None)
    assert effective_jobs(None, "  ", 12) == (1, None)
    assert effective_jobs("3", None, 0) == (1, None)
    assert effective_jobs("1.5", None, 4)[0] == 1


def test_same_abi_is_one_tree(built: object, penv: dict[str, str], py313: str, tmp_path: Path) -> None:
    link = tmp_path / "python-alias"
    link.symlink_to(py313)
    proc = launcher("prewarm", "--jobs", "4", "--python", py313, "--python", str(link),
                    *offline_with("six"), env=penv, check=True)
    m = JOBS_LINE.search(proc.stderr)
    assert m and (m.group(1), m.group(3)) == ("1", "1")


def test_progress_on_a_terminal(built: object, penv: dict[str, str], py311: str, py313: str) -> None:
    """On a TTY: rich live lines, one per tree, with elapsed time."""
    penv.update(TERM="xterm-256color", COLUMNS="200")
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(LAUNCHER), "prewarm", "--python", py311, "--python", py313,
                             *offline_with("six")], env=penv, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    deadline = time.time() + 120
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=30) == 0
    text = out.decode("utf-8", "replace")
    assert "\x1b[" in text  # a live display, not plain lines
    assert "launcher: prewarm: " not in text
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    for abi in ("cp311-", "cp313-"):
        line = next(ln for ln in plain.splitlines() if abi in ln and "already present" in ln)
        assert "✓" in line
        assert re.search(r"\d:\d\d:\d\d", line), line


def test_a_failed_tree_fails_the_command(penv: dict[str, str], py311: str) -> None:
    proc = launcher("prewarm", "--python", py311, *unreachable_with("no-such-package-xyz"), env=penv)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert any(": failed: resolving no-such-package-xyz failed" in ln for ln in lines), proc.stderr
    assert lines[-1].startswith("launcher: prewarm: 1 of 1 runtime tree failed")


def test_nothing_to_prewarm(penv: dict[str, str], tmp_path: Path) -> None:
    proc = launcher("prewarm", *offline_with("six"), env=penv, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == ("launcher: nothing to prewarm: no interpreter given (pass --python PATH "
                           "(repeatable) or set python = [...] in [tool.launcher])\n")
