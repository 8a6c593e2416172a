"""How every command talks to the user: one prefixed line on stderr, and
LauncherError turned into that line plus its exit code.

Lives below `cli` and `commands/` so both can use it without importing each
other.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from launcher.errors import LauncherError

F = TypeVar("F", bound=Callable[..., Any])


def say(message: str) -> None:
    """Every launcher message: stderr, one line, prefixed.  A closed or broken
    stderr (`2>&-`, /dev/full) loses the line, never the command."""
    # Through sys.stderr, not execute.say's raw write to fd 2: while a live
    # progress line shows (launcher.progress), rich redirects sys.stderr and
    # prints what comes through it above the line instead of tearing it.
    try:
        click.echo(f"launcher: {message}", err=True)
    except (OSError, ValueError):
        _drop_unwritten()


def _drop_unwritten() -> None:
    # What a failed flush left in the buffer would fail again at exit, and
    # turn our exit code into 120: forget it (stderr is broken anyway).
    try:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives until exit
    except OSError:
        pass


def reports_errors(fn: F) -> F:
    """Turn a LauncherError into one clear line and its exit code, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LauncherError as exc:
            say(exc.line())
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]
