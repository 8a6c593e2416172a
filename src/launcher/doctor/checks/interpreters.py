"""Which interpreters the command will run, and who each one is (via the cached probe)."""

from __future__ import annotations

import os
from pathlib import Path

from launcher.cache import CacheLayout
from launcher.doctor.checks.command import CommandAnalysis
from launcher.doctor.context import Subject
from launcher.doctor.models import Finding, fail, ok
from launcher.errors import LauncherError
from launcher.probe import Interpreter, interpreter_path, probe


def collect(pythons: list[str], python_source: str, command: CommandAnalysis | None, cwd: Path,
            search_path: str | None = None) -> list[Subject]:
    """--python entries (a venv dir stands for its python, a name is looked up
    on PATH), then the command's own interpreter."""
    origin = "--python" if python_source in ("command line", "default") else f"python in {python_source}"
    out: dict[str, Subject] = {}
    for given in pythons:
        path = interpreter_path(given, cwd=cwd, search_path=search_path)
        out.setdefault(path, Subject(path=path, origin=origin))
    if command is not None and command.interpreter:
        path = os.path.abspath(command.interpreter)
        if path in out:
            out[path].origin += f"; {command.origin}"
        else:
            out[path] = Subject(path=path, origin=command.origin or "the command")
    return list(out.values())


def identify(subject: Subject, layout: CacheLayout) -> list[Finding]:
    """Probe the interpreter (cached by path, mtime and size; sets `subject.interp`) and say who it is."""
    if os.path.isdir(subject.path):
        return [fail("interpreter", f"{subject.path} is a directory without bin/python",
                     "give a venv directory or the path of a python executable", path=subject.path)]
    try:
        interp = probe(subject.path, layout)
    except LauncherError as exc:
        return [fail("interpreter", exc.message, exc.fix, path=subject.path)]
    subject.interp = interp
    return [_identity(interp, subject.origin)]


def _identity(i: Interpreter, origin: str) -> Finding:
    where = f"venv of {i.base_prefix}" if i.is_venv else f"installed in {i.prefix}"
    libc = "musl" if i.musl else (i.libc or "unknown libc")
    message = (f"{i.label} ({i.abi_key}); {libc}, {i.machine} {i.pointer_bits}-bit; {where}; "
               f"checked because: {origin}")
    version = tuple(i.version_info or [int(x) for x in i.version.split(".")[:2]])
    if i.implementation == "cpython" and version < (3, 8):
        return fail("interpreter", f"{message}; the launcher's gate needs CPython 3.8 or newer",
                    "use CPython 3.8+ (or PyPy) for this job", abi_key=i.abi_key, version=i.version)
    return ok("interpreter", message, abi_key=i.abi_key, version=i.version,
              implementation=i.implementation, free_threaded=i.gil_disabled, libc=i.libc,
              machine=i.machine, origin=origin)
