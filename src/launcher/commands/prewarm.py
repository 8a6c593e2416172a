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
@click.option("--refresh", is_flag=True, help="Resolve the requirements again and forget remembered "
                                              "build failures.")
@click.option("--json", "as_json", is_flag=True,
              help="Print each tree's outcome as JSON on stdout (progress stays off).")
@click.pass_context
@reports_errors
def command(ctx: click.Context, jobs: str | None, quiet: bool, refresh: bool, as_json: bool,
            **params: Any) -> None:
    """Build the runtime trees (the --with packages, installed once per
    interpreter ABI) for each --python ahead of time (e.g. in a CI image).

    Takes the same options and configuration as `launcher run`; a later
    `launcher run` with the same settings finds its trees ready.
    """
    from launcher.prewarm import prewarm
    from launcher.progress import on_terminal

    quiet = quiet or as_json
    done = prewarm(explicit_flags(ctx, params), jobs, say=(lambda m: None) if quiet else say,
                   tty=not quiet and on_terminal(sys.stderr), refresh=refresh)
    failed = [j for j in done if j.state == "failed"]
    if as_json:
        import json
        from dataclasses import asdict

        click.echo(json.dumps({"trees": [asdict(j) for j in done], "failed": len(failed)}, indent=2))
    if failed:
        say(f"prewarm: {len(failed)} of {plural(len(done), 'runtime tree')} failed; "
            "run 'launcher doctor' for the installer's output")
        sys.exit(1)
