"""The last step: build the child's environment and exec the command.

The warm path (the top-level `_launcher_warm`, loaded without this package)
and the full path share these functions, so both behave identically: the
child's environment and the exec live there, and are the same objects here.
`exec` keeps our pid, so exit codes, signals and stdio pass straight through.

No `from __future__ import annotations`, nor `os` (see _launcher_warm):
`launcher run --supervise`'s warm start imports this module.
"""

import posix
import sys

from _launcher_warm import OURS, child_env, exec_command, new_run_id, read_environ, say

__all__ = ["OURS", "child_env", "exec_command", "guard_stdio", "new_run_id", "read_environ", "say", "which"]

def guard_stdio() -> None:
    """Hold closed stdio fds (`>&-`, `2>&-`) with /dev/null until exec.

    Close-on-exec, so the command still starts with them closed, as in a bare
    run; meanwhile no file the launcher opens can land on fd 1 or 2, and
    writes to sys.stdout / sys.stderr go nowhere instead of failing.
    """
    import os

    try:
        for fd in (0, 1, 2):
            try:
                os.fstat(fd)
            except OSError:
                # The lowest free fd is `fd` itself: the lower ones are open by now.
                null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                if null != fd:  # pragma: no cover - only if a lower fd closed meanwhile
                    os.dup2(null, fd, inheritable=False)
                    os.close(null)
        for name in ("stdout", "stderr"):
            if getattr(sys, name) is None:
                setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
    except OSError:
        pass  # no /dev/null (a bare chroot): carry on, every write of ours tolerates it


def which(name: str, path: "str | None") -> "str | None":
    """Resolve `name` the way execvp will (so 127/126 are decided up front)."""
    if "/" in name:
        return name if _stat_mode(name) is not None else None
    found_not_exec = None
    for d in ("/bin:/usr/bin" if path is None else path).split(":"):
        d = d or "."
        cand = d + name if d.endswith("/") else d + "/" + name
        if (_stat_mode(cand) or 0) & 0o170000 == 0o100000:  # a regular file
            if posix.access(cand, posix.X_OK):
                return cand
            found_not_exec = found_not_exec or cand
    return found_not_exec


def _stat_mode(path: str) -> "int | None":
    try:
        return posix.stat(path).st_mode
    except (OSError, ValueError):  # os.path.exists/isfile say False for both
        return None
