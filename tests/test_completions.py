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
    out = subprocess.run([str(LAUNCHER)], env=env, capture_output=True, text=True).stdout
    assert "--preload" in out and "--preload-scope" in out
    env.update(COMP_WORDS="launcher ", COMP_CWORD="1")
    out = subprocess.run([str(LAUNCHER)], env=env, capture_output=True, text=True).stdout
    assert "run" in out
