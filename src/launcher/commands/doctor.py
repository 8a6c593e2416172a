"""`launcher doctor [OPTIONS] [-- COMMAND]`: explain what is wrong, why, and the fix."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from launcher.commands.options import complete_command, explicit_flags, runtime_options_saying
from launcher.ui import reports_errors


@click.command("doctor", context_settings={"allow_interspersed_args": False},
               short_help="Explain what is wrong with a setup, and the fix.")
@runtime_options_saying("An interpreter to check: a path, a name on PATH or a venv dir (repeatable).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report as JSON (schema: launcher.doctor.models.Report; see --schema).")
@click.option("--schema", is_flag=True, help="Print the JSON Schema of --json and exit.")
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, metavar="[-- COMMAND [ARGS]...]",
                shell_complete=complete_command)
@click.pass_context
@reports_errors
def command(ctx: click.Context, argv: tuple[str, ...], as_json: bool, schema: bool, **params: Any) -> None:
    """Check this machine, the launcher and its cache, the interpreters given with
    --python (a python or a venv dir), and, after `--`, what `launcher run [OPTIONS]
    COMMAND` would do.  Every finding is ok, warn or fail, with the reason and a fix.

    Exit status: 0 when nothing fails, 1 when something does.
    """
    from launcher.doctor.models import report_schema

    if schema:
        click.echo(json.dumps(report_schema(), indent=2))
        return
    from launcher.doctor.runner import diagnose

    environ = dict(os.environ)
    # The caller's LD_PRELOAD is checked, not inherited by the probes and
    # ld.so/uv runs doctor starts (a bad one would make them fail instead).
    os.environ.pop("LD_PRELOAD", None)
    report = diagnose(list(argv), explicit_flags(ctx, params), environ=environ)
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        from launcher.doctor import render

        if render.use_rich(sys.stdout):
            render.rich(report, sys.stdout)
        else:
            sys.stdout.write(render.plain(report))
    sys.stdout.flush()
    sys.exit(report.exit_code)
