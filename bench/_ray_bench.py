"""The Ray row's driver, run with the Ray venv's python inside a network
namespace of its own (Ray there listens on 127.0.0.1 only):

    _ray_bench.py PAIRS FIRST CACHE WHEELHOUSE PREINSTALLED

A 2-node `ray.cluster_utils.Cluster`.  Side A: tasks under
`launcher.ray.runtime_env({"with": ["markupsafe"], ...})`.  Side B: plain
Ray, markupsafe preinstalled (the PREINSTALLED directory on PYTHONPATH).  A
sample is 8 SPREAD tasks that import markupsafe, warm (workers of both sides
already running), alternating A, B.  Then FIRST fresh workers per side
(`max_calls=1`: each task starts a new worker) for the first-task latency
per worker, reported separately.  Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import ray
from ray.cluster_utils import Cluster

import launcher.ray as lray

TASKS = 8


@ray.remote(num_cpus=1, scheduling_strategy="SPREAD")
def work(i: int) -> tuple[str, str]:
    import markupsafe

    return ray.get_runtime_context().get_node_id(), markupsafe.__file__


@ray.remote(num_cpus=1, max_calls=1)
def work_once() -> str:
    import markupsafe

    return markupsafe.__file__


def _batch(env: dict[str, Any]) -> list[tuple[str, str]]:
    return ray.get([work.options(runtime_env=env).remote(i) for i in range(TASKS)])


def _first(env: dict[str, Any]) -> float:
    start = time.perf_counter()
    ray.get(work_once.options(runtime_env=env).remote())
    return time.perf_counter() - start


def main() -> None:
    pairs, first = int(sys.argv[1]), int(sys.argv[2])
    cache, wheelhouse, preinstalled = sys.argv[3:6]
    os.environ["LAUNCHER_CACHE_DIR"] = cache
    # Room for both sides' workers (4 per node each): a node keeps about
    # num_cpus idle workers, and evicting one side's to start the other's
    # would time worker starts, not warm tasks.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 8, "include_dashboard": False})
    cluster.add_node(num_cpus=8)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    try:
        env_a = lray.runtime_env({"with": ["markupsafe"], "find-links": [wheelhouse], "offline": True})
        env_b = {"env_vars": {"PYTHONPATH": preinstalled}}
        # Checked first: both sides import markupsafe where they claim, on both nodes (this also
        # builds the tree and starts the workers: what follows is warm).
        for _ in range(6):
            got_a, got_b = _batch(env_a), _batch(env_b)
        if not all(f.startswith(cache + "/trees/") for _, f in got_a):
            raise SystemExit(f"side A did not import markupsafe from a launcher tree: {got_a}")
        if not all(f.startswith(preinstalled + "/") for _, f in got_b):
            raise SystemExit(f"side B did not import the preinstalled markupsafe: {got_b}")
        nodes = len({n for n, _ in got_a}), len({n for n, _ in got_b})
        a: list[float] = []
        b: list[float] = []
        for _ in range(pairs):
            for side, env in ((a, env_a), (b, env_b)):
                start = time.perf_counter()
                _batch(env)
                side.append(time.perf_counter() - start)
        first_a: list[float] = []
        first_b: list[float] = []
        for _ in range(first):
            first_a.append(_first(env_a))
            first_b.append(_first(env_b))
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps({"a": a, "b": b, "first_a": first_a, "first_b": first_b,
                      "note": f"A from the launcher's tree, B preinstalled; nodes used A {nodes[0]}, B {nodes[1]}"}))


if __name__ == "__main__":
    main()
