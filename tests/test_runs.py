"""Run records people read (issue 17, item 6): `launcher runs list|show
[--json]` show every interpreter of a recorded job as a process tree (pid,
parent, executable, ABI, runtime tree, the versions of the requested
packages it got, preloads mapped, exit status); `record = true` in the
config records like --record; `cache prune` ages records out; doctor points
at `launcher runs show`; a run is named by any unique prefix of its id."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import LAUNCHER, launcher, offline_with
from support import read_pty

CHILD = "import markupsafe, sys; sys.exit(3)"
KILLED = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"


@pytest.fixture
def recorded(py311: str, py313t: str, jemalloc: str, env: dict[str, str],
             tmp_path: Path) -> tuple[dict[str, str], dict[str, object]]:
    """A recorded job: a cp311 parent whose cp313t child exits 3 and whose
    cp311 child is killed by SIGKILL; jemalloc preloaded."""
    parent = ("import os, subprocess, sys; "
              f"r = subprocess.run([{py313t!r}, '-c', {CHILD!r}]); "
              f"subprocess.run([sys.executable, '-c', {KILLED!r}]); "
              "print(os.getpid(), r.returncode)")
    proc = launcher("run", "--record", "--preload", "jemalloc", *offline_with("markupsafe"), "--", py311, "-c",
                    parent, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    pid, child_rc = proc.stdout.split()
    assert child_rc == "3"
    return env, {"parent": int(pid), "py311": py311, "py313t": py313t, "cwd": tmp_path}


def test_runs_list_and_show_a_cp311_parent_and_its_cp313t_child(recorded: tuple[dict[str, str], dict]) -> None:
    env, job = recorded
    listed = json.loads(launcher("runs", "list", "--json", env=env, check=True).stdout)
    [run] = listed["runs"]
    assert run["interpreters"] == 3 and run["every_start"] is True and run["requirements"] == ["markupsafe"]
    assert [a.split("-")[0] for a in run["abis"]] == ["cp311", "cp313t"]
    assert run["command"][0] == job["py311"] and sorted(run["exit_statuses"].values()) == [-9, 3]

    text = launcher("runs", "list", env=env, check=True).stdout.splitlines()
    assert text[0].split() == ["RUN", "STARTED", "PYTHONS", "ABIS", "REQUIREMENTS", "COMMAND"]
    assert text[1].startswith(run["id"]) and "cp311,cp313t" in text[1] and "markupsafe" in text[1]

    # Any unique prefix names the run; the JSON is the shipped model.
    shown = json.loads(launcher("runs", "show", run["id"][:6], "--json", env=env, check=True).stdout)
    assert shown["id"] == run["id"] and shown["roots"] == [job["parent"]]
    procs = {p["pid"]: p for p in shown["processes"]}
    parent = procs[job["parent"]]
    child_pid, killed_pid = parent["children"]
    child, killed = procs[child_pid], procs[killed_pid]
    assert child["parent"] == job["parent"]
    assert parent["executable"] == job["py311"] and child["executable"] == job["py313t"]
    assert parent["abi_key"].startswith("cp311-") and child["abi_key"].startswith("cp313t-")
    assert parent["state"] == "hit" and child["state"] == "built"  # the launch knew only the parent
    for p in (parent, child):
        assert Path(p["tree"]).name.startswith(p["abi_key"]) and p["tree_present"]
        assert p["packages"] == {"markupsafe": "3.0.3"}
        assert any("libjemalloc" in lib for lib in p["preloads_mapped"]), p
    # Exit statuses: the parent's view of its children is exact (a kill too); the
    # top process ended without sys.exit: its status is not seen, never guessed.
    assert (child["exit_status"], child["exit_how"]) == (3, "reaped")
    assert (killed["exit_status"], killed["exit_how"]) == (-9, "reaped")
    assert (parent["exit_status"], parent["exit_how"]) == (None, "end")
    assert child["argv"] == [job["py313t"], "-c", CHILD]

    # Off a terminal: a plain tree, the child indented under its parent.
    lines = launcher("runs", "show", run["id"], env=env, check=True).stdout.splitlines()
    assert lines[0].startswith(f"run {run['id']}, started ") and lines[1] == "requirements: markupsafe"
    assert "\x1b" not in "".join(lines)
    top = lines.index(next(ln for ln in lines if ln.startswith(f"pid {job['parent']} (parent ")))
    sub = lines.index(next(ln for ln in lines if ln.startswith(f"  pid {child_pid} (parent {job['parent']}): ")))
    assert top < sub
    body = "\n".join(lines)
    assert re.search(r"runtime cp313t-\S+ \(built by its gate in \d+s\): markupsafe 3\.0\.3", body), body
    assert "exit 3 (seen by its parent)" in body and "killed by signal 9 (seen by its parent)" in body
    assert "ended; exit status not seen" in body and "preloads mapped: " in body


def test_runs_show_on_a_terminal_is_a_rich_tree(recorded: tuple[dict[str, str], dict]) -> None:
    env, job = recorded
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(LAUNCHER), "runs", "show"], stdout=slave, stderr=subprocess.PIPE,
                            env=dict(env, TERM="xterm-256color", COLUMNS="200"))
    os.close(slave)
    data = read_pty(master)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    out = re.sub(r"\x1b\[[0-9;]*m", "", data.decode())
    assert f"└── pid {job['parent']} (parent " in out and "    └── pid " in out, out


def test_a_run_is_named_by_a_unique_prefix(py311: str, env: dict[str, str], tmp_path: Path) -> None:
    assert launcher("runs", "show", env=env).returncode == 2  # nothing recorded yet: one line, exit 2
    for code, rc in (("import sys; sys.exit(5)", 5), ("1/0", 1)):
        assert launcher("run", "--record", "--", py311, "-c", code, env=env, cwd=tmp_path).returncode == rc
    ids = [r["id"] for r in json.loads(launcher("runs", "list", "--json", env=env, check=True).stdout)["runs"]]
    assert len(ids) == 2
    common = os.path.commonprefix(ids)
    ambiguous = launcher("runs", "show", common, env=env)
    assert ambiguous.returncode == 2 and f"matches 2 recorded runs ({ids[0]}, {ids[1]})" in ambiguous.stderr
    assert len(ambiguous.stderr.splitlines()) == 1
    unique = ids[1][:len(common) + 1]
    shown = json.loads(launcher("runs", "show", unique, "--json", env=env, check=True).stdout)
    assert shown["id"] == ids[1]
    # No recorded parent waited for these: what the interpreter saw of its own end.
    assert [(p["exit_status"], p["exit_how"]) for p in shown["processes"]] == [(1, "uncaught ZeroDivisionError")]
    first = json.loads(launcher("runs", "show", ids[0], "--json", env=env, check=True).stdout)
    assert [(p["exit_status"], p["exit_how"]) for p in first["processes"]] == [(5, "sys.exit")]
    latest = json.loads(launcher("runs", "show", "--json", env=env, check=True).stdout)
    assert latest["id"] == ids[1]  # the default: the latest run
    unknown = launcher("runs", "show", "zz", env=env)
    assert unknown.returncode == 2 and "no recorded run 'zz'" in unknown.stderr and "runs list" in unknown.stderr


def test_record_true_in_the_config_records_and_prune_ages_records_out(py311: str, env: dict[str, str],
                                                                       cache_dir: Path, tmp_path: Path) -> None:
    launcher("run", "--", py311, "-c", "pass", env=env, cwd=tmp_path, check=True)
    assert json.loads(launcher("runs", "list", "--json", env=env, check=True).stdout)["runs"] == []
    (tmp_path / "launcher.toml").write_text("record = true\n")
    launcher("run", "--", py311, "-c", "pass", env=env, cwd=tmp_path, check=True)
    [run] = json.loads(launcher("runs", "list", "--json", env=env, check=True).stdout)["runs"]
    assert run["every_start"] and run["interpreters"] == 1

    doctor = launcher("doctor", "--json", env=env, cwd=tmp_path)
    [rec] = [f for g in json.loads(doctor.stdout)["groups"] for f in g["findings"] if f["check"] == "record"]
    assert rec["status"] == "ok" and f"launcher runs show {run['id']}" in rec["message"]

    [path] = (cache_dir / "runs").glob("*.jsonl")
    kept = launcher("cache", "prune", "--older-than", "1d", env=env, check=True)
    assert path.exists(), kept.stdout
    old = time.time() - 3 * 86400
    os.utime(path, (old, old))
    launcher("cache", "prune", "--older-than", "1d", env=env, check=True)
    assert not path.exists()
    assert json.loads(launcher("runs", "list", "--json", env=env, check=True).stdout)["runs"] == []
