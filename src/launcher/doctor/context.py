"""What every check may look at: the settings, the cache, the command, the interpreters."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from launcher.cache import CacheLayout
from launcher.config import Settings
from launcher.doctor.checks.command import CommandAnalysis
from launcher.doctor.models import Finding, InterpreterFacts
from launcher.probe import Interpreter
from launcher.spec import Spec


@dataclass
class Subject:
    """An interpreter doctor looks at, and why."""

    path: str
    origin: str
    interp: Interpreter | None = None
    findings: list[Finding] = field(default_factory=list)

    def facts(self) -> InterpreterFacts:
        i = self.interp
        if i is None:
            return InterpreterFacts(path=self.path, origin=self.origin)
        return InterpreterFacts(
            path=i.executable, origin=self.origin, realpath=i.realpath, implementation=i.implementation,
            version=i.version, abi_key=i.abi_key, free_threaded=i.gil_disabled, debug=i.py_debug,
            machine=i.machine, pointer_bits=i.pointer_bits, libc=i.libc, musl=i.musl,
            is_venv=i.is_venv, prefix=i.prefix, base_prefix=i.base_prefix,
            site_packages=list(i.site_packages), sitecustomize=i.sitecustomize)


@dataclass
class Context:
    environ: dict[str, str]  # what the command's interpreters see
    cwd: Path
    settings: Settings
    sources: dict[str, str]
    config_file: Path | None
    layout: CacheLayout
    spec: Spec | None
    command: CommandAnalysis | None
    subjects: list[Subject] = field(default_factory=list)

    @property
    def interpreters(self) -> list[Interpreter]:
        return [s.interp for s in self.subjects if s.interp is not None]


def abi_tag(interp: Interpreter) -> str:
    """`cp313t`, `cp311`, `pypy311-pp73-...`: how an extension suffix names this ABI."""
    from launcher.tree import built_for

    return built_for(interp.ext_suffixes[0]).split(" (")[0] if interp.ext_suffixes else interp.abi_key


def is_launcher_bootstrap(entry: str, environ: dict[str, str]) -> bool:
    """A PYTHONPATH entry that is the gate dir of an outer `launcher run`."""
    if entry == environ.get("LAUNCHER_BOOTSTRAP"):
        return True
    gate = os.path.join(entry, "sitecustomize.py")
    if os.path.basename(os.path.dirname(entry.rstrip("/"))) != "bootstrap":
        return False
    try:
        with open(gate, "rb") as f:
            return f.read(20).startswith(b"# launcher gate")
    except OSError:
        return False


def user_pythonpath(environ: dict[str, str], cwd: Path) -> list[str]:
    """The user's PYTHONPATH entries, absolute, without the launcher's own gate dir."""
    out = []
    for entry in environ.get("PYTHONPATH", "").split(os.pathsep):
        if not entry or is_launcher_bootstrap(entry, environ):
            continue
        full = entry if os.path.isabs(entry) else str(cwd / entry)
        if full not in out:
            out.append(full)
    return out
