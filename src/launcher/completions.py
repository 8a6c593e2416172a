"""Shell completion scripts, generated from the click app itself.

`python -m launcher.completions DIR` writes launcher.bash, launcher.zsh and
launcher.fish; a test checks the committed copies in completions/ are current.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.shell_completion import get_completion_class

SHELLS = {"bash": "launcher.bash", "zsh": "launcher.zsh", "fish": "launcher.fish"}


def script(shell: str, app: click.Command | None = None) -> str:
    """The script for `shell`; `app` defaults to the launcher's click app."""
    if app is None:
        from launcher.cli import cli

        app = cli
    cls = get_completion_class(shell)
    assert cls is not None, shell
    return cls(app, {}, "launcher", "_LAUNCHER_COMPLETE").source()


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for shell, name in SHELLS.items():
        path = directory / name
        path.write_text(script(shell), encoding="utf-8")
        out.append(path)
    return out


if __name__ == "__main__":
    for p in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "completions")):
        print(p)
