"""Issue 13, the first hour of a new user: the bare command, completions,
help that speaks for each command, interpreters by name, a directory as
COMMAND, and failure records that expire (doctor and `cache prune`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import LAUNCHER, installs, launcher, missing, offline_with, unreachable_with
from support import REPO


def test_launcher_alone_prints_short_help_and_exits_0(env: dict[str, str]) -> None:
    proc = launcher(env=env)
    assert proc.returncode == 0 and proc.stderr == ""
    out = proc.stdout
    assert out.startswith("Usage: launcher")
    for name in ("run", "doctor", "prewarm", "cache", "config", "completions"):
        assert f"\n  {name} " in out, name
    assert "_build" not in out and len(out.splitlines()) < 30


def test_help_explains_each_term_where_first_used(env: dict[str, str]) -> None:
    """Issue 20: 'runtime tree', 'descendant interpreter' and 'shim' are
    explained at (or before) their first use in each help a user reads first."""
    for args in ([], ["--help"], *([c, "--help"] for c in ("run", "doctor", "prewarm", "config", "cache"))):
        out = " ".join(launcher(*args, env=env, check=True).stdout.split())  # (terms wrap in columns)
        for term, words in (("runtime tree", "installed once per"), ("descendant interpreter", "Python"),
                            ("shim", "wrapper")):
            if term not in out:
                continue
            first = out.index(term)
            assert words in out[first:first + 160], (args, term, out[first:first + 160])
        assert "(s)" not in out


def test_cache_alone_prints_its_short_help_and_exits_0(env: dict[str, str]) -> None:
    proc = launcher("cache", env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("Usage: launcher cache COMMAND")
    for name in ("list", "info", "dir", "verify", "prune", "clear"):
        assert f"\n  {name} " in proc.stdout, name


def test_completions_alone_is_one_usage_line_naming_the_shells(env: dict[str, str]) -> None:
    proc = launcher("completions", env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert "launcher completions bash|fish|zsh" in line, line


def test_short_option_p_for_python(env: dict[str, str], tmp_path: Path) -> None:
    py = os.path.realpath(LAUNCHER.parent / "python")
    for command in ("run", "prewarm", "doctor", "config"):
        assert "-p, --python PYTHON" in launcher(command, "--help", env=env, check=True).stdout, command
    got = json.loads(launcher("config", "--json", "-p", py, env=env, cwd=tmp_path, check=True).stdout)
    assert got["settings"]["python"]["value"] == [py]


def test_counts_read_as_words() -> None:
    from launcher.words import plural

    assert (plural(1, "package"), plural(6, "package"), plural(0, "tree")) == ("1 package", "6 packages",
                                                                               "0 trees")
    src = REPO / "src" / "launcher"
    count = re.compile(r"\}\s+[a-z ]+(?<!http)\(s\)")  # "{len(x)} runtime tree(s)"
    offenders = [f"{p.relative_to(src)}:{n}" for p in src.rglob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1) if count.search(line)]
    assert not offenders, offenders


def test_top_help_shows_whole_summaries(env: dict[str, str]) -> None:
    out = launcher("--help", env=env, check=True).stdout
    commands = out.split("Commands:", 1)[1]
    assert "..." not in commands  # click cuts long first lines; each command has its own short help
    assert "Explain what is wrong with a setup, and the fix." in out
    assert "launcher completions" in out


@pytest.mark.parametrize("command", ["doctor", "config", "prewarm"])
def test_each_command_describes_python_in_its_own_words(command: str, env: dict[str, str]) -> None:
    out = launcher(command, "--help", env=env, check=True).stdout
    assert "prepare before launch" not in out
    assert "--python PYTHON" in out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completions_command_prints_the_committed_script(shell: str, env: dict[str, str]) -> None:
    from launcher.completions import SHELLS

    proc = launcher("completions", shell, env=env, check=True)
    assert proc.stdout == (REPO / "completions" / SHELLS[shell]).read_text()
    bad = launcher("completions", "tcsh", env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("launcher: ") and len(bad.stderr.splitlines()) == 1


def test_bash_completion_script_completes_preload_names(env: dict[str, str], tmp_path: Path) -> None:
    """Sourced in a real bash, the script completes `--preload je` to jemalloc."""
    bash = shutil.which("bash")
    if bash is None:
        missing("bash is not installed")
    script = launcher("completions", "bash", env=env, check=True).stdout
    probe = (script + '\nCOMP_WORDS=(launcher run --preload je); COMP_CWORD=3\n'
             '_launcher_completion launcher\nprintf "%s\\n" "${COMPREPLY[@]}"\n')
    out = subprocess.run([bash, "-c", probe], env=env, capture_output=True, text=True, timeout=60).stdout
    assert out.split() == ["jemalloc"]


def test_preload_and_build_complete_their_values(env: dict[str, str]) -> None:
    def complete(words: str, cword: int) -> list[str]:
        e = dict(env, _LAUNCHER_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(cword))
        out = subprocess.run([str(LAUNCHER)], env=e, capture_output=True, text=True).stdout
        return [line.split(",", 1)[1] for line in out.splitlines() if "," in line]

    assert {"jemalloc", "tcmalloc", "asan"} <= set(complete("launcher run --preload ", 3))
    assert complete("launcher run --preload tc", 3)[0].startswith("tcmalloc")
    assert complete("launcher run --preload ./li", 3) == ["./li"]  # a path: the shell completes files
    assert set(complete("launcher doctor --build ", 3)) == {"never", "fallback", "always"}


def test_a_directory_as_command_says_it_is_a_directory(env: dict[str, str], tmp_path: Path) -> None:
    proc = launcher("run", "--", str(tmp_path), env=env)
    assert proc.returncode == 126 and proc.stdout == ""
    assert proc.stderr == f"launcher: {tmp_path} is a directory, not a command\n"


# -------------------------------------------------------------- names on PATH


@pytest.fixture
def on_path(py311: str, env: dict[str, str], tmp_path: Path) -> str:
    """A directory on PATH with `pyname` linking to the bare 3.11 venv's python."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pyname").symlink_to(py311)
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    return str(bindir / "pyname")


def test_python_by_name_is_looked_up_on_path_in_run(on_path: str, env: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    proc = launcher("run", "-v", "--python", "pyname", "--", "true", env=env, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert f"{on_path}: cp311-" in proc.stderr


def test_python_by_name_in_prewarm_doctor_and_api(on_path: str, env: dict[str, str], tmp_path: Path) -> None:
    pre = launcher("prewarm", "--python", "pyname", *offline_with("six"), env=env, cwd=tmp_path)
    assert pre.returncode == 0, pre.stderr
    assert [r["interpreter"] for r in installs(Path(env["LAUNCHER_CACHE_DIR"]))] == [on_path]
    proc = launcher("doctor", "--json", "--python", "pyname", env=env, cwd=tmp_path)
    report = json.loads(proc.stdout)
    paths = [g["interpreter"]["path"] for g in report["groups"] if g.get("interpreter")]
    assert paths == [on_path]
    code = ("import launcher, os, sys; p = launcher.prepare(flags={'python': ['pyname']}, build=False); "
            "print(p.interpreters[0].interpreter.executable)")
    api = subprocess.run([str(LAUNCHER.parent / "python"), "-c", code], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert api.stdout.strip() == on_path, api.stderr


@pytest.mark.parametrize("command", [["run"], ["prewarm", "--with", "six"], ["doctor"]])
def test_python_name_not_on_path_is_one_line_exit_2(command: list[str], env: dict[str, str],
                                                     tmp_path: Path) -> None:
    args = [*command, "--python", "nosuchpython3.99"] + (["--", "true"] if command == ["run"] else [])
    proc = launcher(*args, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "launcher: --python nosuchpython3.99: no interpreter of that name on PATH "
        "(give its path, or add its directory to PATH)"]


def test_python_with_a_slash_or_a_venv_dir_stays_a_path(env: dict[str, str], py311: str,
                                                        tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(Path(py311).parent.parent)
    (tmp_path / "pyname").symlink_to(py311)
    for given, path in ((".venv", ".venv/bin/python"), ("./pyname", "pyname")):
        proc = launcher("run", "-v", "--python", given, "--", "true", env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr  # a venv dir stands for its python
        assert f"{tmp_path / path}: cp311-" in proc.stderr


# ------------------------------------------------------- expired failure records


def test_expired_failure_record_is_history_and_prune_removes_it(py311: str, env: dict[str, str],
                                                                tmp_path: Path) -> None:
    cache = Path(env["LAUNCHER_CACHE_DIR"])
    ran = launcher("run", *unreachable_with("doesnotexist-pkg"), "--", py311, "-c", "pass", env=env, cwd=tmp_path)
    assert ran.returncode == 0 and installs(cache, "failed"), ran.stderr
    [record] = (cache / "failures").glob("*.json")

    fresh = launcher("doctor", "--json", env=env, cwd=tmp_path)
    assert fresh.returncode == 1  # within its TTL (60 s by default) it still stops builds
    pruned = launcher("cache", "prune", "--json", env=env, cwd=tmp_path, check=True)
    assert record.exists() and "failure-record" not in pruned.stdout

    time.sleep(1.2)
    expired = dict(env, LAUNCHER_FAILURE_TTL="1")
    proc = launcher("doctor", "--json", env=expired, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout
    findings = [f for g in json.loads(proc.stdout)["groups"] for f in g["findings"] if f["check"] == "failure"]
    assert [f["status"] for f in findings] == ["ok"]
    assert findings[0]["message"].startswith("history: ") and findings[0]["facts"]["expired"] is True
    assert "doesnotexist-pkg" in findings[0]["message"]

    dry = launcher("cache", "prune", "--dry-run", "--json", env=expired, cwd=tmp_path, check=True)
    assert [r["path"] for r in json.loads(dry.stdout)["removed"] if r["kind"] == "failure-record"] \
        == [str(record)]
    assert record.exists()
    done = launcher("cache", "prune", "--json", env=expired, cwd=tmp_path, check=True)
    assert [r["kind"] for r in json.loads(done.stdout)["removed"]] == ["failure-record"]
    assert not record.exists()
    assert launcher("doctor", env=expired, cwd=tmp_path).returncode == 0


def test_readme_says_how_to_install_before_usage() -> None:
    """Issue 20: uv tool, pipx and pip, from a checkout or a built wheel, before Usage."""
    text = (REPO / "README.md").read_text()
    install = text.index("\n## Install\n")
    assert install < text.index("\n## Usage\n")
    section = text[install:text.index("\n## Usage\n")]
    for how in ("uv tool install .", "pipx install .", "pip install .", "uv build --wheel", ".whl",
                "launcher --version", "-V"):
        assert how in section, how


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str, env: dict[str, str]) -> None:
    from launcher import __version__

    assert launcher(flag, env=env, check=True).stdout == f"launcher, version {__version__}\n"
