"""Builds a child starts are visible (issue 17, item 5): a runtime the gate
builds for an interpreter the launch did not know follows `launcher run`'s
foreground rules -- a plain line naming what is built for which ABI once it
takes longer than half a second, a live line when that interpreter's stderr
is a terminal, "building from source" when it compiles, nothing under -q
(carried to the children) -- and never anything on stdout."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from conftest import WHEELHOUSE, foreign_python, installs, launcher, offline_with
from support import make_sdist
from test_progress import SLOW_SETUP, on_pty

IMPORTED_FROM = "import markupsafe; print(markupsafe.__file__)"


@pytest.fixture
def fresh_uv(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    # A build uv made before (in the user's uv cache) would be reused: fast, and silent.
    env["UV_CACHE_DIR"] = str(tmp_path / "uv-cache")
    return env


def test_a_pypy_child_compiling_from_source_says_so_in_one_line(py311: str, fresh_uv: dict[str, str],
                                                                  cache_dir: Path) -> None:
    pypy = foreign_python("pypy")
    parent = f"import subprocess, sys; sys.exit(subprocess.run([{pypy!r}, '-c', {IMPORTED_FROM!r}]).returncode)"
    proc = launcher("run", *offline_with("markupsafe"), "--", py311, "-c", parent, env=fresh_uv)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(str(cache_dir / "trees" / "pypy39-pp73"))  # stdout is the workload's alone
    lines = proc.stderr.splitlines()
    source = [ln for ln in lines if "markupsafe" in ln and "pypy39-pp73" in ln and "source" in ln]
    assert len(source) == 1, lines
    assert source[0].startswith("launcher: no wheels of markupsafe for pypy39-pp73")
    # The compile takes seconds: off a terminal, one plain line names what is built for which ABI.
    assert any(re.fullmatch(r"launcher: preparing the runtime for pypy39-pp73\S+ \(markupsafe\) \.\.\.", ln)
               for ln in lines), lines
    # Nothing else about PyPy's build (the launcher's own cp311 build may say it took a while).
    assert len([ln for ln in lines if "pypy39" in ln]) == 2 and "\x1b" not in proc.stderr, lines
    assert [r["abi_key"].split("-")[0] for r in installs(cache_dir)] == ["cp311", "pypy39"]


@pytest.fixture
def slow_links(tmp_path: Path) -> list[str]:
    links = tmp_path / "links"
    links.mkdir()
    make_sdist(links, "slowpkg", "1.0", setup_py=SLOW_SETUP)
    [setuptools] = WHEELHOUSE.glob("setuptools-*.whl")
    (links / setuptools.name).symlink_to(setuptools)
    return ["--with", "slowpkg", "--find-links", str(links), "--offline"]


def _child_of_a_shell(python: str) -> list[str]:
    """A command the launcher sees no Python in: only the child's gate can build."""
    return ["sh", "-c", f"{shlex.quote(python)} -c 'import slowpkg; print(\"out:\", slowpkg.VERSION)'"]


def test_quiet_is_carried_to_the_childrens_builds(py313: str, slow_links: list[str], fresh_uv: dict[str, str],
                                                  cache_dir: Path) -> None:
    rc, out, err = on_pty(["run", "-q", *slow_links, "--", *_child_of_a_shell(py313)], fresh_uv)
    assert rc == 0 and out == "out: 1.0\n" and err == "", err
    assert [r["abi_key"].split("-")[0] for r in installs(cache_dir)] == ["cp313"]  # built, by the gate


def test_a_childs_build_shows_a_live_line_on_its_terminal(py313: str, slow_links: list[str],
                                                          fresh_uv: dict[str, str]) -> None:
    rc, out, err = on_pty(["run", *slow_links, "--", *_child_of_a_shell(py313)], fresh_uv)
    assert rc == 0 and out == "out: 1.0\n", err
    live = re.findall(r"preparing the runtime for cp313-[\w.-]+ \(slowpkg\) +(\d:\d\d:\d\d)", err)
    assert live and "\x1b[" in err, err  # redrawn in place
    assert max(live) >= "0:00:01", err  # the elapsed time runs
    assert re.search(r"launcher: built runtime cp313-\S+ \(1 package\) in \d+\.\ds", err), err
    assert "building from source" in err

