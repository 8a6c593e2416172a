"""What interpreter will COMMAND run, as far as the launcher can see?

argv[0] may be a python itself, a script whose shebang names one (a venv's
`torchrun`), `uv run` (uv picks later), or something opaque (a shell
script): then the gate repairs in-process, inside the real worker.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from dataclasses import dataclass

from launcher.execute import which

_PYTHON_NAME = re.compile(r"^(python|pypy)(\d+(\.\d+)*)?t?(-dbg)?$")


@dataclass(frozen=True)
class CommandTarget:
    argv0: str
    resolved: str | None
    kind: str  # "python" | "script" | "uv" | "opaque" | "missing"
    interpreter: str | None
    flags: tuple[str, ...]
    note: str
    # Every path the PATH lookups (argv[0], an `env python3` shebang) tried
    # before their hit: one appearing there changes the answer.
    looked: tuple[str, ...] = ()

    @property
    def bypasses_gate(self) -> tuple[str, ...]:
        """-E, -I, -S (or a combination like -IS) skip PYTHONPATH/site: no gate."""
        hit = []
        for f in self.flags:
            if f.startswith("-") and not f.startswith("--"):
                hit += [c for c in "EIS" if c in f[1:]]
        return tuple(f"-{c}" for c in dict.fromkeys(hit))


def looks_like_python(path: str) -> bool:
    return bool(_PYTHON_NAME.match(os.path.basename(path)))


def read_shebang(path: str) -> list[str] | None:
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    try:
        parts = shlex.split(line)
    except ValueError:
        parts = line.split()
    return parts or None


def _python_flags(args: list[str]) -> tuple[str, ...]:
    flags = []
    for a in args:
        if a == "-c" or a == "-m" or not a.startswith("-"):
            break
        flags.append(a)
    return tuple(flags)


def path_candidates(name: str, path: str | None, found: str | None) -> tuple[str, ...]:
    """Where a PATH lookup of `name` looked, up to and including `found`:
    a file appearing at one of them changes the answer."""
    if "/" in name:
        return ()
    out = []
    for d in (path if path is not None else os.defpath).split(os.pathsep):
        cand = os.path.abspath(os.path.join(d or ".", name))
        out.append(cand)
        if found is not None and cand == os.path.abspath(found):
            break
    return tuple(out)


def _lookup(name: str, path: str | None) -> tuple[str | None, tuple[str, ...]]:
    """`which(name)`, and where it looked."""
    found = which(name, path)
    return found, path_candidates(name, path, found)


def analyse(argv: list[str], path: str | None) -> CommandTarget:
    resolved, looked = _lookup(argv[0], path)
    target = _analyse(argv, path, resolved)
    return dataclasses.replace(target, looked=looked + target.looked)


def _analyse(argv: list[str], path: str | None, resolved: str | None) -> CommandTarget:
    argv0 = argv[0]
    if resolved is None:
        return CommandTarget(argv0, None, "missing", None, (), f"{argv0} is not on PATH")
    resolved = os.path.abspath(resolved)
    if looks_like_python(resolved):
        return CommandTarget(argv0, resolved, "python", resolved, _python_flags(argv[1:]),
                             "the command is a Python interpreter")
    if os.path.basename(resolved) == "uv":
        return CommandTarget(argv0, resolved, "uv", None, (),
                             "uv picks the project's interpreter itself; the gate prepares it in-process")
    shebang = read_shebang(resolved)
    if shebang:
        interp = shebang[0]
        rest = shebang[1:]
        looked: tuple[str, ...] = ()
        if os.path.basename(interp) == "env":
            rest = [a for a in rest if a != "-S"]
            if rest:
                found, looked = _lookup(rest[0], path)
                interp = found or rest[0]
                rest = rest[1:]
        if looks_like_python(interp):
            return CommandTarget(argv0, resolved, "script", os.path.abspath(interp), tuple(rest),
                                 f"its shebang names {interp}", looked)
        return CommandTarget(argv0, resolved, "opaque", None, (),
                             f"a {os.path.basename(interp)} script: the launcher cannot see which "
                             "interpreters it starts; the gate prepares each one in-process")
    return CommandTarget(argv0, resolved, "opaque", None, (),
                         "not a Python interpreter or script; any Python it starts is prepared "
                         "in-process by the gate")
