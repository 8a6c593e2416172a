"""`launcher run --supervise`: instead of exec, stay as a small parent.

The launcher becomes a child subreaper, starts the command, forwards the
signals sent to it, and when the command ends (or `--timeout` fires: exit
124, as timeout(1)) ends every process the command left behind, daemonised
ones included: SIGTERM, then SIGKILL after `--kill-after` seconds.  It exits
with the command's status (128+N when a signal N ended it, as a shell says).

Stdlib only and import-light, like `execute`: the warm path runs it too.
No `from __future__ import annotations` (see execute.py).
"""

import posix
import sys
import time

try:
    # The C module: `signal` itself builds its enums at import (enum,
    # functools, collections: ~6 ms of a ~40 ms warm start).
    import _signal as signal
except ImportError:  # pragma: no cover - every CPython has it
    import signal

from launcher import _proctree, execute

# Sent to the launcher by a process (kill, a CI runner cancelling a step):
# passed on to the command.  The terminal's own SIGINT/SIGQUIT already reach
# the command, which shares our process group, and are not sent twice.
FORWARD = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
           signal.SIGUSR2, signal.SIGALRM, signal.SIGWINCH, signal.SIGCONT)
SI_KERNEL = 0x80
TIMED_OUT = 124
DEFAULT_KILL_AFTER = 10.0

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """`2s`, `1.5m`, `500ms`, `10` (seconds) -> seconds; ValueError otherwise."""
    raw = text.strip().lower()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if raw.endswith(unit):
            number, scale = raw[:-len(unit)], _UNITS[unit]
            break
    else:
        number, scale = raw, 1.0
    try:
        value = float(number) * scale
    except ValueError:
        raise ValueError(f"{text!r} is not a duration such as 30s, 1.5m, 2h or 500ms") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{text!r} is not a duration >= 0")
    return value


def _spawn(argv: "list[str]", env: "dict[str, str]") -> "int | None":
    """Start the command with default signal dispositions and an empty mask;
    its pid, or None after saying why it cannot run (the caller exits 126/127)."""
    path = execute.which(argv[0], env.get("PATH"))
    if path is None:
        execute.say(f"command not found: {argv[0]}")
        return None
    try:
        return posix.posix_spawn(path, argv, env, setsigmask=(),
                              setsigdef=(*FORWARD, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD))
    except PermissionError:
        execute.say(f"permission denied: {argv[0]} is not executable")
    except OSError as exc:
        execute.say(f"cannot run {argv[0]}: {exc.strerror or exc}")
    return None


def _status(wait_status: int) -> int:
    code = posix.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def _wait(pid: int, timeout: "float | None") -> "int | None":
    """Forward signals until `pid` ends: its shell-style status, or None at the timeout."""
    waiting = {*FORWARD, signal.SIGCHLD}
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is None:
            info: signal.struct_siginfo | None = signal.sigwaitinfo(waiting)
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            info = signal.sigtimedwait(waiting, left)
        if info is None:
            continue
        if info.si_signo == signal.SIGCHLD:
            status = _reap(pid)
            if status is not None:
                return status
        elif info.si_code != SI_KERNEL:
            try:
                posix.kill(pid, info.si_signo)
            except ProcessLookupError:
                pass


def _reap(pid: int) -> "int | None":
    """Collect every child that has exited (adopted orphans too, so no
    zombie piles up); the command's status once it is among them."""
    while True:
        try:
            info = posix.waitid(posix.P_ALL, 0, posix.WEXITED | posix.WNOHANG | posix.WNOWAIT)
        except ChildProcessError:  # pragma: no cover - the command is always our child
            return 0
        if info is None or info.si_pid == 0:
            return None
        _, status = posix.waitpid(info.si_pid, 0)
        if info.si_pid == pid:
            return _status(status)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def run(argv: "list[str]", env: "dict[str, str]", timeout: "float | None" = None,
        kill_after: "float | None" = None) -> int:
    """Run `argv` supervised; the exit status to leave with."""
    _flush()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # an inherited SIG_IGN would reap for us
    _proctree.become_subreaper()
    signal.pthread_sigmask(signal.SIG_BLOCK, {*FORWARD, signal.SIGCHLD})
    pid = _spawn(argv, env)
    if pid is None:
        return 127 if execute.which(argv[0], env.get("PATH")) is None else 126
    status = _wait(pid, timeout)
    grace = DEFAULT_KILL_AFTER if kill_after is None else kill_after
    if status is None:
        ended = _proctree.end_tree(grace)
        execute.say(f"the command ran past its timeout of {timeout:g}s; ended {_processes(ended)}")
        return TIMED_OUT
    # A subreaper without children has no descendants left at all: the
    # common case costs one waitid, no /proc scan.  (Without the prctl, what
    # daemonised went to init and cannot be found.)
    if _proctree.has_children():
        ended = _proctree.end_tree(grace)
        if ended:
            execute.say(f"ended {_processes(ended)} the command left behind")
    return status


def leave(status: int) -> None:
    """Exit with `status` at once: the command has ended and nothing of ours
    is pending, so the interpreter's own teardown (a few ms of every
    supervised run) is skipped; stdio is flushed first."""
    _flush()
    posix._exit(status)


def _processes(n: int) -> str:
    return f"{n} process" + ("" if n == 1 else "es")
