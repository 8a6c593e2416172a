"""`launcher completions bash|zsh|fish`: print the shell completion script."""

from __future__ import annotations

import click

from launcher.completions import SHELLS, script


@click.command("completions", short_help="Print the shell completion script.")
@click.argument("shell", type=click.Choice(sorted(SHELLS)), required=False)
@click.pass_context
def command(ctx: click.Context, shell: str | None) -> None:
    """Print the completion script for SHELL on stdout.

    \b
    bash: launcher completions bash > ~/.local/share/bash-completion/completions/launcher
    zsh:  launcher completions zsh > "${fpath[1]}/_launcher"
    fish: launcher completions fish > ~/.config/fish/completions/launcher.fish
    """
    if shell is None:
        # One line naming the shells, not click's list of choices.
        raise click.UsageError(f"usage: launcher completions {'|'.join(sorted(SHELLS))}", ctx)
    click.echo(script(shell, ctx.find_root().command), nl=False)
