"""Preloads under a real torchrun (issue 3): the agent and every rank.

Needs a python with torch (CPU build): point LAUNCHER_TEST_TORCH_PYTHON at
it.  CI makes one with `make torch-env`:

    python3 -m venv .venv-torch && .venv-torch/bin/pip install torch==2.13.0
    LAUNCHER_TEST_TORCH_PYTHON=.venv-torch/bin/python
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import LAUNCHER, REPO, missing, offline_with

SKIP = "set LAUNCHER_TEST_TORCH_PYTHON (CI: make torch-env)"


@pytest.fixture(scope="session")
def torch_python() -> str:
    """The torch venv's python, checked once per session, or skip."""
    python = os.environ.get("LAUNCHER_TEST_TORCH_PYTHON") or str(REPO / ".venv-torch" / "bin" / "python")
    if not os.path.isfile(python):
        missing(SKIP)
    check = subprocess.run([python, "-c", "import torch.distributed as d; assert d.is_available()"],
                           capture_output=True, text=True, timeout=300)
    if check.returncode != 0:
        missing(f"{python} cannot import torch.distributed; {SKIP}")
    return os.path.abspath(python)


RANK = r'''
import json, os, sys
import torch
import torch.distributed as dist

def jemalloc(pid="self"):
    with open("/proc/%s/maps" % pid) as f:
        return "/libjemalloc" in f.read()

dist.init_process_group("gloo")
t = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(t)
# One write per line: ranks share the pipe, and PYTHONUNBUFFERED print()
# writes the text and its newline separately.
sys.stdout.write(json.dumps({
    "rank": dist.get_rank(),
    "sum": t.item(),
    "pid": os.getpid(),
    "ppid": os.getppid(),
    "jemalloc": jemalloc(),
    "agent_jemalloc": jemalloc(os.getppid()),
    "executable": sys.executable,
    "bootstrap": os.environ.get("LAUNCHER_BOOTSTRAP"),
    "ld_preload": os.environ.get("LD_PRELOAD", "<unset>"),
}) + "\n")
sys.stdout.flush()
dist.destroy_process_group()
'''


def _shebang(script: str) -> str:
    """The interpreter a bare run of `script` gets: sys.executable of the agent and its ranks."""
    return Path(script).read_text().splitlines()[0][2:].strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_agent_and_every_rank_are_preloaded(torch_python: str, jemalloc: str, env: dict[str, str],
                                                     tmp_path: Path) -> None:
    torchrun = str(Path(torch_python).parent / "torchrun")
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    env["OMP_NUM_THREADS"] = "1"
    # --record: every gate start (agent and ranks) leaves a line we can check.
    # A free port, not the default 29500: other test runs may share the host.
    proc = subprocess.Popen(
        [str(LAUNCHER), "run", "--record", "--preload", "jemalloc", "--", torchrun,
         "--nproc-per-node", "2", "--master-port", str(_free_port()), str(script)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"stdout: {out}\nstderr: {err}"
    ranks = sorted((json.loads(x) for x in out.splitlines() if x.startswith("{")), key=lambda r: r["rank"])

    assert [r["rank"] for r in ranks] == [0, 1], out
    for r in ranks:
        assert r["sum"] == 3.0
        assert r["jemalloc"], f"rank {r['rank']} does not map jemalloc"
        assert r["executable"] == _shebang(torchrun), "sys.executable must be what a bare run gives"
        assert r["ld_preload"] == "<unset>", "the caller's LD_PRELOAD was not restored"
        # launcher exec'd the shim, which exec'd the agent: same pid as launcher.
        assert r["ppid"] == proc.pid, "the rank's parent is not the torchrun agent"
        assert r["agent_jemalloc"], "the torchrun agent does not map jemalloc"

    runs = list((Path(env["LAUNCHER_CACHE_DIR"]) / "runs").glob("*.jsonl"))
    gates = {e["pid"]: e for r in runs for e in map(json.loads, r.read_text().splitlines())
             if e.get("event") == "gate"}
    for pid in (proc.pid, *(r["pid"] for r in ranks)):
        assert gates.get(pid, {}).get("via_shim") is True, f"pid {pid}: {gates.get(pid)}"
        assert gates[pid]["preloads_mapped"] == [jemalloc]


# Ranks on the interpreter the user names in PYTHON_EXEC: no torch there, so
# the rank script only reports where it runs and what it imported.
PLAIN_RANK = r'''
import json, os, sys
import markupsafe._speedups as speedups
with open("/proc/self/maps") as f:
    maps = f.read()
sys.stdout.write(json.dumps({
    "rank": int(os.environ["RANK"]),
    "executable": sys.executable,
    "free_threaded": "t" in getattr(sys, "abiflags", ""),
    "speedups": speedups.__file__,
    "jemalloc": "/libjemalloc" in maps,
    "ppid": os.getppid(),
}) + "\n")
sys.stdout.flush()
'''


def _ranks(torchrun: str, script: Path, env: dict[str, str]) -> list[dict]:
    proc = subprocess.run(
        [str(LAUNCHER), "run", *offline_with("markupsafe"), "--preload", "jemalloc", "--", torchrun,
         "--nproc-per-node", "2", "--master-port", str(_free_port()), str(script)],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    ranks = sorted((json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")),
                   key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1], proc.stdout
    return ranks


def test_ranks_run_on_the_users_python_exec_with_preloads_and_their_own_tree(
        torch_python: str, jemalloc: str, env: dict[str, str], py313t: str, tmp_path: Path) -> None:
    torchrun = str(Path(torch_python).parent / "torchrun")
    script = tmp_path / "rank.py"
    script.write_text(PLAIN_RANK)
    env["OMP_NUM_THREADS"] = "1"

    env["PYTHON_EXEC"] = py313t
    for r in _ranks(torchrun, script, env):
        assert r["executable"] == py313t and r["free_threaded"], f"rank {r['rank']} is not on 3.13t: {r}"
        assert "/trees/cp313t-" in r["speedups"] and r["speedups"].endswith(".cpython-313t-x86_64-linux-gnu.so")
        assert r["jemalloc"], f"rank {r['rank']} does not map jemalloc"

    del env["PYTHON_EXEC"]
    for r in _ranks(torchrun, script, env):
        assert r["executable"] == _shebang(torchrun) and not r["free_threaded"], r
        # The torch venv has its own markupsafe (torch needs jinja2): it wins by default.
        assert r["speedups"].endswith(".cpython-311-x86_64-linux-gnu.so")
        assert r["jemalloc"], f"rank {r['rank']} does not map jemalloc"
