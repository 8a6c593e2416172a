"""Rows for issue 11: what preloaded children cost now that sys.executable
stays the real interpreter (the shim reaches children only through the
multiprocessing executable, PYTHON_EXEC and the gate's re-exec)."""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any

from _measure import Cmd, CommandFailed, paired
from _workspace import Workspace

if TYPE_CHECKING:
    from _rows import Row, Scale

JEMALLOC = "libjemalloc.so.2"

# A parent that starts `n` spawn workers one after the other (their start-up
# is what is measured: the workers do nothing).
SPAWN = '''\
import json, multiprocessing as mp, os, sys


def report(q):
    with open("/proc/self/maps") as f:
        q.put([os.getpid(), "/libjemalloc" in f.read(), os.environ.get("LAUNCHER_REEXEC_PID") == str(os.getpid()),
               sys.executable])


def nothing():
    pass


if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    if sys.argv[1] == "--check":
        q = ctx.Queue()
        p = ctx.Process(target=report, args=(q,))
        p.start()
        print(json.dumps(q.get(timeout=60)))
        p.join()
        sys.exit(0)
    for _ in range(int(sys.argv[1])):
        p = ctx.Process(target=nothing)
        p.start()
        p.join()
        if p.exitcode:
            sys.exit(1)
'''

CHECK_CHILD = ("import json, os, sys; m = open('/proc/self/maps').read(); "
               "print(json.dumps(['/libjemalloc' in m, os.environ.get('LAUNCHER_REEXEC_PID') == str(os.getpid()), "
               "sys.executable]))")
DUMP_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


def _preloaded(ws: Workspace, py: str) -> Any:
    from launcher.errors import LauncherError

    try:
        return ws.prepare(py, preload=["jemalloc"])
    except LauncherError as exc:
        raise CommandFailed(exc.line()) from None


def _bare_env(ws: Workspace) -> dict[str, str]:
    return dict(ws.base_env(), LD_PRELOAD=JEMALLOC)


def _check_bare(ws: Workspace, argv: list[str], py: str, what: str) -> None:
    """Side B is what it claims: jemalloc mapped by LD_PRELOAD alone, no re-exec, no gate."""
    got = subprocess.run(argv, env=_bare_env(ws), capture_output=True, text=True, timeout=120)
    report = json.loads(got.stdout) if got.returncode == 0 and got.stdout.startswith("[") else None
    if report is None or report[-3:] != [True, False, py]:
        raise CommandFailed(f"the bare {what} with LD_PRELOAD={JEMALLOC} is not [jemalloc mapped, no re-exec, "
                            f"{py}]: {got.stdout.strip()} {got.stderr.strip()[-300:]}")


def _parent_and_children(ws: Workspace, scale: Scale, row: Row, name: str, text: str, what: str,
                         whats: str, how: str) -> Row:
    """A preloaded parent (started through its shim, as `launcher run` does)
    starting 4 Python children, against the same parent bare with LD_PRELOAD.
    `--check` first: a child reports [jemalloc mapped, re-exec'd, sys.executable]."""
    py = ws.venv("bare311")
    prepared = _preloaded(ws, py)
    script = ws.work / name
    script.write_text(text)
    shim = prepared.argv[0]
    got = subprocess.run([shim, str(script), "--check"], env=prepared.env, capture_output=True, text=True,
                         timeout=120)
    child = json.loads(got.stdout) if got.returncode == 0 and got.stdout.startswith("[") else None
    if child is None or child[-3:] != [True, False, py]:
        raise CommandFailed(f"the {what} did not start through the shim with sys.executable {py}: "
                            f"{got.stdout.strip()} {got.stderr.strip()[-300:]}")
    n = 4
    a = Cmd([shim, str(script), str(n)], prepared.env)
    b = Cmd([py, str(script), str(n)], _bare_env(ws))
    _check_bare(ws, [py, str(script), "--check"], py, what)
    row.note = (f"a parent and {n} {whats}, one after the other; each maps jemalloc, starts through the "
                f"shim ({how}) without a re-exec, and has the real sys.executable")
    row.summary = paired(a, b, pairs=scale.fanout).summary()
    return row.judge()


def preload_spawn(ws: Workspace, scale: Scale, row: Row) -> Row:
    return _parent_and_children(ws, scale, row, "spawn_workers.py", SPAWN, "spawn worker", "spawn workers",
                                "the multiprocessing executable")


CHILDREN = f'''\
import subprocess, sys

CHECK = {CHECK_CHILD!r}

if __name__ == "__main__":
    if sys.argv[1] == "--check":
        sys.stdout.write(subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                                        check=True).stdout)
        sys.exit(0)
    for _ in range(int(sys.argv[1])):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
'''


def preload_sys_executable_child(ws: Workspace, scale: Scale, row: Row) -> Row:
    return _parent_and_children(ws, scale, row, "sysexec_children.py", CHILDREN,
                                "`subprocess.run([sys.executable, '-c', 'pass'])` child",
                                "`subprocess.run([sys.executable, '-c', 'pass'])` children", "argv unchanged")


def preload_reexec_child(ws: Workspace, scale: Scale, row: Row) -> Row:
    py = ws.venv("bare311")
    prepared = _preloaded(ws, py)
    # What a Python child started any other way (by name from a shell, os.exec*,
    # os.posix_spawn) inherits from a job's Python process: this environment.
    dumped = subprocess.run([*prepared.argv[:-1], DUMP_ENV], env=prepared.env, capture_output=True,
                            text=True, timeout=120, check=True)
    child_env = json.loads(dumped.stdout)
    got = subprocess.run([py, "-c", CHECK_CHILD], env=child_env, capture_output=True, text=True, timeout=120)
    if got.returncode != 0 or json.loads(got.stdout or "null") != [True, True, py]:
        raise CommandFailed(f"the child did not re-exec itself preloaded: "
                            f"{got.stdout.strip()} {got.stderr.strip()[-300:]}")
    a = Cmd([py, "-c", "pass"], child_env)
    b = Cmd([py, "-c", "pass"], _bare_env(ws))
    _check_bare(ws, [py, "-c", CHECK_CHILD], py, "child")
    row.note = ("the child re-execs itself once, preloaded (jemalloc mapped, sys.executable "
                "unchanged): the interpreter starts twice, so the floor is a python exec'ing python "
                "(1.90× here, DESIGN.md); budget 2.3")
    row.summary = paired(a, b, pairs=scale.start).summary()
    return row.judge()


def rows() -> list[tuple[Row, Any]]:
    from _rows import Row

    return [
        (Row("preload-spawn", "preloads: spawn workers (3.11, `--preload jemalloc`)",
             "a preloaded parent starting 4 spawn workers (through the shim, via the multiprocessing "
             "executable)", f"the same, bare with `LD_PRELOAD={JEMALLOC}`", 1.10), preload_spawn),
        (Row("preload-sysexec-child", "preloads: `subprocess.run([sys.executable, ...])` children (3.11)",
             "a preloaded parent running 4 `sys.executable -c pass` children (through the shim, argv "
             "unchanged)", f"the same, bare with `LD_PRELOAD={JEMALLOC}`", 1.30), preload_sys_executable_child),
        (Row("preload-reexec", "preloads: a Python child started by name or os.exec* (3.11)",
             "`python -c pass` with the environment a job's Python child inherits (re-exec, preloaded)",
             f"bare `python -c pass` with `LD_PRELOAD={JEMALLOC}`", 2.3), preload_reexec_child),
    ]
