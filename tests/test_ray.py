"""Ray past one machine (issue 18): `launcher.ray.runtime_env` prepares every
Ray worker on every node from that node's own cache, and `RayReplicaExecutor`
runs the replica Protocol on a cluster.

Needs a python with Ray: point LAUNCHER_TEST_RAY_PYTHON at it (CI: `make
ray-env`, ray 2.60.0 in .venv-ray with this checkout installed editable).
Every cluster runs inside a network namespace of the test's own (`unshare
--net`, then `ip link set lo up`): there Ray listens on 127.0.0.1 and can
send nothing anywhere else.  One module-scoped run starts the 2-node
cluster once (`ray_checks.py`); the tests read what it found.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, WHEELHOUSE, base_env, missing
from support import imported_modules

TESTS = Path(__file__).resolve().parent
SKIP = "set LAUNCHER_TEST_RAY_PYTHON (CI: make ray-env)"


@pytest.fixture(scope="module")
def ray_python() -> str:
    python = os.environ.get("LAUNCHER_TEST_RAY_PYTHON") or str(REPO / ".venv-ray" / "bin" / "python")
    if not os.path.isfile(python):
        missing(SKIP)
    check = subprocess.run([python, "-c", "import ray, launcher.ray"], capture_output=True, text=True,
                           timeout=300)
    if check.returncode != 0:
        missing(f"{python} cannot import ray and launcher.ray: {check.stderr.strip()[-300:]}; {SKIP}")
    return os.path.abspath(python)


def in_own_netns(argv: list[str]) -> list[str]:
    """`argv` in a fresh network namespace with only loopback up, or skip."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        missing("Ray tests need root, unshare and ip to give each cluster a network namespace "
                "of its own (CI runs as root)")
    return ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]


def ray_env(tmp: Path) -> dict[str, str]:
    env = base_env(tmp / "unused-cache")
    del env["LAUNCHER_CACHE_DIR"]  # each node gets its own (ray_checks.py)
    # Ray's sockets live under RAY_TMPDIR (a short path: AF_UNIX names are
    # short); no auth token written into $HOME; no usage reporting.
    env.update(RAY_TMPDIR=str(tmp / "ray"), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    return env


@pytest.fixture(scope="module")
def cluster_run(ray_python: str, jemalloc: str) -> Iterator[dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="lr", dir="/tmp"))
    try:
        caches = [tmp / "node-a", tmp / "node-b"]
        argv = in_own_netns([ray_python, str(TESTS / "ray_checks.py"), str(WHEELHOUSE), *map(str, caches)])
        proc = subprocess.run(argv, env=ray_env(tmp), capture_output=True, text=True, timeout=600)
        lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-5000:]}"
        out = json.loads(lines[-1][len("RESULT "):])
        out["caches"] = [str(c) for c in caches]
        out["ray_python"] = ray_python
        yield out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cache_of(path: str, caches: list[str]) -> str:
    (cache,) = [c for c in caches if path.startswith(c + "/trees/")]
    return cache


def test_spread_tasks_reach_both_nodes_prepared_from_each_nodes_cache(cluster_run: dict[str, Any]) -> None:
    tasks, caches = cluster_run["tasks"], cluster_run["caches"]
    assert len(tasks) == 6
    assert {t["node"] for t in tasks} == set(cluster_run["nodes"]) and len(cluster_run["nodes"]) == 2
    node_cache: dict[str, str] = {}
    for t in tasks:
        # markupsafe's C extension from a tree the launcher built for this ABI, on this node.
        assert t["speedups"].endswith(".cpython-311-x86_64-linux-gnu.so"), t
        assert node_cache.setdefault(t["node"], _cache_of(t["speedups"], caches)) == \
            _cache_of(t["speedups"], caches), "a node used another node's cache"
        assert t["jemalloc"], f"task in {t['pid']} does not map jemalloc"
        assert t["ld_preload"] == "<unset>", "the caller's LD_PRELOAD was not restored"
        assert t["executable"] == cluster_run["ray_python"], "sys.executable must be what a bare worker has"
    assert sorted(node_cache.values()) == caches, "each node builds in its own cache"
    # Nothing of the driver's machine but the launcher command and its python.
    py_exe = cluster_run["py_executable"]
    assert "/node-a" not in py_exe and "/node-b" not in py_exe and "bootstrap" not in py_exe


def test_ray_replicas_results_errors_and_logs(cluster_run: dict[str, Any]) -> None:
    rows, caches = cluster_run["replicas"], cluster_run["caches"]
    assert cluster_run["backend"] == ["ray"] * 3
    assert [(r["rank"], r["status"], r["exit_code"]) for r in rows] == [
        (0, "succeeded", 0), (1, "failed", 1), (2, "succeeded", 0)]
    assert rows[1]["error"] == "RuntimeError: rank 1 fails on purpose" and rows[1]["result"] is None
    assert "fails on purpose" in rows[1]["traceback"]
    for r in (rows[0], rows[2]):
        assert r["error"] is None and r["result"]["rank"] == r["rank"]
        assert r["result"]["jemalloc"], "the replica does not map jemalloc"
        _cache_of(r["result"]["speedups"], caches)  # from a launcher tree of its node
    assert len({r["node_id"] for r in rows}) == 2, "SPREAD: the 3 replicas use both nodes"
    for rank, log in enumerate(cluster_run["logs"]):
        assert log.splitlines()[0] == f"replica {rank} of 3 says hello", log
    assert cluster_run["logs"][1].splitlines()[-1] == "RuntimeError: rank 1 fails on purpose"
    assert cluster_run["polls"] == ["succeeded", "failed", "succeeded"]


def test_ray_replica_cancel_leaves_no_process(cluster_run: dict[str, Any]) -> None:
    assert cluster_run["sleeper_poll"] == "running"  # and its log was read while it ran
    assert len(cluster_run["sleeper_pids"]) == 2
    assert cluster_run["sleeper_alive"] == [False, False], "the replica or its child survived cancel"
    assert cluster_run["cancelled_poll"] == "cancelled"
    assert cluster_run["cancelled_row"] == {"status": "cancelled", "error": "cancelled"}


def test_launcher_cli_and_gate_never_import_ray(ray_python: str, tmp_path: Path) -> None:
    """Ray is an optional extra: `import launcher` (and launcher.ray itself),
    the CLI and the gate run without importing it, even where it is installed."""
    show = "import sys; print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    env = base_env(tmp_path / "cache")
    plain = subprocess.run([ray_python, "-c", "import launcher, launcher.ray, launcher.cli; " + show],
                           env=env, capture_output=True, text=True, timeout=120)
    assert (plain.returncode, plain.stdout.strip()) == (0, "[]"), plain.stderr
    launcher_cmd = str(Path(ray_python).parent / "launcher")
    gated = subprocess.run([launcher_cmd, "run", "--", ray_python, "-c", show], env=env,
                           capture_output=True, text=True, timeout=300)
    assert (gated.returncode, gated.stdout.strip()) == (0, "[]"), gated.stderr
    for args in (["--help"], ["doctor", "--help"], ["config"]):
        cli = subprocess.run([ray_python, "-X", "importtime", launcher_cmd, *args], env=env,
                             capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        assert not {m for m in imported_modules(cli.stderr) if m.split(".")[0] == "ray"}, args


# ------------------------------------------------------------------ without Ray


def test_runtime_env_is_the_launcher_command_and_the_flags() -> None:
    from launcher.ray import runtime_env

    env = runtime_env({"with": ["markupsafe", "six>=1"], "preload": ["jemalloc"], "offline": True,
                       "lock-timeout": 30},
                      base={"env_vars": {"MINE": "1"}, "working_dir": "s3://bucket/app.zip"})
    launcher_cmd = str(Path(sys.executable).parent / "launcher")
    assert env["py_executable"] == (
        f"{launcher_cmd} run --with markupsafe --with 'six>=1' --offline --preload jemalloc -- "
        f"{Path(sys.executable).parent / 'python'}")
    # Yours kept; a setting with no `run` option travels as its variable.
    assert env["env_vars"] == {"MINE": "1", "LAUNCHER_LOCK_TIMEOUT": "30.0"}
    assert env["working_dir"] == "s3://bucket/app.zip"
    # No cache dir, tree or bootstrap of this machine, whatever its environment says.
    assert set(env) == {"py_executable", "env_vars", "working_dir"}
    assert runtime_env() == {"py_executable": f"{launcher_cmd} run -- {Path(sys.executable).parent / 'python'}"}
    # Your own py_executable is what the launcher runs the worker with.
    assert runtime_env(base={"py_executable": "uv run --python 3.11"})["py_executable"].endswith(
        " run -- uv run --python 3.11")


def test_runtime_env_refuses_what_it_cannot_pass() -> None:
    from launcher.errors import UsageError
    from launcher.ray import runtime_env

    with pytest.raises(UsageError, match="unknown flag 'wiht'"):
        runtime_env({"wiht": ["six"]})
    with pytest.raises(UsageError, match="with"):
        runtime_env({"with": ["not a requirement!"]})
    with pytest.raises(ValueError, match="LAUNCHER_LOCK_TIMEOUT"):
        runtime_env({"lock-timeout": 5}, base={"env_vars": {"LAUNCHER_LOCK_TIMEOUT": "9"}})


def test_gpu_maps_to_ray_resources() -> None:
    from launcher.ray._replicas import gpu_resources

    assert gpu_resources(None) == {}
    assert gpu_resources("A100") == {"GPU": 1.0, "accelerator_type:A100": 0.001}
    assert gpu_resources("H100:8") == {"GPU": 8.0, "accelerator_type:H100": 0.001}
    assert gpu_resources("2") == {"GPU": 2.0}
    with pytest.raises(ValueError, match="gpu='A100:x'"):
        gpu_resources("A100:x")


def test_only_launcher_ray_imports_ray() -> None:
    """Statically, on the source: Ray stays an optional extra."""
    import ast

    src = REPO / "src" / "launcher"
    offenders = []
    for path in sorted(src.rglob("*.py")):
        if path.is_relative_to(src / "ray"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            offenders += [f"{path.relative_to(src)}: {n}" for n in names if n == "ray" or n.startswith("ray.")]
    assert offenders == []
    # ... and launcher.ray imports it only inside what needs a cluster.
    for path in (src / "ray").glob("*.py"):
        top = [n for n in ast.parse(path.read_text(encoding="utf-8")).body
               if isinstance(n, ast.Import | ast.ImportFrom)]
        assert not [n for n in top if "ray" in [*(a.name for a in n.names if isinstance(n, ast.Import)),
                                                  getattr(n, "module", None)]], path
