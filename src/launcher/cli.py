"""The click application: one module per subcommand under `commands/`."""

from __future__ import annotations

import os
import sys

import click

from launcher import __version__
from launcher.ui import say


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Ctrl-C (e.g. while waiting for another process's build): die of
            # SIGINT as an interrupted program does -- 130 in a shell -- with
            # nothing printed; click would print a blank line and exit 1.
            # Locks and temp dirs were released as the exception unwound.
            die_of_sigint()
            raise


def die_of_sigint() -> None:
    import signal

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Shell completion: 'launcher completions bash|zsh|fish' (see the README).")
@click.version_option(__version__, "-V", "--version", prog_name="launcher")
def cli() -> None:
    """Give every Python process of a job ABI-matched runtime packages and native preloads.

    \b
    Terms used below:
      descendant interpreter  any Python the command starts, however deep
      runtime tree            the --with packages, installed once per
                              interpreter ABI into the cache
      shim                    a tiny wrapper that starts Python with the
                              preloads (LD_PRELOAD) set for it alone
    """


def _register() -> None:
    from launcher.commands import (
        build,
        cache_cmd,
        completions_cmd,
        config_cmd,
        doctor,
        lock,
        prewarm,
        run,
        runs,
    )

    for command in (run.run, doctor.command, config_cmd.command, cache_cmd.command,
                    prewarm.command, lock.command, runs.command, completions_cmd.command, build.build):
        cli.add_command(command)


_register()


def short_help() -> str:
    """What `launcher` alone prints: the usage, one line per command, where to read more."""
    ctx = click.Context(cli, info_name="launcher")
    import inspect

    text = inspect.cleandoc(cli.help or "").replace("\b\n", "")  # (\b: click's "keep my lines")
    lines = ["Usage: launcher COMMAND [ARGS]...", "", *("  " + x if x else x for x in text.splitlines()),
             "", "Commands:"]
    names = [n for n in cli.list_commands(ctx) if not (cli.commands[n].hidden)]
    width = max(len(n) for n in names)
    for name in names:
        lines.append(f"  {name:<{width}}  {cli.commands[name].get_short_help_str(limit=70)}")
    lines += ["", "Start with: launcher run --with REQ -- python script.py",
              "More: launcher --help, launcher COMMAND --help"]
    return "\n".join(lines) + "\n"


def main(args: list[str]) -> None:
    """Run the click app; usage errors become one `launcher:` line and exit 2."""
    if not args and "_LAUNCHER_COMPLETE" not in os.environ:  # (shell completion runs bare too)
        # Not an error: someone trying the command for the first time.
        click.echo(short_help(), nl=False)
        sys.exit(0)
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
