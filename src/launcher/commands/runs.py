"""`launcher runs list|show`: read the run records a job leaves (`run --record`, `record = true`)."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from launcher.commands.cache_cmd import _layout
from launcher.records import Process, Run
from launcher.ui import reports_errors, say

_FAILED = ("failed", "failed-recently", "untrusted", "read-only", "no-launcher")


@click.group("runs", short_help="Show recorded runs: every interpreter of a job.")
def command() -> None:
    """Show what a recorded job's interpreters got: record one with 'launcher run --record'
    (or record = true in the config); 'launcher cache prune' ages records out."""


def _options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(fn)
    return click.option("--cache-dir", metavar="DIR", help="Cache root (default: the cache-dir setting, "
                                                           "LAUNCHER_CACHE_DIR or the user cache dir).")(fn)


@command.command("list", short_help="List recorded runs, newest last.")
@_options
@reports_errors
def list_(cache_dir: str | None, as_json: bool) -> None:
    """Each recorded run: its id (a unique prefix is enough for 'runs show'), when it
    started, how many interpreters and which ABIs, its requirements, its command."""
    from launcher.records import load, run_paths

    layout = _layout(cache_dir)
    runs = [load(layout, p) for p in run_paths(layout)]
    if as_json:
        click.echo(json.dumps({"root": str(layout.root), "runs": [r.summary() for r in runs]}, indent=2))
        return
    if not runs:
        say(f"no recorded runs in {layout.runs}; record one with 'launcher run --record ...' "
            "(or record = true in the config)")
        return
    rows = [("RUN", "STARTED", "PYTHONS", "ABIS", "REQUIREMENTS", "COMMAND")]
    for r in runs:
        abis = sorted({p.abi_key.split("-")[0] for p in r.processes if p.abi_key})
        count = f"{len(r.processes)}" + ("" if r.every_start else " (misses only)")
        rows.append((r.id, _when(r.started), count, ",".join(abis) or "-", " ".join(r.requirements) or "-",
                     shlex.join(r.command) if r.command else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])


@command.command("show", short_help="Show a recorded run as a process tree.")
@click.argument("run_id", metavar="RUN", default="latest")
@_options
@reports_errors
def show(run_id: str, cache_dir: str | None, as_json: bool) -> None:
    """Every interpreter of the recorded run RUN (its id, a unique prefix of it, or
    'latest', the default) as a process tree: pid, parent, executable, ABI, runtime
    tree, the versions of the requested packages it got, preloads mapped, exit status."""
    from launcher.records import find, load

    layout = _layout(cache_dir)
    run = load(layout, find(layout, run_id))
    if as_json:
        click.echo(run.model_dump_json(indent=2))
        return
    head = [f"run {run.id}, started {_when(run.started)}",
            f"requirements: {' '.join(run.requirements) or '(none)'}",
            f"record: {run.path}" + ("" if run.every_start else
                                     " (only the gate's misses: 'launcher run --record' records every start)")]
    if _on_terminal():
        _rich_tree(run, head)
    else:
        for line in head:
            click.echo(line)
        for pid in run.roots:
            _plain_tree(run, pid, "")


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "-"


def _describe(p: Process) -> tuple[str, list[str]]:
    """(the process's title line, its detail lines)."""
    exe = p.executable or "?"
    cmd = shlex.join(p.argv) if p.argv else exe
    title = f"pid {p.pid} (parent {p.parent}): {cmd}"
    lines = [f"executable {exe}, ABI {p.abi_key or '?'}"]
    if p.tree:
        name = p.tree.rsplit("/", 1)[-1]
        how = p.state or "?"
        if p.built_seconds is not None and p.state == "built":
            how += f" by its gate in {p.built_seconds}s"
        if p.state in _FAILED:
            lines.append(f"runtime {name}: not available ({how}); 'launcher doctor' says why")
        else:
            got = ", ".join(f"{n} {v or '(missing)'}" for n, v in p.packages.items())
            gone = "" if p.tree_present else " (tree no longer in the cache)"
            lines.append(f"runtime {name} ({how}){gone}" + (f": {got}" if got and p.tree_present else ""))
    else:
        lines.append(f"no runtime tree ({p.state or 'none asked for'})")
    if p.preloads_mapped is not None:
        lines.append(f"preloads mapped: {', '.join(p.preloads_mapped) or 'none'}")
    lines.append(_exit_line(p))
    return title, lines


def _exit_line(p: Process) -> str:
    if p.exit_status is not None and p.exit_status < 0:
        return f"killed by signal {-p.exit_status} (seen by its parent)"
    if p.exit_status is not None:
        how = {"reaped": "seen by its parent", "sys.exit": "sys.exit"}.get(p.exit_how or "", p.exit_how)
        return f"exit {p.exit_status} ({how})"
    if p.exit_how == "end":
        return "ended; exit status not seen (no sys.exit or uncaught exception, and no recorded parent waited)"
    return "exit status unknown (killed, os._exit, or still running)"


def _plain_tree(run: Run, pid: int, indent: str) -> None:
    by_pid = {p.pid: p for p in run.processes}
    title, lines = _describe(by_pid[pid])
    click.echo(f"{indent}{title}")
    for line in lines:
        click.echo(f"{indent}    {line}")
    for child in by_pid[pid].children:
        _plain_tree(run, child, indent + "  ")


def _on_terminal() -> bool:
    from launcher.progress import on_terminal

    return on_terminal(sys.stdout)


def _rich_tree(run: Run, head: list[str]) -> None:
    from rich.console import Console
    from rich.text import Text
    from rich.tree import Tree

    by_pid = {p.pid: p for p in run.processes}

    def label(p: Process) -> Text:
        title, lines = _describe(p)
        text = Text()
        text.append(title, style="bold red" if p.state in _FAILED or (p.exit_status or 0) != 0 else "bold")
        for line in lines:
            text.append("\n" + line, style="dim" if line.startswith("executable") else "")
        return text

    def add(node: Tree, pid: int) -> None:
        branch = node.add(label(by_pid[pid]))
        for child in by_pid[pid].children:
            add(branch, child)

    root = Tree(Text("\n".join(head)), guide_style="dim")
    for pid in run.roots:
        add(root, pid)
    Console(file=sys.stdout, highlight=False).print(root)
