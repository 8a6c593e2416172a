"""The click application: one module per subcommand under `commands/`."""

from __future__ import annotations

import sys

import click

from launcher import __version__
from launcher.ui import say


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="launcher")
def cli() -> None:
    """Give every Python process of a job ABI-matched runtime packages and native preloads."""


def _register() -> None:
    from launcher.commands import build, cache_cmd, config_cmd, doctor, prewarm, run

    for command in (run.run, doctor.command, config_cmd.command, cache_cmd.command,
                    prewarm.command, build.build):
        cli.add_command(command)


_register()


def main(args: list[str]) -> None:
    """Run the click app; usage errors become one `launcher:` line and exit 2."""
    try:
        rv = cli.main(args=args, prog_name="launcher", standalone_mode=False)
    except click.exceptions.UsageError as exc:
        where = f"launcher {exc.ctx.info_name} --help" if exc.ctx and exc.ctx.parent else "launcher --help"
        say(f"{exc.format_message()} (see '{where}')")
        sys.exit(2)
    except click.exceptions.ClickException as exc:
        say(exc.format_message())
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        say("aborted")
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
