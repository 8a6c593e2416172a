"""`launcher lock [--python P ...] [-o FILE]`"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from launcher.commands.options import explicit_flags, runtime_options_saying
from launcher.ui import reports_errors, say
from launcher.words import plural


@click.command("lock", short_help="Pin the job's runtime packages per ABI in a lock file.")
@runtime_options_saying("An interpreter of the job to resolve for: a path, a name on PATH or a venv dir "
                        "(repeatable; default python3).")
@click.option("-o", "--output", metavar="FILE", default="launcher.lock", show_default=True,
              help="Where to write the lock.")
@click.option("-q", "--quiet", is_flag=True, help="Say nothing unless something fails.")
@click.pass_context
@reports_errors
def command(ctx: click.Context, output: str, quiet: bool, **params: Any) -> None:
    """Resolve the requirements for every --python together and write the pins per ABI.

    Takes the same options and configuration as `launcher run`.  Commit the
    file; `launcher run --lock FILE` (or `lock = "FILE"` in [tool.launcher])
    then installs exactly these versions without resolving, and refuses
    (exit 2) once the requirements no longer match it.
    """
    from launcher.config import current_dir
    from launcher.lockfile import lock_job

    cwd = current_dir()
    lock, lines = lock_job(explicit_flags(ctx, params), cwd / output, cwd=cwd, environ=dict(os.environ))
    for line in lines:
        say(line)
    if not quiet:
        say(f"locked {plural(len(lock.pins), 'package')} for {plural(len(lock.abi_pins), 'ABI')} in {Path(output)}")
