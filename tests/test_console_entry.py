"""The `launcher` command is our own script (issue 13): no installer adds
imports to the warm path (pip's generated wrapper imports `re`), whether it
is installed with pip or uv, editable or not; the wheel also ships the
completion scripts."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import LAUNCHER, WHEELHOUSE, launcher, with_real_uv_cache
from support import REPO, imported_modules

SCRIPT = (REPO / "scripts" / "launcher").read_text()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    uv = shutil.which("uv", path=str(LAUNCHER.parent))
    assert uv is not None
    subprocess.run([uv, "build", "--wheel", "--out-dir", str(out), "--offline", str(REPO)],
                   check=True, capture_output=True, timeout=300, env=with_real_uv_cache(dict(os.environ)))
    [whl] = out.glob("*.whl")
    return whl


def test_the_wheel_ships_our_script_and_the_completions(wheel: Path) -> None:
    z = zipfile.ZipFile(wheel)
    names = z.namelist()
    data = next(n.split("/")[0] for n in names if ".data/" in n)
    for path in ("share/bash-completion/completions/launcher", "share/zsh/site-functions/_launcher",
                 "share/fish/vendor_completions.d/launcher.fish"):
        assert f"{data}/data/{path}" in names, path
    script = z.getinfo(f"{data}/scripts/launcher")
    # Not `#!python`: installers would rewrite it and drop -I (see the script).
    assert z.read(script).decode() == SCRIPT and SCRIPT.startswith("#!/bin/bash -p\n")
    assert (script.external_attr >> 16) & stat.S_IXUSR, "pip installs it without +x otherwise"
    entry_points = [n for n in names if n.endswith("entry_points.txt")]
    assert not entry_points or b"console_scripts" not in z.read(entry_points[0])


def test_the_editable_dev_install_runs_our_script() -> None:
    """`make setup` installs with `uv pip install -e`: LAUNCHER is the script itself."""
    assert LAUNCHER.read_text() == SCRIPT


def test_pip_installs_our_script(wheel: Path, tmp_path: Path) -> None:
    pip = LAUNCHER.parent / "pip"
    if not pip.exists():
        pytest.fail(f"{pip} is missing: 'make setup' creates the venv with pip")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([str(pip), "--python", str(venv / "bin" / "python"), "install", "--quiet", "--no-deps",
                    "--no-index", "--disable-pip-version-check", str(wheel)], check=True, timeout=300)
    installed = venv / "bin" / "launcher"
    assert installed.read_text() == SCRIPT
    assert os.access(installed, os.X_OK)
    assert (venv / "share" / "bash-completion" / "completions" / "launcher").exists()


@pytest.mark.parametrize("verbose", [[], ["-v"]], ids=["quiet", "verbose"])
def test_the_warm_path_imports_nothing_the_script_does_not_need(verbose: list[str], env: dict[str, str],
                                                                 py311: str) -> None:
    args = ["run", *verbose, "--with", "six", "--find-links", str(WHEELHOUSE), "--offline", "--", py311, "-c",
            "pass"]
    launcher(*args, env=env, check=True)
    proc = subprocess.run([sys.executable, "-X", "importtime", str(LAUNCHER), *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    mods = imported_modules(proc.stderr)
    assert "_launcher_warm" in mods
    ours = sorted(m for m in mods if m.startswith(("launcher", "_launcher")))
    assert ours == ["_launcher_warm", "launcher", "launcher.__main__"]
    for heavy in ("re", "typing", "click", "json", "subprocess", "pathlib"):
        assert heavy not in mods, heavy
    assert ("launcher: warm start: " in proc.stderr) == bool(verbose)
