"""Errors a user can hit, each carrying the one line that explains it."""

from __future__ import annotations


class LauncherError(Exception):
    """A failure with a user-facing message; `exit_code` is what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def line(self) -> str:
        return f"{self.message} ({self.fix})" if self.fix else self.message


class UsageError(LauncherError):
    """Bad input caught before anything runs."""

    exit_code = 2


class BuildError(LauncherError):
    """A runtime tree could not be built; `log` keeps the installer's output."""

    exit_code = 1
    log: str | None = None

    def with_log(self, log: str) -> BuildError:
        self.log = log
        return self


class CommandNotFound(LauncherError):
    exit_code = 127


class CommandNotExecutable(LauncherError):
    exit_code = 126


class ResolutionError(UsageError):
    """Nothing answers the requirements (no such project, no such version,
    conflicting pins): the job stops before its command starts, as `uv run`
    does.  `log` keeps uv's output."""

    log: str | None = None

    def with_log(self, log: str) -> ResolutionError:
        self.log = log
        return self


class LockMismatch(UsageError):
    """The lock file no longer answers the requirements (`uv run --locked`'s exit 2)."""
