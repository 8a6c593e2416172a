"""Past one machine without a cluster engine (issue 18): two torchrun agents
as two nodes, each under its own `launcher run` with its own cache; and a
herd of two "nodes" sharing one cache whose build locks are node-local (as
on NFS), where correctness comes from the atomic publish alone.

Both need root: a network namespace of the test's own keeps the rendezvous on
loopback (`unshare --net`), and a mount namespace per "node" gives each its
own lock directory over the shared cache (`unshare --mount`).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from conftest import LAUNCHER, installs, missing, offline_with
from test_torchrun import torch_python  # noqa: F401 - the fixture

RANK = r'''
import json, os, sys
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
t = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(t)
with open("/proc/self/maps") as f:
    jemalloc = "/libjemalloc" in f.read()
sys.stdout.write(json.dumps({
    "rank": dist.get_rank(), "world": dist.get_world_size(), "sum": t.item(),
    "trees": [p for p in sys.path if "/trees/" in p], "jemalloc": jemalloc,
    "cache": os.environ.get("LAUNCHER_CACHE_DIR"),
}) + "\n")
sys.stdout.flush()
dist.destroy_process_group()
'''


def _need_root(*tools: str) -> None:
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("unshare", *tools)):
        missing(f"needs root and {', '.join(('unshare', *tools))} for namespaces of the test's own "
                "(CI runs as root)")


def test_multi_node_torchrun_each_node_under_its_own_launcher(torch_python: str, jemalloc: str,  # noqa: F811
                                                               env: dict[str, str], tmp_path: Path) -> None:
    """`launcher run … -- torchrun --nnodes 2 …` on each node, as `srun` would
    start it: c10d rendezvous on 127.0.0.1, every rank prepared from its own
    node's cache."""
    _need_root("ip")
    torchrun = str(Path(torch_python).parent / "torchrun")
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    env["OMP_NUM_THREADS"] = "1"
    env["GLOO_SOCKET_IFNAME"] = "lo"  # the namespace has nothing else
    agent = [str(LAUNCHER), "run", *offline_with("six"), "--with-priority", "first", "--preload", "jemalloc",
             "--", torchrun, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
             "--rdzv-endpoint", "127.0.0.1:29533", "--rdzv-id", "issue18", str(script)]
    caches = [tmp_path / "node0", tmp_path / "node1"]
    # Both agents in one fresh network namespace: loopback only, a fixed port is free.
    node0, node1 = (f"LAUNCHER_CACHE_DIR={shlex.quote(str(c))} {shlex.join(agent)}" for c in caches)
    both = (f"ip link set lo up || exit 99; {node0} & n0=$!; {node1}; n1=$?; wait $n0; "
            "exit $(( $? | n1 ))")
    proc = subprocess.run(["unshare", "--net", "sh", "-c", both],
                          env=env, capture_output=True, text=True, timeout=600)
    ranks = sorted((json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")),
                   key=lambda r: r["rank"])
    assert proc.returncode == 0 and [r["rank"] for r in ranks] == [0, 1], \
        f"stdout: {proc.stdout}\nstderr: {proc.stderr[-5000:]}"
    for r in ranks:
        assert r["world"] == 2 and r["sum"] == 3.0
        assert r["jemalloc"], f"rank {r['rank']} does not map jemalloc"
        (tree,) = r["trees"]
        assert tree.startswith(r["cache"] + "/trees/cp311-"), r
    assert sorted(r["cache"] for r in ranks) == [str(c) for c in caches], "each node uses its own cache"


# The module's file, and the identity of the tree directory it came from.
PROBE = ("import markupsafe._speedups as s, os; t = s.__file__.split('/markupsafe/')[0]; "
         "print(s.__file__, os.stat(t).st_ino)")


def test_a_herd_of_nodes_sharing_one_cache_with_node_local_locks(py311: str, env: dict[str, str],
                                                                 cache_dir: Path, tmp_path: Path) -> None:
    """Two cold "nodes" start at the same instant on one shared cache whose
    locks/ each sees as its own directory (a bind mount in a mount namespace
    of its own), so neither lock stops the other: exactly one tree is
    published, and both import from it."""
    _need_root("mount")
    (cache_dir / "locks").mkdir(parents=True, mode=0o700)
    cache_dir.chmod(0o700)
    go = tmp_path / "go"
    # Node b's installer pauses before it returns, so node a publishes first
    # and runs its workload from that tree while b is still building.
    from uv import find_uv_bin

    slow_uv = tmp_path / "slow-uv"
    # (only its installs: the launch resolves with the same uv first)
    slow_uv.write_text(f"#!/bin/sh\n{find_uv_bin()} \"$@\" || exit $?\n"
                       "case \" $* \" in *\" pip install \"*) sleep 3;; esac\n")
    slow_uv.chmod(0o755)
    nodes = []
    for name in ("a", "b"):
        locks = tmp_path / f"locks-{name}"
        locks.mkdir(mode=0o700)
        run = shlex.join([str(LAUNCHER), "run", *offline_with("markupsafe"), "--", py311, "-c", PROBE])
        script = (f"mount --bind {shlex.quote(str(locks))} {shlex.quote(str(cache_dir / 'locks'))} || exit 99; "
                  f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.01; done; exec {run}")
        node_env = dict(env, LAUNCHER_UV=str(slow_uv)) if name == "b" else env
        nodes.append(subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                                      env=node_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    go.touch()
    outs = [p.communicate(timeout=600) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], outs
    (first, _), (second, _) = outs
    # Both import from the one published tree: the first to publish wins, the
    # other's build is discarded (never swapped in under a running workload).
    assert first == second and "/trees/cp311-" in first, outs
    trees = sorted(p.name for p in (cache_dir / "trees").iterdir())
    assert len([t for t in trees if t.startswith("cp311-")]) == 1 and len(trees) == 1, trees
    module, inode = first.split()
    assert Path(module).is_relative_to(cache_dir / "trees" / trees[0])
    assert (cache_dir / "trees" / trees[0]).stat().st_ino == int(inode), "the winner's tree was replaced"
    # The locks were each node's own: none in the shared directory.
    assert not list((cache_dir / "locks").iterdir())
    assert list((tmp_path / "locks-a").iterdir()) or list((tmp_path / "locks-b").iterdir())
    assert len(installs(cache_dir)) == 2, "both built: neither node's lock stopped the other"
