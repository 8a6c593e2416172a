"""`launcher prewarm --python A --python B ... [--with ...] [--jobs N]`"""

from __future__ import annotations

import sys
from typing import Any

import click

from launcher.commands.options import explicit_flags, runtime_options_saying
from launcher.ui import reports_errors, say
from launcher.words import plural


@click.command("prewarm", short_help="Build runtime trees ahead of time.")
@runtime_options_saying("An interpreter to build runtime trees for: a path, a name on PATH or a venv "
                        "dir (repeatable).")
@click.option("-j", "--jobs", metavar="N", default=None,
              help="Build up to N trees at once (default 1, or LAUNCHER_PREWARM_JOBS; at most 8).")
@click.option("-q", "--quiet", is_flag=True, help="Say nothing unless something fails.")
@click.pass_context
@reports_errors
def command(ctx: click.Context, jobs: str | None, quiet: bool, **params: Any) -> None:
    """Build the runtime trees for each --python ahead of time (e.g. in a CI image).

    Takes the same options and configuration as `launcher run`; a later
    `launcher run` with the same settings finds its trees ready.
    """
    from launcher.prewarm import prewarm
    from launcher.progress import on_terminal

    done = prewarm(explicit_flags(ctx, params), jobs, say=(lambda m: None) if quiet else say,
                   tty=not quiet and on_terminal(sys.stderr))
    failed = [j for j in done if j.state == "failed"]
    if failed:
        say(f"prewarm: {len(failed)} of {plural(len(done), 'runtime tree')} failed; "
            "run 'launcher doctor' for the installer's output")
        sys.exit(1)
