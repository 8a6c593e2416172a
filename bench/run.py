"""`make bench`: the start-up cost of the launcher, measured side by side.

Writes bench/results/bench-<time>.{md,json} (and latest.{md,json}), prints
the table, and exits 1 when a row is over its budget (or its check failed).
See bench/README.md for what each row measures and how to reproduce it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import as_json, doc_page, markdown  # noqa: E402
from _rows import Row, Scale, rows, run_row  # noqa: E402
from _workspace import Workspace  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", metavar="ROW",
                    help="run only this row (repeatable): " + ", ".join(r.id for r, _ in rows()))
    ap.add_argument("--pairs", type=int, help="pairs for the interpreter-start rows (default 150)")
    ap.add_argument("--quick", action="store_true", help="a few pairs per row: a smoke test, not a result")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (venvs, cache)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    ap.add_argument("--write-docs", action="store_true",
                    help=f"also write the table to {DOCS.relative_to(DOCS.parent.parent)}")
    args = ap.parse_args(argv)
    args.out = args.out.resolve()
    known = [r.id for r, _ in rows()]
    unknown = [x for x in args.only or () if x not in known]
    if unknown:
        ap.error(f"unknown row {', '.join(unknown)} (rows: {', '.join(known)})")
    if args.write_docs and (args.quick or args.only or args.pairs):
        ap.error("--write-docs publishes a full run: drop --quick, --only and --pairs")

    scale = Scale(start=6, fanout=3, herd=2, memory=5, executor=5) if args.quick else Scale()
    if args.pairs:
        scale = Scale(start=args.pairs, fanout=scale.fanout, herd=scale.herd, memory=scale.memory,
                      executor=scale.executor)
    selected = [(r, fn) for r, fn in rows() if not args.only or r.id in args.only]

    started = time.time()
    load_before = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="launcher-bench-"))
    ws = Workspace(root)
    os.chdir(ws.work)  # every command runs here: no project file of ours above it
    done: list[Row] = []
    try:
        for row, fn in selected:
            t = time.time()
            print(f"bench: {row.id} ...", end=" ", file=sys.stderr, flush=True)
            done.append(run_row(row, fn, ws, scale))
            print(f"{done[-1].status} ({time.time() - t:.0f} s)", file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"bench: scratch directory kept: {root}", file=sys.stderr)
        else:
            ws.cleanup()

    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started)),
        "seconds": time.time() - started,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform(terse=True)}, "
                   f"load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after",
        "launcher_python": sys.version.split()[0],
        "scale": asdict(scale),
        "quick": args.quick,
    }
    table = markdown(done, meta)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    for name in (f"bench-{stamp}", "latest"):
        (args.out / f"{name}.md").write_text(table)
        (args.out / f"{name}.json").write_text(as_json(done, meta))
    if args.write_docs:
        DOCS.write_text(doc_page(table))
    print(table)
    print(f"bench: results in {args.out}/bench-{stamp}.{{md,json}}", file=sys.stderr)
    failed = [r.id for r in done if r.status == "fail"]
    if failed:
        print(f"bench: over budget or broken: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
