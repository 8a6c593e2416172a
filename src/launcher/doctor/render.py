"""The report for people: rich on a terminal, plain text otherwise (or with NO_COLOR).

rich is imported only for a colour terminal, so `doctor --json` and piped
output stay light.
"""

from __future__ import annotations

import os
from typing import IO

from launcher.doctor.models import Finding, Group, Report

_MARK = {"ok": "ok", "warn": "warn", "fail": "FAIL"}
_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}
_ICON = {"ok": "✔", "warn": "!", "fail": "✘"}


def use_rich(stream: IO[str]) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def summary(report: Report) -> str:
    c = report.counts
    verdict = {"ok": "all ok", "warn": "ok, with warnings", "fail": "problems found"}[report.status]
    return f"launcher doctor: {verdict} ({c.fail} fail, {c.warn} warn, {c.ok} ok)"


def _subtitle(group: Group) -> str | None:
    i = group.interpreter
    return f"from {i.origin}" if i is not None else None


def plain(report: Report) -> str:
    lines = [summary(report)]
    for g in report.groups:
        lines.append("")
        lines.append(f"== {g.title}")
        sub = _subtitle(g)
        if sub:
            lines.append(f"   {sub}")
        for f in g.findings:
            lines.extend(_plain_finding(f))
    lines.append("")
    lines.append(summary(report))
    return "\n".join(lines) + "\n"


def _plain_finding(f: Finding) -> list[str]:
    out = [f"  {_MARK[f.status]:<5} {f.message}"]
    if f.fix and f.status != "ok":
        out.append(f"        fix: {f.fix}")
    if f.status != "ok":
        out.extend(f"        | {d}" for d in f.details)
    return out


def rich(report: Report, stream: IO[str]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=stream, highlight=False)
    console.print(Text(summary(report), style=_STYLE[report.status]))
    for g in report.groups:
        console.print()
        console.rule(Text(g.title, style="bold " + _STYLE[g.status]), align="left", style="dim")
        sub = _subtitle(g)
        if sub:
            console.print(Text(f"  {sub}", style="dim"))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        for f in g.findings:
            body = Text(f.message)
            if f.fix and f.status != "ok":
                body.append("\nfix: ", style="cyan").append(f.fix)
            if f.status != "ok":
                for d in f.details:
                    body.append(f"\n│ {d}", style="dim")
            grid.add_row(Text(f"  {_ICON[f.status]} {f.status:<4}", style=_STYLE[f.status]), body)
        console.print(grid)
    console.print()
    console.print(Text(summary(report), style=_STYLE[report.status]))
