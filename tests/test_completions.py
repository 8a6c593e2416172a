"""The committed completion scripts are what the click app generates, and they complete."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import LAUNCHER, REPO


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
