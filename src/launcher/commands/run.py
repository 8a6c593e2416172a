"""`launcher run [OPTIONS] [--] COMMAND [ARGS]...`"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from launcher import execute
from launcher.commands.options import complete_command, explicit_flags, runtime_options
from launcher.ui import reports_errors, say


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from launcher.supervise import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command(context_settings={"allow_interspersed_args": False},
               short_help="Run a command with runtime packages and preloads.")
@runtime_options
@click.option("-q", "--quiet", is_flag=True, help="Say nothing unless something fails.")
@click.option("-v", "--verbose", is_flag=True, help="Say what is prepared.")
@click.option("--refresh", is_flag=True, help="Resolve the requirements again and forget remembered "
                                              "build failures.")
@click.option("--supervise", is_flag=True, default=None,
              help="Stay as the command's parent instead of exec: forward signals, and when it ends "
                   "end every process it left behind (daemons too).")
@click.option("--timeout", metavar="DURATION", callback=_duration,
              help="End the command (exit 124) when it runs longer, e.g. 30s, 5m (implies --supervise).")
@click.option("--kill-after", metavar="DURATION", callback=_duration,
              help="SIGKILL what SIGTERM did not end after this long (default 10s; implies --supervise).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED, shell_complete=complete_command)
@click.pass_context
@reports_errors
def run(ctx: click.Context, command: tuple[str, ...], quiet: bool, verbose: bool, refresh: bool,
        supervise: bool | None, timeout: float | None, kill_after: float | None, **params: Any) -> None:
    """Run COMMAND so every Python it starts gets the runtime and preloads.

    Every descendant interpreter (any Python COMMAND starts, however deep)
    imports the --with packages from a runtime tree (installed once per
    interpreter ABI, in the cache) and gets the --preload libraries through
    the shim (a tiny wrapper that starts Python with them set).

    COMMAND is exec'd: its exit code, signals and stdio are its own.
    With --supervise (or `supervise = true`, LAUNCHER_SUPERVISE=1) the
    launcher stays as its parent instead, forwards signals, exits with its
    status and ends whatever it left behind; --timeout ends it (exit 124).

    A build that takes a while shows progress on stderr (a live line on a
    terminal); -q says nothing unless something fails, -v says what was
    prepared, and on a warm start that the prepared plan was reused.
    """
    from launcher import memo
    from launcher.errors import LauncherError
    from launcher.plan import prepare
    from launcher.progress import activity_for, on_terminal

    # -q silences progress and notes only: a failure is always said, once.
    # On a terminal the live line vanishes when its build ends, so what was
    # built is said after it, as under -v.
    try:
        flags = explicit_flags(ctx, params)
        if supervise or timeout is not None or kill_after is not None:
            flags["supervise"] = True
        prepared = prepare(list(command), flags=flags, say=say,
                           verbose=verbose or (not quiet and on_terminal(sys.stderr)),
                           activity=activity_for(sys.stderr, quiet=quiet, say=say),
                           note=(lambda m: None) if quiet else say, refresh=refresh, quiet=quiet)
    except LauncherError:
        raise
    except Exception as exc:  # a bug or an environment we did not foresee: never the command's problem
        say(f"internal error ({type(exc).__name__}: {exc}); the command runs without the launcher. "
            "Please report it, with 'launcher doctor' output.")
        sys.exit(execute.exec_command(list(command), dict(os.environ)))
    if verbose:
        for pi in prepared.interpreters:
            say(f"{pi.interpreter.executable}: {pi.interpreter.abi_key}, runtime "
                f"{pi.tree.name if pi.tree else '-'} ({pi.state})")
        for note in prepared.notes:
            say(note)
        say(f"{'supervise' if prepared.settings.supervise else 'exec'} {' '.join(prepared.argv)}")
    supervised = (timeout, kill_after) if prepared.settings.supervise else None
    if supervised is not None:
        # Imported before remember(), which caches the bytecode of what is loaded.
        from launcher import supervise as supervisor
    # A -v run with notes (a shadowed requirement) is not memoised: the warm
    # path could not repeat them, and -v is asked to say them every time.
    if not prepared.warnings and prepared.cache_writable and not (verbose and prepared.notes) and not refresh \
            and os.environ.get("LAUNCHER_RUN_ID") is None \
            and sys.argv[1:2] == ["run"]:  # the fast path keys on exactly this argv
        memo.remember(sys.argv[1:], os.environ, os.getcwd(), prepared.argv, prepared.ours, prepared.ld_preload,
                          prepared.watch, str(prepared.layout.root), prepared.watch_trees, supervised)
    if supervised is not None:
        supervisor.leave(supervisor.run(prepared.argv, prepared.env, timeout, kill_after))
    sys.exit(prepared.exec())
