"""The Ray row: tasks on a 2-node cluster whose workers start through
`launcher.ray.runtime_env` vs plain Ray with the same package preinstalled.

Needs the Ray venv (`make ray-env`, or LAUNCHER_TEST_RAY_PYTHON) and root
for the network namespace the cluster runs in (Ray binds the machine's
address otherwise)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from pathlib import Path

from _measure import CommandFailed
from _rows import Row, Scale
from _workspace import REPO, WHEELHOUSE, Missing, Workspace

RAY_BENCH = Path(__file__).resolve().parent / "_ray_bench.py"


def _ray_python() -> str:
    python = os.environ.get("LAUNCHER_TEST_RAY_PYTHON") or str(REPO / ".venv-ray" / "bin" / "python")
    if not os.path.isfile(python):
        raise Missing(f"{python} is absent: run 'make ray-env' (or set LAUNCHER_TEST_RAY_PYTHON)")
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        raise Missing("the Ray row needs root, unshare and ip (a network namespace for the cluster)")
    return python


def _preinstalled(ws: Workspace) -> Path:
    """markupsafe installed into a plain directory, for side B's PYTHONPATH."""
    target = ws.root / "ray-preinstalled"
    if not target.exists():
        from uv import find_uv_bin

        subprocess.run([find_uv_bin(), "pip", "install", "--quiet", "--target", str(target), "--python",
                        _ray_python(), "--offline", "--no-index", "--find-links", str(WHEELHOUSE),
                        "markupsafe"], check=True, capture_output=True, env=ws.base_env(), timeout=300)
    return target


def ray_tasks(ws: Workspace, scale: Scale, row: Row) -> Row:
    try:
        python = _ray_python()
    except Missing as exc:
        row.note = str(exc)
        return row
    pairs = max(3, scale.executor // 3)  # Ray batches swing widely (0.1x-30x a pair): many pairs
    first = max(2, scale.executor // 75)
    env = dict(ws.base_env(), RAY_TMPDIR=str(ws.root / "ray"), RAY_AUTH_MODE="disabled",
               RAY_USAGE_STATS_ENABLED="0")
    argv = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", python, str(RAY_BENCH),
            str(pairs), str(first), str(ws.root / "ray-cache"), str(WHEELHOUSE), str(_preinstalled(ws))]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800, cwd=ws.work)
    if proc.returncode != 0:
        raise CommandFailed(f"{RAY_BENCH.name}: {proc.stderr.strip()[-600:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    ratios = [x / y for x, y in zip(got["a"], got["b"], strict=True)]
    fa, fb = statistics.median(got["first_a"]), statistics.median(got["first_b"])
    row.summary = {"pairs": len(ratios), "median": statistics.median(ratios), "min": min(ratios),
                   "max": max(ratios), "a_ms": statistics.median(got["a"]) * 1e3,
                   "b_ms": statistics.median(got["b"]) * 1e3, "first_task_a_ms": fa * 1e3,
                   "first_task_b_ms": fb * 1e3, "first_task_pairs": len(got["first_a"])}
    row.note = (f"checked first: {got['note']}. First task on a fresh worker (max_calls=1), "
                f"median of {len(got['first_a'])}: {fa * 1e3:.0f} ms under the launcher vs "
                f"{fb * 1e3:.0f} ms plain ({fa / fb:.2f}x; not judged)")
    return row.judge()
