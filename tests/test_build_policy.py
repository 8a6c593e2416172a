"""Wheels first (issue 13): runtime trees resolve binary-only, fall back to a
source build only when no binary solution exists (and say so), and
`build = "never" | "fallback" | "always"` (flag, env, config) forbids or
allows builds.  Offline, with the wheelhouse: markupsafe has wheels for
cp311/cp313/cp313t and an sdist PyPy must build (with setuptools from the
wheelhouse)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import WHEELHOUSE, foreign_python, installs, launcher, offline_with
from support import make_sdist, make_wheel

IMPORTED_FROM = "import markupsafe, sys; print(markupsafe.__file__)"


@pytest.fixture(scope="module")
def pypy() -> str:
    return foreign_python("pypy")


def _trees(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "trees").iterdir() if not p.name.startswith("."))


def test_never_on_pypy_fails_with_one_clear_line(pypy: str, env: dict[str, str], cache_dir: Path) -> None:
    proc = launcher("run", "--build", "never", *offline_with("markupsafe"), "--", pypy, "-c", "print('ran')",
                    env=env)
    assert proc.returncode == 0 and proc.stdout == "ran\n"  # the command still runs, without its runtime
    # The launcher's line says why; the gate in the command adds its own "failed moments ago".
    line = proc.stderr.splitlines()[0]
    assert line.startswith("launcher: could not build the runtime for pypy39-pp73")
    assert "no wheels of markupsafe for pypy39-pp73" in line and 'build = "never" forbids source builds' in line
    assert len(installs(cache_dir, "failed")) == 1 and not installs(cache_dir, "built")
    doctor = launcher("doctor", "--build", "never", *offline_with("markupsafe"), "--python", pypy, env=env)
    assert doctor.returncode == 1 and "--build fallback" in doctor.stdout  # the fix is named


def test_fallback_on_pypy_builds_from_source_and_says_so(pypy: str, env: dict[str, str],
                                                         cache_dir: Path) -> None:
    proc = launcher("run", *offline_with("markupsafe"), "--", pypy, "-c", IMPORTED_FROM, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(str(cache_dir / "trees" / "pypy39-pp73"))
    notes = [ln for ln in proc.stderr.splitlines() if "building from source" in ln]
    assert notes == [f"launcher: no wheels of markupsafe for {_trees(cache_dir)[0].rsplit('-', 1)[0]}: "
                     "building from source (--build never would forbid that)"]
    assert len(installs(cache_dir, "built")) == 1


def test_cp313_never_builds(py313: str, env: dict[str, str], cache_dir: Path) -> None:
    proc = launcher("run", *offline_with("markupsafe"), "--", py313, "-c", IMPORTED_FROM, env=env)
    assert proc.returncode == 0 and "building from source" not in proc.stderr, proc.stderr
    [tree] = _trees(cache_dir)
    assert any(p.name.endswith(".cpython-313-x86_64-linux-gnu.so")
               for p in (cache_dir / "trees" / tree / "markupsafe").iterdir())
    # never and fallback publish the same tree (same spec hash): no second build.
    again = launcher("run", "--build", "never", *offline_with("markupsafe"), "--", py313, "-c", IMPORTED_FROM,
                     env=env)
    assert again.returncode == 0 and again.stdout == proc.stdout, again.stderr
    assert _trees(cache_dir) == [tree] and len(installs(cache_dir, "built")) == 1


@pytest.fixture
def links(tmp_path: Path) -> Path:
    """fhdemo 1.0 as a wheel, 2.0 only as an sdist, and setuptools to build it."""
    d = tmp_path / "links"
    d.mkdir()
    make_wheel(d, "fhdemo", {"fhdemo.py": 'VERSION = "1.0"\n'}, "")
    make_sdist(d, "fhdemo", "2.0")
    [setuptools] = WHEELHOUSE.glob("setuptools-*.whl")
    (d / setuptools.name).symlink_to(setuptools)
    return d


def _version(py: str, links: Path, env: dict[str, str], *extra: str, cwd: Path | None = None) -> str:
    proc = launcher("run", *extra, "--with", "fhdemo", "--find-links", str(links), "--offline", "--",
                    py, "-c", "import fhdemo; print(fhdemo.VERSION)", env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_wheels_first_prefers_an_older_wheel_to_a_newer_sdist(py311: str, links: Path, env: dict[str, str],
                                                               cache_dir: Path, tmp_path: Path) -> None:
    assert _version(py311, links, env) == "1.0"  # fallback (default): the wheel wins, nothing compiled
    assert _version(py311, links, env, "--build", "never") == "1.0"
    assert len(_trees(cache_dir)) == 1
    # always: the installer picks freely (the newest, built from source), in a tree of its own.
    assert _version(py311, links, env, "--build", "always") == "2.0"
    assert len(_trees(cache_dir)) == 2
    assert _version(py311, links, dict(env, LAUNCHER_BUILD="always")) == "2.0"
    project = tmp_path / "project"
    project.mkdir()
    (project / "launcher.toml").write_text('build = "always"\n')
    assert _version(py311, links, env, cwd=project) == "2.0"
    assert len(_trees(cache_dir)) == 2 and len(installs(cache_dir, "built")) == 2
    shown = launcher("config", "--json", env=env, cwd=project, check=True)
    assert json.loads(shown.stdout)["settings"]["build"]["value"] == "always"


def test_bad_build_value_is_one_line_exit_2(env: dict[str, str], tmp_path: Path) -> None:
    proc = launcher("run", "--", "true", env=dict(env, LAUNCHER_BUILD="sometimes"), cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert "LAUNCHER_BUILD" in proc.stderr and "'never' or 'fallback' or 'always'" in proc.stderr


def test_the_gates_builds_obey_the_policy(py311: str, pypy: str, env: dict[str, str], cache_dir: Path) -> None:
    """A PyPy child the launcher cannot see builds in its gate, with the run's policy."""
    parent = f"import subprocess, sys; sys.exit(subprocess.run([{pypy!r}, '-c', {IMPORTED_FROM!r}]).returncode)"
    never = launcher("run", "--build", "never", *offline_with("markupsafe"), "--", py311, "-c", parent,
                     env=env)
    assert never.returncode == 1 and "No module named 'markupsafe'" in never.stderr
    # (Progress lines aside: a build that outlasts half a second says so, on a loaded machine too.)
    gate_lines = [ln for ln in never.stderr.splitlines()
                  if ln.startswith("launcher:") and "preparing the runtime" not in ln]
    assert len(gate_lines) == 1 and 'build = "never" forbids source builds' in gate_lines[0], never.stderr
    subprocess.run(["rm", "-rf", str(cache_dir / "failures")], check=True)
    fallback = launcher("run", *offline_with("markupsafe"), "--", py311, "-c", parent, env=env)
    assert fallback.returncode == 0 and fallback.stdout.startswith(str(cache_dir / "trees" / "pypy39-pp73")), \
        fallback.stderr


def test_prewarm_says_when_it_builds_from_source(pypy: str, env: dict[str, str], tmp_path: Path) -> None:
    proc = launcher("prewarm", "--python", pypy, *offline_with("markupsafe"), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert sum("no wheels of markupsafe for pypy39-pp73" in ln and "building from source" in ln
               for ln in lines) == 1, lines
    assert any(ln.startswith("launcher: prewarm: pypy39-pp73") and ": built (1 package)" in ln for ln in lines)
    assert not any("runs without it" in ln for ln in lines)
