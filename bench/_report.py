"""The results as a Markdown table (for people and docs/benchmarks.md) and JSON."""

from __future__ import annotations

import json
from typing import Any

from _rows import Row


def _num(row: Row, key: str, digits: int = 2) -> str:
    v = row.summary.get(key)
    if v is None:
        return "–"
    if row.unit == "kib":
        return f"{v:+.0f} KiB"
    if row.unit == "mib":
        return f"{v:.0f} MiB"
    return f"{v:.{digits}f}×"


def _budget(row: Row) -> str:
    if row.unit == "kib":
        return f"≤ +{row.budget / 1024:g} MiB"
    if row.unit == "mib":
        return f"≤ {row.budget:g} MiB"
    return f"≤ {row.budget:.2f}×"


def _sides(row: Row) -> str:
    s = row.summary
    if not s:
        return "–"
    if row.unit == "kib":
        return f"{s['a_kib'] / 1024:.1f} / {s['b_kib'] / 1024:.1f} MiB"
    if row.unit == "mib":
        return f"{s['a_mib']:.0f} / {s['b_mib']:.0f} MiB"
    return f"{s['a_ms']:.1f} / {s['b_ms']:.1f} ms"


RESULT = {"pass": "pass", "fail": "**FAIL**", "skip": "skip"}


def _result(row: Row) -> str:
    # A skipped row says why right in the table.
    return f"skip: {row.note}" if row.status == "skip" and row.note else RESULT[row.status]


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    out = [
        f"Run {meta['started']} on {meta['machine']}; {meta['seconds']:.0f} s in all"
        f"{' (--quick: a smoke test, not a result)' if meta.get('quick') else ''}. "
        "A and B alternate (A, B, A, B, ...); *median* is the median of the per-pair "
        "ratios A/B (for memory: of the per-pair peak-RSS differences A−B), *range* their "
        "min and max.",
        "",
        "| benchmark | A | B | pairs | median | range (min – max) | A / B (medians) | budget | result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rng = f"{_num(r, 'min')} – {_num(r, 'max')}" if r.summary else "–"
        out.append(f"| {r.title} | {r.a} | {r.b} | {r.summary.get('pairs', '–')} | {_num(r, 'median', 3)} "
                   f"| {rng} | {_sides(r)} | {_budget(r)} | {_result(r)} |")
    out.append("")
    for r in rows:
        if r.note and r.status != "skip":
            out.append(f"- **{r.title}** ({RESULT[r.status]}): {r.note}")
    return "\n".join(out) + "\n"


def as_json(rows: list[Row], meta: dict[str, Any]) -> str:
    return json.dumps({"meta": meta, "rows": [r.to_json() for r in rows]}, indent=2) + "\n"


DOC_HEADER = """\
# Benchmarks

What the launcher costs, measured side by side by `make bench` on the machine
named below (see [bench/README.md](../bench/README.md) for how each row is
measured and how to reproduce it). Every Python process of a job pays a *gate*
row; each `launcher run` pays the *launch* row once; *fan-out* and *cold herd*
are whole jobs.

For scale, measured the same way: comparable tools' per-interpreter hooks cost
about 9× to 34× a bare interpreter start and their wrapped runs 9× to 140×; an
empty `sitecustomize` on PYTHONPATH costs 1.14×, and a Python program that only
execs Python 1.9×.

The *cold herd* row's value is what the launcher adds to a herd of 16 cold
workers, in units of one cold build: (the herd under the launcher − the same
herd without it, timed in the same round) / one cold build, with exactly one
install checked in every round.

The *preload* rows compare with a bare start that has `LD_PRELOAD` set, so
they show what the shim and the gate add, not what jemalloc costs: a process
started through the shim, a spawn worker (the multiprocessing executable), a
`subprocess.run([sys.executable, ...])` child (through the shim, argv
unchanged) and a child started by name (one re-exec: two interpreter starts).

The *launch* rows time a warm `launcher run` as users install it (an editable
dev install, `uv pip install` and `pip install` of the wheel), side by side
with a bare start and with `uv run --no-project`; *warm with a 5,000-module
tree* shows the warm path's checks do not grow with the size of a tree.

The *executor* rows compare `launcher.Executor` with loky's reusable executor
on the same interpreter: a warm round-trip, a fan-out of 64 tiny tasks, and
the driver's peak RSS while it receives a 200 MB result (an absolute budget of
200 MB + 64 MB; loky's peak is shown for reference).

"""

DOC_FOOTER = """
Reproduce with `make bench` (about four minutes on two cores; it installs loky into
its scratch directory from PyPI for the executor rows): it writes this
table and a JSON file to `bench/results/` and exits non-zero when a row is over
its budget. `python bench/run.py --write-docs` also refreshes this page.
"""


def doc_page(table: str) -> str:
    return DOC_HEADER + table + DOC_FOOTER
