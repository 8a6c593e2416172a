"""The executor rows' driver: `launcher.Executor` vs loky's reusable executor,
both on this interpreter, alternating A, B, A, B, ... in one process.

    PYTHONPATH=LOKY_DIR _executor_bench.py MODE PAIRS CACHE WHEELHOUSE

(loky lives in a bench-only directory, never in the project: its workers
find it, as they find everything else, through PYTHONPATH.)

MODE: `latency` (a sample is 20 sequential submit(noop).result() on 1 worker),
`fanout` (a sample is 64 tiny tasks on 2 workers), `rss` (peak RSS of this
driver while it receives a 200 MB result; loky alongside for reference).
Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import _executor_tasks as tasks
from loky import get_reusable_executor

import launcher

BATCH = 20
FANOUT = 64
BIG = 200 * 1024 * 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    # "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _check(ours: Any, loky: Any) -> str:
    fut = ours.submit(tasks.pid)
    theirs = loky.submit(tasks.pid).result()
    if fut.result() == os.getpid() or theirs == os.getpid():
        raise SystemExit("a task ran in the driver")
    who = fut.worker
    if who is None or not who.tree:
        raise SystemExit(f"the launcher's worker did not run with a runtime tree: {who}")
    return f"launcher worker pid {who.pid} with tree {Path(who.tree).name}; loky worker pid {theirs}"


def _sample(ex: Any, mode: str) -> float:
    start = time.perf_counter()
    if mode == "latency":
        for _ in range(BATCH):
            ex.submit(tasks.noop).result()
    else:
        wait([ex.submit(tasks.noop, i) for i in range(FANOUT)])
    return time.perf_counter() - start


def timed(mode: str, pairs: int, flags: dict[str, Any]) -> dict[str, Any]:
    workers = 1 if mode == "latency" else 2
    with launcher.Executor(max_workers=workers, flags=flags) as ours:
        loky = get_reusable_executor(max_workers=workers)
        note = _check(ours, loky)
        a: list[float] = []
        b: list[float] = []
        for i in range(5 + pairs):  # 5 warm-up pairs: every worker started and warm
            x, y = _sample(ours, mode), _sample(loky, mode)
            if i >= 5:
                a.append(x)
                b.append(y)
        loky.shutdown(wait=True)
    return {"a": a, "b": b, "note": note}


def rss(pairs: int, flags: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"a_peak": [], "b_peak": [], "a_before": [], "b_before": []}
    with launcher.Executor(max_workers=1, flags=flags) as ours:
        loky = get_reusable_executor(max_workers=1)
        out["note"] = _check(ours, loky)
        for _ in range(pairs):
            for side, ex in (("a", ours), ("b", loky)):
                before = _status_kib("VmRSS")
                _reset_peak()
                data = ex.submit(tasks.big, BIG).result()
                peak = _status_kib("VmHWM")
                if len(data) != BIG:
                    raise SystemExit(f"{side}: got {len(data)} bytes")
                del data
                out[f"{side}_peak"].append(peak)
                out[f"{side}_before"].append(before)
        loky.shutdown(wait=True)
    return out


def main() -> None:
    mode, pairs, cache, wheelhouse = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    flags = {"find-links": [wheelhouse], "offline": True, "cache-dir": cache}
    result = rss(pairs, flags) if mode == "rss" else timed(mode, pairs, flags)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
