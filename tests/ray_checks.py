"""Run by tests/test_ray.py with the Ray venv's python, inside a network
namespace of the test's own (Ray there listens on 127.0.0.1 only):

    ray_checks.py WHEELHOUSE CACHE_A CACHE_B

starts a 2-node `ray.cluster_utils.Cluster`, each node with its own launcher
cache (as two machines would have), runs the checks and prints one JSON line
prefixed with RESULT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import psutil
import ray
from ray.cluster_utils import Cluster

import launcher.ray as lray

WHEELHOUSE, CACHE_A, CACHE_B = sys.argv[1:4]
FLAGS = {"with": ["markupsafe"], "find-links": [WHEELHOUSE], "offline": True, "preload": ["jemalloc"]}


def where() -> dict[str, Any]:
    """Where a worker runs and what the launcher gave it."""
    from markupsafe import _speedups

    with open("/proc/self/maps") as f:
        maps = f.read()
    return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
            "speedups": _speedups.__file__, "jemalloc": "/libjemalloc" in maps,
            "executable": sys.executable, "ld_preload": os.environ.get("LD_PRELOAD", "<unset>")}


@ray.remote(num_cpus=1, scheduling_strategy="SPREAD")
def spread_task(i: int) -> dict[str, Any]:
    time.sleep(0.5)  # long enough that the six overlap and SPREAD uses both nodes
    return where()


def replica(word: str) -> dict[str, Any]:
    from markupsafe import _speedups

    rank = int(os.environ["REPLICA_RANK"])
    print(f"replica {rank} of {os.environ['REPLICA_WORLD_SIZE']} says {word}", flush=True)
    if rank == 1:
        raise RuntimeError(f"rank {rank} fails on purpose")
    with open("/proc/self/maps") as f:
        jemalloc = "/libjemalloc" in f.read()
    return {"rank": rank, "speedups": _speedups.__file__, "jemalloc": jemalloc}


def sleeper() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(f"sleeping {os.getpid()} {child.pid}", flush=True)
    time.sleep(600)


def main() -> None:
    out: dict[str, Any] = {}
    os.environ["LAUNCHER_CACHE_DIR"] = CACHE_A
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    os.environ["LAUNCHER_CACHE_DIR"] = CACHE_B
    cluster.add_node(num_cpus=2)
    del os.environ["LAUNCHER_CACHE_DIR"]
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    try:
        out["nodes"] = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        env = lray.runtime_env(FLAGS)
        out["py_executable"] = env["py_executable"]
        out["tasks"] = ray.get([spread_task.options(runtime_env=env).remote(i) for i in range(6)])

        with lray.RayReplicaExecutor(flags=FLAGS) as ex:
            handles = ex.launch_replicas(3, replica, {"word": "hello"})
            rows = ex.collect(handles, timeout=300)
            out["replicas"] = [{k: r[k] for k in ("rank", "status", "exit_code", "error", "result",
                                                  "node_id", "traceback")} for r in rows]
            out["logs"] = [ex.stream_logs(h) for h in handles]
            out["polls"] = [ex.poll(h) for h in handles]
            out["backend"] = [h.backend_name for h in handles]

        with lray.RayReplicaExecutor(flags=FLAGS) as ex:
            (h,) = ex.launch_replicas(1, sleeper, {})
            deadline = time.monotonic() + 120
            while "sleeping" not in ex.stream_logs(h) and time.monotonic() < deadline:
                time.sleep(0.2)
            out["sleeper_poll"] = ex.poll(h)
            pids = [int(p) for p in ex.stream_logs(h).split()[1:3]]
            ex.cancel(h)
            out["cancelled_poll"] = ex.poll(h)
            deadline = time.monotonic() + 5
            while any(_alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.05)
            out["sleeper_pids"] = pids
            out["sleeper_alive"] = [_alive(p) for p in pids]
            out["cancelled_row"] = {k: ex.collect([h], timeout=30)[0][k] for k in ("status", "error")}
            ex.cancel(h)  # silent on a finished replica
    finally:
        ray.shutdown()
        cluster.shutdown()
    print("RESULT " + json.dumps(out), flush=True)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


if __name__ == "__main__":
    main()
