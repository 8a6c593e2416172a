"""The committed completion scripts are what the click app generates, and they complete."""

from __future__ import annotations

import os
import pty
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import LAUNCHER, REPO, missing
from support import read_pty_until


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_committed_completions_are_current(shell: str) -> None:
    from launcher.completions import SHELLS, script

    committed = (REPO / "completions" / SHELLS[shell]).read_text()
    assert committed == script(shell), "run 'make completions' and commit the result"


def test_completion_answers_subcommands_and_options() -> None:
    env = dict(os.environ, _LAUNCHER_COMPLETE="bash_complete", COMP_WORDS="launcher run --pre",
               COMP_CWORD="2")
    import click

    from launcher.cli import cli
    from launcher.commands.run import run

    out = subprocess.run([str(LAUNCHER)], env=env, capture_output=True, text=True).stdout
    # Every option of `run` that starts with --pre, and nothing else.
    pre = {o for p in run.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)
           if o.startswith("--pre")}
    assert {"--preload", "--preload-scope"} <= pre
    assert sorted(out.splitlines()) == sorted(f"plain,{o}" for o in pre), out
    env.update(COMP_WORDS="launcher ", COMP_CWORD="1")
    out = subprocess.run([str(LAUNCHER)], env=env, capture_output=True, text=True).stdout
    # Every visible subcommand, each once: "run" in the output would also match "prewarm".
    visible = sorted(name for name, c in cli.commands.items() if not c.hidden)
    assert "run" in visible and sorted(out.splitlines()) == [f"plain,{n}" for n in visible], out


@pytest.fixture
def path_with_tool(tmp_path: Path) -> dict[str, str]:
    """PATH: a directory holding an executable `zzlaunchertool` (and a
    non-executable look-alike), then the launcher's venv."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "zzlaunchertool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    (bindir / "zzlaunchertool-data").write_text("not a command\n")
    (tmp_path / "zzlocal.txt").write_text("")
    return dict(os.environ, PATH=f"{bindir}{os.pathsep}{LAUNCHER.parent}{os.pathsep}/usr/bin:/bin")


def test_bash_completes_the_command_after_the_double_dash(path_with_tool: dict[str, str], tmp_path: Path) -> None:
    """Issue 20: the committed bash script, sourced in a real bash, offers a
    command from PATH after `--`, then file names where no command matches."""
    # compopt works only while bash completes interactively: a function of
    # that name records what the script asks of it instead.
    drive = ("source {script}; compopt() {{ opts=\"$opts $1 $2\"; }}; COMP_WORDS=({words}); "
             "COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); _launcher_completion launcher; "
             "for r in \"${{COMPREPLY[@]}}\"; do echo \"reply $r\"; done; echo \"opts $opts\"")
    script = REPO / "completions" / "launcher.bash"

    def complete(words: str) -> tuple[list[str], str]:
        proc = subprocess.run(["bash", "--norc", "-c", drive.format(script=script, words=words)],
                              env=path_with_tool, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        lines = proc.stdout.splitlines()
        assert lines and lines[-1].startswith("opts"), proc.stderr
        return [x.removeprefix("reply ") for x in lines[:-1]], lines[-1]

    for words in ("launcher run -- zzlaunch", "launcher run --with six -- zzlaunch", "launcher doctor -- zzlaunch"):
        assert complete(words)[0] == ["zzlaunchertool"], words  # not the non-executable look-alike
    # The command's own arguments (and a name no command has) fall back to file names.
    for words in ("launcher run -- zzlaunchertool zzlo", "launcher run -- zzlo"):
        replies, opts = complete(words)
        assert replies == [] and "-o default" in opts, (words, replies, opts)


def _shell(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        missing(f"{name} is not installed (apt-get install {name})")
    return found


def test_fish_completes_the_command_then_files(path_with_tool: dict[str, str], tmp_path: Path) -> None:
    """The committed fish script, sourced in a real fish: `complete -C` is
    what fish would offer at <TAB>."""
    fish = _shell("fish")

    def complete(line: str) -> list[str]:
        script = f"source {REPO / 'completions' / 'launcher.fish'}; complete -C {shlex.quote(line)}"
        proc = subprocess.run([fish, "--no-config", "-c", script], env=path_with_tool, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return [x.split("\t")[0] for x in proc.stdout.splitlines()]

    for line in ("launcher run -- zzlaunch", "launcher run --with six -- zzlaunch", "launcher doctor -- zzlaunch"):
        assert complete(line) == ["zzlaunchertool"], line  # not the non-executable look-alike
    for line in ("launcher run -- zzlaunchertool zzlo", "launcher run -- zzlo"):
        assert complete(line) == ["zzlocal.txt"], line
    assert "run" in complete("launcher ru")


def test_zsh_completes_the_command_then_files(path_with_tool: dict[str, str], tmp_path: Path) -> None:
    """The committed zsh script, loaded by compinit in a real interactive zsh
    on a pty: <TAB> after `--` completes the line to the one command on PATH
    that matches (the look-alike is not offered, or only the common prefix
    would be inserted), and to a file name where no command matches."""
    zsh = _shell("zsh")
    env = dict(path_with_tool, TERM="dumb", HOME=str(tmp_path), ZDOTDIR=str(tmp_path / "no-zdotdir"))
    setup = (f"PS1='> '; autoload -U compinit; compinit -u -D; "
             f"source {REPO / 'completions' / 'launcher.zsh'}; echo READY\n")
    for typed, completed in (("launcher run -- zzlaunch", "launcher run -- zzlaunchertool "),
                             ("launcher run --with six -- zzlaunch", "launcher run --with six -- zzlaunchertool "),
                             ("launcher run -- zzlaunchertool zzlo", "launcher run -- zzlaunchertool zzlocal.txt "),
                             ("launcher run -- zzlo", "launcher run -- zzlocal.txt ")):
        master, slave = pty.openpty()
        proc = subprocess.Popen([zsh, "-f", "-i"], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=tmp_path,
                                start_new_session=True)
        os.close(slave)
        try:
            os.write(master, setup.encode())
            read_pty_until(master, b"READY\r\n")
            os.write(master, typed.encode() + b"\t")
            screen = read_pty_until(master, completed.encode())
            assert completed.encode() in screen, (typed, screen[-300:])
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            os.close(master)
