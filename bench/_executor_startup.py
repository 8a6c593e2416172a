"""The executor start-up and chunking rows' driver, on this interpreter, in
one process (warm: imports done, runtime tree built, plan cached), A and B
alternating.

    _executor_startup.py MODE PAIRS CACHE WHEELHOUSE

MODE `startup`: a sample is constructor + first result + shutdown, of
`launcher.Executor(max_workers=2)` (A) and `ProcessPoolExecutor(2,
mp_context=spawn)` (B).  MODE `chunks`: a sample is `list(ex.map(noop,
range(10_000), chunksize=100))` (A) and the same with chunksize 1 (B), on
one `launcher.Executor(max_workers=2)`.  Prints one JSON object.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import _executor_tasks as tasks

import launcher

WORKERS = 2
ITEMS = 10_000


def _startup_ours(flags: dict[str, Any]) -> tuple[float, int]:
    start = time.perf_counter()
    ex = launcher.Executor(max_workers=WORKERS, flags=flags)
    fut = ex.submit(tasks.pid)
    got = fut.result()
    ex.shutdown()
    took = time.perf_counter() - start
    if fut.worker is None or not fut.worker.tree or got == os.getpid():
        raise SystemExit(f"the launcher's worker did not run with a runtime tree: {fut.worker}")
    return took, got


def _startup_theirs() -> tuple[float, int]:
    start = time.perf_counter()
    ex = ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn"))
    got = ex.submit(tasks.pid).result()
    ex.shutdown()
    return time.perf_counter() - start, got


def startup(pairs: int, flags: dict[str, Any]) -> dict[str, Any]:
    a: list[float] = []
    b: list[float] = []
    for i in range(2 + pairs):  # 2 warm-up pairs: imports, tree, plan
        x, _ = _startup_ours(flags)
        y, _ = _startup_theirs()
        if i >= 2:
            a.append(x)
            b.append(y)
    return {"a": a, "b": b, "note": "A's first result came from a worker with its runtime tree"}


def chunks(pairs: int, flags: dict[str, Any]) -> dict[str, Any]:
    a: list[float] = []
    b: list[float] = []
    want = list(range(ITEMS))
    with launcher.Executor(max_workers=WORKERS, flags=flags) as ex:
        for i in range(1 + pairs):
            times = []
            for size in (100, 1):
                start = time.perf_counter()
                got = list(ex.map(tasks.noop, range(ITEMS), chunksize=size))
                times.append(time.perf_counter() - start)
                if got != want:
                    raise SystemExit(f"map(chunksize={size}) returned the wrong results")
            if i >= 1:
                a.append(times[0])
                b.append(times[1])
    return {"a": a, "b": b, "note": f"both maps returned all {ITEMS} results in order"}


def main() -> None:
    mode, pairs, cache, wheelhouse = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    flags = {"find-links": [wheelhouse], "offline": True, "cache-dir": cache}
    print(json.dumps(startup(pairs, flags) if mode == "startup" else chunks(pairs, flags)))


if __name__ == "__main__":
    main()
