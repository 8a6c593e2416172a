"""The last step: build the child's environment and exec the command.

Stdlib only and import-light: the warm fast path (`_fastrun`) and the full
path share these functions, so both behave identically.  `exec` keeps our
pid, so exit codes, signals and stdio pass straight through.

No `from __future__ import annotations`: importing `__future__` costs the
warm path more than this whole module (annotations that need it are quoted).
Nor `os`: under the `launcher` script's -S nothing has imported it yet, and
its import (collections.abc's classes) costs more than the whole warm path;
the builtin `posix` module has every call the exec needs.
"""

import posix
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

# Every variable this launcher sets for its children.  A nested launch
# replaces all of them (the inner launch owns its subtree) except the run id.
OURS = (
    "LAUNCHER_BOOTSTRAP", "LAUNCHER_CACHE_DIR", "LAUNCHER_SPEC", "LAUNCHER_PRIORITY",
    "LAUNCHER_SELF_PYTHON", "LAUNCHER_SHIM_DIR", "LAUNCHER_PRELOAD_LIBS",
    "LAUNCHER_PRELOAD_SCOPE", "LAUNCHER_PRELOAD_MISSING", "LAUNCHER_FAILURE_TTL",
    "LAUNCHER_RECORD", "LAUNCHER_QUIET", "LAUNCHER_VERBOSE", "LAUNCHER_REPORTED", "LAUNCHER_BUILD",
    # per-process marks of an outer launch's shim and re-exec
    "LAUNCHER_SHIM", "LAUNCHER_SHIM_PID", "LAUNCHER_ORIG_LD_PRELOAD", "LAUNCHER_REEXEC_PID",
    "LAUNCHER_USER_PYTHON_EXEC",
)


def new_run_id() -> str:
    import time

    return f"{time.time_ns():x}-{posix.getpid()}"


def read_environ() -> dict[str, str]:
    """os.environ's contents without importing os: decoded the same way."""
    enc, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    return {k.decode(enc, errors): v.decode(enc, errors) for k, v in posix.environ.items()}


def child_env(environ: "Mapping[str, str]", ours: dict[str, str],
              ld_preload: str | None = None) -> dict[str, str]:
    """`environ` with our variables applied.

    PYTHONPATH keeps every user entry, in order, with our bootstrap first and
    exactly once (an outer launch's bootstrap is dropped).  Nothing else of
    the caller's changes, except LD_PRELOAD when preloads apply to all.
    """
    env = dict(environ)
    old_boot = env.get("LAUNCHER_BOOTSTRAP")
    for k in OURS:
        env.pop(k, None)
    if old_boot and "/shims/" in env.get("PYTHON_EXEC", ""):
        # An outer launch's shim: children of this launch use ours (or none),
        # and a PYTHON_EXEC the user set names their interpreter again.
        user = environ.get("LAUNCHER_USER_PYTHON_EXEC")
        if user:
            env["PYTHON_EXEC"] = user
        else:
            env.pop("PYTHON_EXEC")
    env.update(ours)
    boot = ours["LAUNCHER_BOOTSTRAP"]
    user = environ.get("PYTHONPATH")
    kept = [p for p in user.split(":") if p != boot and p != old_boot] if user else []
    env["PYTHONPATH"] = ":".join([boot, *kept]) if kept else boot
    env.setdefault("LAUNCHER_RUN_ID", new_run_id())
    if ld_preload is not None:
        cur = environ.get("LD_PRELOAD")
        env["LD_PRELOAD"] = ld_preload + (":" + cur if cur else "")
    return env


def say(message: str) -> None:
    """One line with one os.write to fd 2: stderr may be closed (`2>&-`) or
    broken (/dev/full), and neither may stop the command from running."""
    try:
        posix.write(2, f"launcher: {message}\n".encode("utf-8", "replace"))
    except OSError:
        pass


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


def exec_command(argv: list[str], env: dict[str, str]) -> int:
    """Replace this process with `argv`; return an exit code only on failure."""
    for stream in (sys.stdout, sys.stderr):  # None when the caller closed it
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    try:
        _execvpe(argv[0], argv, env)
    except FileNotFoundError:
        say(f"command not found: {argv[0]}")
        return 127
    except PermissionError:
        say(f"permission denied: {argv[0]} is not executable")
        return 126
    except OSError as exc:
        say(f"cannot run {argv[0]}: {exc.strerror or exc}")
        return 126
    return 0  # pragma: no cover - exec does not return


def _execvpe(file: str, argv: list[str], env: dict[str, str]) -> None:
    """os.execvpe without os, nor the `import warnings` of its PATH lookup
    (os.get_exec_path): a few tenths of a millisecond of every warm start.
    The same search and the same error: the first that is not "no such
    file", else the last."""
    if "/" in file:
        posix.execve(file, argv, env)
    path = env.get("PATH")
    first: OSError | None = None
    last: OSError = FileNotFoundError(2, "No such file or directory", file)
    for d in ("/bin:/usr/bin" if path is None else path).split(":"):  # os.defpath, os.pathsep
        try:
            # os.path.join(d, file): an empty entry is the current directory
            posix.execve(d + file if not d or d.endswith("/") else d + "/" + file, argv, env)
        except (FileNotFoundError, NotADirectoryError) as exc:
            last = exc
        except OSError as exc:
            last = exc
            first = first or exc
    raise first or last


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
