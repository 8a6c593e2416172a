"""A warm run does exactly what a cold one would: the memo watches every file
the full path read, and every place whose appearance would change its answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import _launcher_warm as _fastrun
from conftest import WHEELHOUSE, launcher

SHOW = "import importlib.util as u; print(sorted(m for m in ('six', 'cloudpickle') if u.find_spec(m)))"


def _touch_later(path: Path, text: str) -> None:
    """Rewrite `path`; its stat signature changes even within one mtime tick
    (size differs), as a user's edit would."""
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """repo/pkg/sub: the command runs in sub, config may appear in any parent."""
    sub = tmp_path / "repo" / "pkg" / "sub"
    sub.mkdir(parents=True)
    return sub


def run_in(cwd: Path, env: dict[str, str], py: str, *args: str) -> tuple[str, str, int]:
    proc = launcher("run", "--find-links", str(WHEELHOUSE), "--offline", *args, "--", py, "-c", SHOW,
                    env=env, cwd=str(cwd))
    return proc.stdout.strip(), proc.stderr, proc.returncode


def warm(cwd: Path, env: dict[str, str], py: str, *args: str) -> str:
    """Run twice: the second run is the warm one (memo written by the first)."""
    first = run_in(cwd, env, py, *args)
    assert first[2] == 0, first
    memo = Path(env["LAUNCHER_CACHE_DIR"]) / "memo"
    assert any(memo.iterdir()), "the full path remembered nothing"
    second = run_in(cwd, env, py, *args)
    assert second[2] == 0 and second[0] == first[0], (first, second)
    return second[0]


@pytest.mark.parametrize("edited", ["top", "included", "constraint"])
def test_editing_a_requirements_file_or_what_it_includes(edited: str, project: Path, env: dict[str, str],
                                                         py311: str) -> None:
    req = project / "req.txt"
    inc = project / "more.txt"
    con = project / "constraints.txt"
    req.write_text("six\n-r more.txt\n-c constraints.txt\n", encoding="utf-8")
    inc.write_text("# nothing yet\n", encoding="utf-8")
    con.write_text("six>=1.0\n", encoding="utf-8")
    assert warm(project, env, py311, "--with-requirements", "req.txt") == "['six']"
    if edited == "top":
        _touch_later(req, "six\ncloudpickle\n-r more.txt\n-c constraints.txt\n")
    elif edited == "included":
        _touch_later(inc, "cloudpickle\n")
    else:
        # A constraint nothing satisfies: the next run must try (and fail) to build.
        _touch_later(con, "six==0.0.1\n")
    out, err, rc = run_in(project, env, py311, "--with-requirements", "req.txt")
    if edited == "constraint":
        # Nothing answers the requirements now: the job stops, as `uv run` does.
        assert rc == 2 and out == "" and err.count("launcher: ") == 1 and "six==0.0.1" in err, err
    else:
        assert rc == 0
        assert out == "['cloudpickle', 'six']", err


def _edit_in_place(path: Path, text: str) -> None:
    """Rewrite `path` in place to `text` of the same size (same inode), its
    mtime moved on by a second: only the content and the mtime tell."""
    before = path.stat()
    data = text.encode("utf-8")
    assert len(data) == before.st_size, "a same-size edit must keep the size"
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    after = path.stat()
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)


@pytest.mark.parametrize("path", ["warm", "full"])
@pytest.mark.parametrize("edited", ["requirements", "config"])
def test_a_same_size_edit_is_seen(edited: str, path: str, project: Path, env: dict[str, str],
                                  py311: str) -> None:
    """`six` -> `cloudpickle` in place, padded to the same size: the warm path
    must not reuse the old plan on the strength of size and inode alone."""
    args: tuple[str, ...] = ()
    if edited == "requirements":
        target, args = project / "req.txt", ("--with-requirements", "req.txt")
        before, after = "six        \n", "cloudpickle\n"
    else:
        target = project.parent / "launcher.toml"
        before, after = 'with = ["six"]        \n', 'with = ["cloudpickle"]\n'
    target.write_text(before, encoding="utf-8")
    assert warm(project, env, py311, *args) == "['six']"
    _edit_in_place(target, after)
    if path == "full":
        env = dict(env, LAUNCHER_NO_FASTPATH="1")
    out, err, rc = run_in(project, env, py311, *args)
    assert (out, rc) == ("['cloudpickle']", 0), err
    # ... and the edit back, again the same size, again seen.
    _edit_in_place(target, before)
    out, err, rc = run_in(project, env, py311, *args)
    assert (out, rc) == ("['six']", 0), err


@pytest.mark.parametrize("name", ["pyproject.toml", "launcher.toml"])
def test_config_appearing_in_a_parent_dir(name: str, project: Path, env: dict[str, str], py311: str) -> None:
    assert warm(project, env, py311) == "[]"
    parent = project.parent.parent  # repo/
    body = 'with = ["six"]\n'
    (parent / name).write_text(("[tool.launcher]\n" + body) if name == "pyproject.toml" else body,
                               encoding="utf-8")
    out, err, rc = run_in(project, env, py311)
    assert (out, rc) == ("['six']", 0), err


def test_pyproject_gaining_a_launcher_table(project: Path, env: dict[str, str], py311: str) -> None:
    pyproject = project.parent / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n', encoding="utf-8")
    assert warm(project, env, py311) == "[]"
    _touch_later(pyproject, '[project]\nname = "x"\n\n[tool.launcher]\nwith = ["six"]\n')
    out, err, rc = run_in(project, env, py311)
    assert (out, rc) == ("['six']", 0), err


def test_a_new_invalid_config_is_reported(project: Path, env: dict[str, str], py311: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    argv = ["run", "--", py311, "-c", f"open({str(runs)!r}, 'a').write('x')"]
    for _ in range(2):  # cold, then warm: the memo now holds this exact argv
        launcher(*argv, env=env, cwd=str(project), check=True)
    assert runs.read_text(encoding="utf-8") == "xx"
    (project.parent / "launcher.toml").write_text('with = ["six>>>1"]\n', encoding="utf-8")
    proc = launcher(*argv, env=env, cwd=str(project))
    assert proc.returncode == 2 and proc.stderr.startswith("launcher: ") and proc.stderr.count("\n") == 1
    assert "launcher.toml" in proc.stderr and "six>>>1" in proc.stderr
    assert runs.read_text(encoding="utf-8") == "xx"  # the command did not run


@pytest.mark.parametrize("change", ["config-far-above", "nested-constraint"])
def test_every_place_discovery_looked_is_watched(change: str, project: Path, env: dict[str, str],
                                                 py311: str, tmp_path: Path) -> None:
    """Config discovery looks in every parent up to / (past a pyproject.toml
    without a [tool.launcher] table), and requirements files include others:
    a config appearing far above, or an edit two includes deep, changes what
    the next run does, warm or not."""
    req = project / "req.txt"
    inc = project / "inc" / "more.txt"
    inc.parent.mkdir()
    req.write_text("-r inc/more.txt\n", encoding="utf-8")
    inc.write_text("six\n-c ../con.txt\n", encoding="utf-8")
    con = project / "con.txt"
    con.write_text("six<2\n", encoding="utf-8")
    (project.parent / "pyproject.toml").write_text('[project]\nname = "x"\n', encoding="utf-8")
    assert warm(project, env, py311, "--with-requirements", "req.txt") == "['six']"
    if change == "config-far-above":
        far = tmp_path / "launcher.toml"  # above repo/, above the pyproject
        assert not far.exists()
        far.write_text('with = ["cloudpickle"]\n', encoding="utf-8")
        want = "['cloudpickle', 'six']"
    else:
        _touch_later(con, "six==0.0.1\n")  # nothing satisfies it: the job stops before it runs
        want = ""
    out, err, rc = run_in(project, env, py311, "--with-requirements", "req.txt")
    if change == "config-far-above":
        assert (out, rc) == (want, 0), err
    else:
        assert (out, rc) == (want, 2) and "six==0.0.1" in err and err.count("\n") == 1, err


def test_a_python_appearing_earlier_on_path(tmp_path: Path, env: dict[str, str], cache_dir: Path,
                                            py311: str, py313: str) -> None:
    """`launcher run -- python3`: a python3 that appears in an earlier PATH
    entry is what the command will run, so the plan must be made for it
    (prepared before exec, as a cold run would), not left to the gate."""
    from conftest import installs, offline_with

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (second / "python3").symlink_to(py311)
    env["PATH"] = f"{first}{os.pathsep}{second}{os.pathsep}{env['PATH']}"
    argv = ["run", *offline_with("six"), "--", "python3", "-c", "import six, sys; print(sys.version_info[:2])"]
    for _ in range(2):
        assert launcher(*argv, env=env, check=True).stdout == "(3, 11)\n"
    (first / "python3").symlink_to(py313)
    assert launcher(*argv, env=env, check=True).stdout == "(3, 13)\n"
    (built,) = [r for r in installs(cache_dir) if r["abi_key"].startswith("cp313-")]
    assert built["requested_by"] == "launcher", built


def test_a_named_python_appearing_earlier_on_path(tmp_path: Path, env: dict[str, str], cache_dir: Path,
                                                  py313: str, py313t: str) -> None:
    """`--python python3.13` is looked up on PATH like argv[0]: one appearing
    earlier is the interpreter to prepare, warm run or not."""
    from conftest import installs, offline_with

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (second / "python3.13").symlink_to(py313)
    env["PATH"] = f"{first}{os.pathsep}{second}{os.pathsep}{env['PATH']}"
    argv = ["run", "--python", "python3.13", *offline_with("six"), "--", "true"]
    for _ in range(2):
        launcher(*argv, env=env, check=True)
    assert not [r for r in installs(cache_dir) if r["abi_key"].startswith("cp313t-")]
    (first / "python3.13").symlink_to(py313t)
    launcher(*argv, env=env, check=True)
    (built,) = [r for r in installs(cache_dir) if r["abi_key"].startswith("cp313t-")]
    assert built["requested_by"] == "launcher", built


def test_two_installs_sharing_a_cache_never_use_each_others_plans(py311: str, tmp_path: Path) -> None:
    # The same `launcher run ...` from another installation (or run by another
    # Python) must not exec this one's plan: it watches this install's files
    # and names this install's gate, so the other's upgrade would go unseen.
    src = str(Path(_fastrun.__file__).parent)
    code = ("import sys; import _launcher_warm as f; "
            "print(f.entry_path('/c', f.key(['run', 'x'], {'PATH': '/usr/bin'}, '/w')))")
    ours = _fastrun.entry_path("/c", _fastrun.key(["run", "x"], {"PATH": "/usr/bin"}, "/w"))
    same = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    other = subprocess.run([py311, "-c", code], capture_output=True, text=True, check=True,
                           env=dict(os.environ, PYTHONPATH=src))
    assert same.stdout.strip() == ours
    assert other.stdout.strip() != ours


def test_the_warm_paths_flag_list_matches_runs_options() -> None:
    # `launcher run -v` is recognised on the warm path without click: it must
    # know which options take no value, or it misreads the command's own -v.
    import click

    from launcher.commands.run import run

    flags = {name for p in run.params if isinstance(p, click.Option) and p.is_flag
             for name in (*p.opts, *p.secondary_opts)}
    assert flags == set(_fastrun.FLAGS)


def test_the_warm_path_reads_no_memo_file_through_a_link(tmp_path: Path, env: dict[str, str],
                                                         cache_dir: Path, py311: str) -> None:
    """Every file the warm path reads from memo/ (the invocation's entry and
    the plan it names) is opened relative to memo/ and never through a link:
    a look-alike of ours outside the cache, linked in its place, is not used."""
    args = ("run", "-v", "--find-links", str(WHEELHOUSE), "--offline", "--", py311, "-c", "pass")
    launcher(*args, env=env, check=True)
    memo = cache_dir / "memo"
    files = sorted(p.name for p in memo.iterdir())
    assert {f.split("-")[0] for f in files} == {"run", "plan"}, files
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in files:
        assert "warm start" in launcher(*args, env=env, check=True).stderr  # (else this proves nothing)
        os.rename(memo / name, outside / name)
        os.symlink(outside / name, memo / name)
        proc = launcher(*args, env=env, check=True)
        assert "warm start" not in proc.stderr, name
        # The full path replaced the link with a file of its own (or left it
        # unread): put ours back for the next name.
        (memo / name).unlink(missing_ok=True)
        os.rename(outside / name, memo / name)
