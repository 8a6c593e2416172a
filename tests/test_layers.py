"""The folder listing is the pipeline: no module imports one above it.

`cli` (the click app) sits on top; `commands/*` below it take their shared
helpers from `launcher.ui`, never from `cli`; nothing below the commands
imports them; the gate and its parts import nothing of the launcher (they run
inside every interpreter, stdlib only).  Checked statically, on the source.
"""

from __future__ import annotations

import ast
from pathlib import Path

from support import REPO

SRC = REPO / "src" / "launcher"


def _module(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
        out[_module(path)] = {n for n in names if n == "launcher" or n.startswith("launcher.")}
    return out


def test_commands_and_everything_below_never_import_the_cli() -> None:
    offenders = {m: sorted(n for n in names if n == "launcher.cli" or n.startswith("launcher.cli."))
                 for m, names in _imports().items() if m not in ("launcher.__main__", "launcher.completions")}
    assert {m: v for m, v in offenders.items() if v} == {}


def test_only_the_cli_imports_the_commands() -> None:
    offenders = {m: sorted(n for n in names if n.startswith("launcher.commands"))
                 for m, names in _imports().items()
                 if m != "launcher.cli" and not m.startswith("launcher.commands")}
    assert {m: v for m, v in offenders.items() if v} == {}


def test_the_gate_imports_nothing_of_the_launcher() -> None:
    offenders = {m: sorted(names) for m, names in _imports().items()
                 if m.startswith("launcher.gate") and names}
    assert offenders == {}
