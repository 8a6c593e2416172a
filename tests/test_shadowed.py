"""A `--with` requirement the interpreter's own packages shadow (issue 13):
with the default priority ("last") a venv's six 1.16 wins over
`--with 'six>=1.17'`; `run -v` and `doctor` say so and name
`--with-priority first`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import WHEELHOUSE, launcher
from support import without_progress

SIX_VERSION = "import six; print(six.__version__)"


@pytest.fixture(scope="module")
def venv_with_old_six(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 3.11 venv where an installer left six 1.16.0 (module and dist-info)."""
    d = tmp_path_factory.mktemp("venv-six116")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(d)], check=True)
    site = next((d / "lib").glob("python3*/site-packages"))
    (site / "six.py").write_text('__version__ = "1.16.0"\n')
    info = site / "six-1.16.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n")
    (info / "INSTALLER").write_text("pip\n")
    return str(d / "bin" / "python")


def _links() -> list[str]:
    return ["--find-links", str(WHEELHOUSE), "--offline"]


def test_run_verbose_names_the_shadowing_version_and_the_fix(venv_with_old_six: str,
                                                             env: dict[str, str]) -> None:
    proc = launcher("run", "-v", "--with", "six>=1.17", *_links(), "--", venv_with_old_six, "-c", SIX_VERSION,
                    env=env, check=True)
    assert proc.stdout == "1.16.0\n"  # what the user would otherwise find out the hard way
    [line] = [ln for ln in proc.stderr.splitlines() if "shadowed" in ln]
    site = next(Path(venv_with_old_six).parent.parent.glob("lib/python3*/site-packages"))
    assert line == (f"launcher: --with 'six>=1.17' is shadowed for {venv_with_old_six}: six 1.16.0 in {site} "
                    "comes first and does not satisfy it; use --with-priority first to put the runtime "
                    "tree ahead")
    again = launcher("run", "-v", "--with", "six>=1.17", *_links(), "--", venv_with_old_six, "-c", SIX_VERSION,
                     env=env, check=True)
    assert line in again.stderr.splitlines()  # said on every -v run, not lost to the warm path
    first = launcher("run", "-v", "--with-priority", "first", "--with", "six>=1.17", *_links(), "--",
                     venv_with_old_six, "-c", SIX_VERSION, env=env, check=True)
    assert first.stdout == "1.17.0\n" and "shadowed" not in first.stderr


@pytest.mark.parametrize("req", ["six", "six>=1.16", "six<2"])
def test_a_satisfied_requirement_is_not_reported(req: str, venv_with_old_six: str, env: dict[str, str]) -> None:
    proc = launcher("run", "-v", "--with", req, *_links(), "--", venv_with_old_six, "-c", SIX_VERSION,
                    env=env, check=True)
    assert proc.stdout == "1.16.0\n" and "shadowed" not in proc.stderr


def test_without_verbose_run_stays_silent(venv_with_old_six: str, env: dict[str, str]) -> None:
    proc = launcher("run", "--with", "six>=1.17", *_links(), "--", venv_with_old_six, "-c", SIX_VERSION,
                    env=env, check=True)
    assert without_progress(proc.stderr) == ""


def test_doctor_warns_and_names_with_priority_first(venv_with_old_six: str, env: dict[str, str]) -> None:
    proc = launcher("doctor", "--json", "--with", "six>=1.17", *_links(), "--python", venv_with_old_six,
                    env=env)
    report = json.loads(proc.stdout)
    shadowed = [f for g in report["groups"] for f in g["findings"] if f["facts"].get("state") == "shadowed"]
    assert [f["status"] for f in shadowed] == ["warn"] and proc.returncode == 0
    assert "six 1.16.0" in shadowed[0]["message"] and "--with-priority first" in shadowed[0]["fix"]
    assert shadowed[0]["facts"]["installed"] == "1.16.0"
    text = launcher("doctor", "--with", "six>=1.17", *_links(), "--python", venv_with_old_six, env=env)
    assert "--with-priority first" in text.stdout
    fine = launcher("doctor", "--json", "--with-priority", "first", "--with", "six>=1.17", *_links(),
                    "--python", venv_with_old_six, env=env)
    assert "shadowed" not in fine.stdout
