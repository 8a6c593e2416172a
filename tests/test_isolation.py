"""The launcher's own interpreter is not the user's (issue 20): the user's
PYTHONPATH, user site and PYTHON* settings are for the command.  A module of
theirs named like one of ours changes nothing, their sitecustomize runs once
per interpreter of the job (in the command, never in the launcher), and the
command gets their environment as a bare run would."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import LAUNCHER, REPO, launcher, missing, offline_with, with_real_uv_cache

SHOW = ("import click, os, sys; print(click.__file__); print(os.getpid()); "
        "print(os.environ.get('PYTHONPATH', ''))")


@pytest.fixture
def user(tmp_path: Path, env: dict[str, str]) -> Path:
    """A PYTHONPATH directory with a shadowing click.py and a counting sitecustomize.py."""
    d = tmp_path / "user"
    d.mkdir()
    # If the launcher imported this, its CLI would fail before the command starts.
    (d / "click.py").write_text("USERS = True\n")
    (d / "sitecustomize.py").write_text(
        "import os, sys\n"
        "with open(os.environ['COUNT_FILE'], 'a') as f:\n"
        "    f.write('%d %s\\n' % (os.getpid(), sys.executable))\n")
    env["PYTHONPATH"] = str(d)
    env["COUNT_FILE"] = str(tmp_path / "count")
    return d


def _runs(tmp_path: Path) -> list[str]:
    count = tmp_path / "count"
    runs = count.read_text().splitlines() if count.exists() else []
    count.unlink(missing_ok=True)
    return runs


def _check(proc: subprocess.CompletedProcess[str], user: Path, tmp_path: Path, py: str) -> None:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    click_file, pid, pythonpath = proc.stdout.splitlines()
    assert click_file == str(user / "click.py")  # the command sees the user's module, as bare
    # Once per interpreter: in the command's, not also in the launcher's (the
    # same pid, before the exec).  (A cold run's installer compiles bytecode
    # with the target python, an interpreter of its own: once there too.)
    runs = _runs(tmp_path)
    assert len({r.split()[0] for r in runs}) == len(runs), runs
    assert f"{pid} {py}" in runs
    # The gate's directory first, the user's entry kept, once.
    assert pythonpath.split(os.pathsep)[1:] == [str(user)]


def test_the_users_pythonpath_does_not_reach_the_launcher_cold_or_warm(
        user: Path, env: dict[str, str], py311: str, tmp_path: Path) -> None:
    args = ["run", "-v", *offline_with("six"), "--", py311, "-c", SHOW]
    cold = launcher(*args, env=env)
    _check(cold, user, tmp_path, py311)
    assert "warm start" not in cold.stderr
    warm = launcher(*args, env=env)
    _check(warm, user, tmp_path, py311)
    assert "warm start" in warm.stderr


def test_a_nested_launch_stays_isolated_and_idempotent(user: Path, env: dict[str, str], py311: str,
                                                       tmp_path: Path) -> None:
    proc = launcher("run", *offline_with("six"), "--", "launcher", "run", *offline_with("six"), "--",
                    py311, "-c", SHOW, env=env)
    _check(proc, user, tmp_path, py311)


def test_python_m_launcher_reexecs_isolated(user: Path, env: dict[str, str], py311: str,
                                            tmp_path: Path) -> None:
    """`python -m launcher` cannot stop what already ran at its interpreter's
    start (docs/configuration.md says so), but it re-execs with -I before
    importing anything the user's PYTHONPATH could shadow."""
    proc = subprocess.run([str(LAUNCHER.parent / "python"), "-m", "launcher", "run", *offline_with("six"),
                           "--", py311, "-c", SHOW], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    click_file, pid, _ = proc.stdout.splitlines()
    assert click_file == str(user / "click.py")
    runs = [r for r in _runs(tmp_path) if r.split()[0] == pid]
    # The first (not isolated) interpreter, then the command; none in the isolated re-exec.
    assert runs == [f"{pid} {LAUNCHER.parent / 'python'}", f"{pid} {py311}"]


def test_uv_tool_install_gives_an_isolated_launcher(tmp_path: Path, env: dict[str, str], user: Path) -> None:
    """`uv tool install <checkout>`: the command is a link into the tool's venv.
    Offline: hatchling and the dependencies come from uv's cache, which
    `make setup` filled."""
    uv = shutil.which("uv", path=str(LAUNCHER.parent))
    assert uv is not None
    tool_env = dict(with_real_uv_cache(env), UV_TOOL_DIR=str(tmp_path / "tools"),
                    UV_TOOL_BIN_DIR=str(tmp_path / "bin"))
    tool_env.pop("PYTHONPATH")
    base = os.path.realpath(LAUNCHER.parent / "python")
    proc = subprocess.run([uv, "tool", "install", "--offline", "--python", base, str(REPO)], env=tool_env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and "offline" in proc.stderr.lower():
        missing(f"uv tool install --offline needs hatchling and the dependencies in uv's cache "
                f"('make setup' puts them there): {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr
    exe = tmp_path / "bin" / "launcher"
    assert exe.is_symlink()
    for flag in ("--version", "-V"):
        out = subprocess.run([str(exe), flag], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.startswith("launcher, version "), out.stderr
    assert _runs(tmp_path) == []  # the user's sitecustomize did not run in the tool's interpreter


SHOW_ENVIRON = "import os, sys; sys.stdout.buffer.write(repr(sorted(os.environb.items())).encode())"


def test_the_command_gets_every_variable_of_the_caller_cold_and_warm(env: dict[str, str], py311: str,
                                                                     tmp_path: Path) -> None:
    """Names no shell accepts as identifiers still reach the command: an
    exported bash function (Lmod's `module` is one), dotted and dashed names
    (Kubernetes allows them), a non-UTF-8 name.  A /bin/sh (dash) prologue
    dropped them all; the command must see what a bare run sees, less and
    plus only the launcher's own variables."""
    environ = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    environ.update({b"BASH_FUNC_f%%": b"() {  echo hi\n}", b"spring.profiles.active": b"test",
                    b"A-B": b"1", b"K\xfe": b"v\xff", b"PWD": os.fsencode(tmp_path),
                    b"OLDPWD": b"/", b"SHLVL": b"1"})
    argv = [py311, "-c", SHOW_ENVIRON]
    bare = subprocess.run(argv, env=environ, cwd=tmp_path, capture_output=True, timeout=60, check=True).stdout

    def theirs(stdout: bytes) -> list[tuple[bytes, bytes]]:
        # Less the launcher's own variables, and `_`: the shell's, set to the
        # path of each command it runs, so no two commands see the same one.
        return [(k, v) for k, v in eval(stdout)
                if k not in (b"PYTHONPATH", b"_") and not k.startswith(b"LAUNCHER_")]

    for attempt in ("cold", "warm"):
        proc = subprocess.run([str(LAUNCHER), "run", *offline_with("six"), "--", *argv], env=environ,
                              cwd=tmp_path, capture_output=True, timeout=600)
        assert proc.returncode == 0, (attempt, proc.stderr)
        assert theirs(proc.stdout) == theirs(bare), attempt
    assert (b"BASH_FUNC_f%%", b"() {  echo hi\n}") in theirs(bare)  # (else this proves nothing)
