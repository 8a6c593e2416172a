"""`launcher cache list/info/prune/clear` on a cache holding real trees for
3.11, 3.13 and free-threaded 3.13, and the rule that a tree a live process
holds is never removed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import base_env, launcher, missing, offline_with

DAY = 86400
SIX = "import six, sys; sys.stdout.write(six.__file__)"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, py311: str, py313: str, py313t: str) -> Path:
    """A cache with one `--with six` tree per interpreter, built by `launcher run`."""
    cache = tmp_path_factory.mktemp("cache-template") / "cache"
    env = base_env(cache)
    for i, python in enumerate((py311, py313, py313t)):
        extra = ["--record"] if i == 0 else []  # leaves a run record to prune
        proc = launcher("run", *extra, *offline_with("six"), "--", python, "-c", SIX, env=env, check=True)
        assert proc.stdout.startswith(str(cache / "trees")), proc.stdout
    return cache


@pytest.fixture
def cache(template: Path, tmp_path: Path) -> Path:
    """A private copy (mtimes kept, so every tree still verifies) a test may destroy."""
    dst = tmp_path / "cache"
    shutil.copytree(template, dst, symlinks=True)
    return dst


def cache_json(cache: Path, *args: str) -> Any:
    return json.loads(launcher("cache", *args, "--json", env=base_env(cache), check=True).stdout)


def trees_by_abi(cache: Path) -> dict[str, Path]:
    return {p.name.split("-")[0]: p for p in (cache / "trees").iterdir() if not p.name.startswith(".")}


def age(cache: Path, tree: Path, days: float) -> None:
    """Make `tree` look unused for `days`: its use stamp and its access time."""
    then = time.time() - days * DAY
    os.utime(cache / "used" / tree.name, (then, then))
    os.utime(tree, (then, os.stat(tree).st_mtime))


def test_list(cache: Path, py311: str, py313: str, py313t: str) -> None:
    got = cache_json(cache, "list")
    assert got["root"] == str(cache)
    rows = {t["abi_key"].split("-")[0]: t for t in got["trees"]}
    assert set(rows) == {"cp311", "cp313", "cp313t"}
    for abi, python in (("cp311", py311), ("cp313", py313), ("cp313t", py313t)):
        t = rows[abi]
        assert t["interpreter"] == python
        assert t["abi_key"].startswith(abi + "-x86_64-linux-gnu-glibc")
        assert t["requirements"] == ["six"]
        assert t["distributions"] == ["six==1.17.0"]
        assert t["status"] == "valid" and t["problem"] is None
        assert 10_000 < t["size"] < 1_000_000
        # `launcher run` stamped it; the import (and our copy) read it since.
        assert (cache / "used" / t["name"]).is_file()
        assert t["last_used_from"] in ("prepared", "access time")
        assert time.time() - t["last_used"] < 3600
    assert rows["cp313"]["interpreter_version"].startswith("3.13")
    assert len({t["spec_hash"] for t in rows.values()}) == 1

    text = launcher("cache", "list", env=base_env(cache), check=True).stdout.splitlines()
    assert text[0].split() == ["TREE", "PYTHON", "REQUIREMENTS", "SIZE", "USED", "STATUS"]
    assert len(text) == 4
    assert all(ln.rstrip().endswith("valid") and " six " in ln for ln in text[1:])


def test_info(cache: Path) -> None:
    got = cache_json(cache, "info")
    assert got["root"] == str(cache) and got["exists"]
    assert got["trees"] == 3 and got["trees_by_status"] == {"valid": 3}
    assert got["run_records"] == 1
    assert got["tree_bytes"] > 0 and got["total_bytes"] > got["tree_bytes"]
    text = launcher("cache", "info", env=base_env(cache), check=True).stdout
    assert f"cache dir:        {cache}\n" in text
    assert "runtime trees:    3 (3 valid)" in text


def test_looking_is_not_using(cache: Path) -> None:
    """list/info/prune --dry-run must not bump what they report as last use."""
    tree = trees_by_abi(cache)["cp313"]
    age(cache, tree, 40)
    for args in (("list",), ("info",), ("prune", "--dry-run")):
        launcher("cache", *args, env=base_env(cache), check=True)
    (row,) = [t for t in cache_json(cache, "list")["trees"] if t["name"] == tree.name]
    assert 39 * DAY < time.time() - row["last_used"] < 41 * DAY


def test_a_use_through_the_gate_counts(cache: Path, py313: str) -> None:
    """The warm path records nothing itself; the kernel's access time on the
    tree directory (an import lists it) is what makes it recently used."""
    tree = trees_by_abi(cache)["cp313"]
    age(cache, tree, 40)
    probe = tree.parent / ".atime-probe"
    probe.mkdir()
    os.utime(probe, (time.time() - 40 * DAY, os.stat(probe).st_mtime))
    os.listdir(probe)
    if time.time() - os.stat(probe).st_atime > DAY:
        missing("this filesystem does not update access times (noatime)")
    probe.rmdir()
    env = base_env(cache)
    # Exactly the environment `launcher run` gives its command, without prepare().
    first = launcher("run", *offline_with("six"), "--", py313, "-c",
                     "import json, os; print(json.dumps(dict(os.environ)))", env=env, check=True)
    age(cache, tree, 40)
    child_env = json.loads(first.stdout)
    proc = subprocess.run([py313, "-c", SIX], env=child_env, capture_output=True, text=True, check=True)
    assert proc.stdout.startswith(str(tree))
    (row,) = [t for t in cache_json(cache, "list")["trees"] if t["name"] == tree.name]
    assert time.time() - row["last_used"] < 600
    assert row["last_used_from"] == "access time"


def test_prune_by_age_and_leftovers(cache: Path) -> None:
    trees = trees_by_abi(cache)
    age(cache, trees["cp311"], 40)
    age(cache, trees["cp313t"], 31)
    # A killed build's temp dir (its pid is gone) and a trash dir.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = cache / "trees" / f".tmp-{trees['cp313'].name}-{dead}-123"
    (stale / "six").mkdir(parents=True)
    (stale / "six" / "x.py").write_text("x = 1\n")
    (run_record,) = (cache / "runs").glob("*.jsonl")
    then = time.time() - 40 * DAY
    os.utime(run_record, (then, then))
    fresh_record = cache / "runs" / "fresh.jsonl"
    fresh_record.write_text("{}\n")

    dry = cache_json(cache, "prune", "--dry-run")
    assert dry["dry_run"]
    assert sorted(Path(r["path"]).name for r in dry["removed"] if r["kind"] == "tree") == sorted(
        [trees["cp311"].name, trees["cp313t"].name])
    assert all(p.exists() for p in trees.values()) and stale.exists() and run_record.exists()

    proc = launcher("cache", "prune", "--older-than", "30d", env=base_env(cache), check=True)
    assert f"removed tree {trees['cp311']} " in proc.stdout
    assert f"removed tree {trees['cp313t']} " in proc.stdout
    assert f"removed build-dir {stale} " in proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("freed ")
    assert not trees["cp311"].exists() and not trees["cp313t"].exists() and not stale.exists()
    assert trees["cp313"].exists()
    assert not run_record.exists() and fresh_record.exists()
    assert not (cache / "used" / trees["cp311"].name).exists()
    assert [t["abi_key"].split("-")[0] for t in cache_json(cache, "list")["trees"]] == ["cp313"]
    assert not list((cache / "trees").glob(".trash-*"))

    # Nothing left is that old.
    got = cache_json(cache, "prune", "--older-than", "1h")
    assert got["removed"] == [] and got["freed_bytes"] == 0


def test_prune_removes_invalid_and_refuses_symlinks(cache: Path, tmp_path: Path) -> None:
    trees = trees_by_abi(cache)
    with open(trees["cp313"] / "six.py", "a") as f:
        f.write("# tampered\n")
    incomplete = cache / "trees" / "cp399-x86_64-linux-gnu-glibc2.36-0123456789ab"
    incomplete.mkdir()
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    (incomplete / "link-out").symlink_to(outside)
    linked = cache / "trees" / "cp398-x86_64-linux-gnu-glibc2.36-0123456789ab"
    linked.symlink_to(outside)

    rows = {t["name"]: t for t in cache_json(cache, "list")["trees"]}
    assert rows[trees["cp313"].name]["status"] == "invalid"
    assert "six.py" in rows[trees["cp313"].name]["problem"]
    assert rows[incomplete.name]["status"] == "incomplete"
    assert rows[linked.name]["status"] == "symlink"

    proc = launcher("cache", "prune", env=base_env(cache), check=True)
    assert f"skipped {linked}: is a symlink" in proc.stderr
    assert not trees["cp313"].exists() and not incomplete.exists()
    assert trees["cp311"].exists() and trees["cp313t"].exists()  # valid and recent
    assert linked.is_symlink() and (outside / "keep.txt").read_text() == "mine"


def _hold(argv: list[str], env: dict[str, str], **kw: Any) -> subprocess.Popen[str]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "ready" in line, (line, proc.stderr.read() if proc.stderr and proc.poll() is not None else "")
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.communicate()


def test_prune_skips_a_tree_a_live_process_holds(cache: Path, py311: str) -> None:
    """A pure-Python package leaves nothing open or mapped: the process is
    recognised by the `launcher run` environment it was started with."""
    trees = trees_by_abi(cache)
    env = base_env(cache)
    code = "import six, time; print('ready', six.__file__, flush=True); time.sleep(120)"
    worker = subprocess.Popen([str(Path(sys.executable).parent / "launcher"), "run", *offline_with("six"),
                               "--", py311, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline()
        assert line.startswith("ready " + str(trees["cp311"])), line
        proc = launcher("cache", "prune", "--older-than", "0s", env=env, check=True)
        assert f"launcher: skipped {trees['cp311']}: in use by pid {worker.pid} (" in proc.stderr
        assert "started under 'launcher run' with this requirement set" in proc.stderr
        assert trees["cp311"].exists()
        assert not trees["cp313"].exists() and not trees["cp313t"].exists()  # the ABIs it does not use
        (row,) = cache_json(cache, "list")["trees"]
        assert row["status"] == "valid"
    finally:
        _stop(worker)
    proc = launcher("cache", "prune", "--older-than", "0s", env=env, check=True)
    assert f"removed tree {trees['cp311']} " in proc.stdout
    assert cache_json(cache, "list")["trees"] == []


def test_prune_skips_locked_open_and_cwd(cache: Path, env: dict[str, str]) -> None:
    """The other ways to hold a tree: its build lock, an open file, a cwd."""
    trees = trees_by_abi(cache)
    plain = {k: v for k, v in env.items() if not k.startswith("LAUNCHER_")}
    lock = cache / "locks" / f"{trees['cp311'].name}.lock"
    locker = _hold([sys.executable, "-c",
                    "import filelock, os, sys, time; l = filelock.FileLock(sys.argv[1]); l.acquire(); "
                    "open(sys.argv[1][:-5] + '.pid', 'w').write(str(os.getpid())); "
                    "print('ready', flush=True); time.sleep(120)", str(lock)], plain)
    opener = _hold([sys.executable, "-c",
                    "import sys, time; f = open(sys.argv[1]); print('ready', flush=True); time.sleep(120)",
                    str(trees["cp313"] / "six.py")], plain)
    sitter = _hold(["sh", "-c", "echo ready; exec sleep 120"], plain, cwd=trees["cp313t"])
    try:
        got = cache_json(cache, "prune", "--older-than", "0s")
        skipped = {Path(s["path"]).name.split("-")[0]: s for s in got["skipped"]}
        assert skipped["cp311"]["reason"] == f"its build lock is held by pid {locker.pid} (building it)"
        assert skipped["cp313"]["reason"].startswith(f"in use by pid {opener.pid} (")
        assert "has files in it open" in skipped["cp313"]["reason"]
        assert skipped["cp313t"]["pids"] == [sitter.pid]
        assert "working directory" in skipped["cp313t"]["reason"]
        assert [r for r in got["removed"] if r["kind"] == "tree"] == []
        assert all(p.is_dir() for p in trees.values())
    finally:
        for p in (locker, opener, sitter):
            _stop(p)


def test_clear(cache: Path) -> None:
    trees = trees_by_abi(cache)
    sitter = _hold(["sh", "-c", "echo ready; exec sleep 120"], base_env(cache), cwd=trees["cp313"])
    try:
        proc = launcher("cache", "clear", env=base_env(cache), check=True)
    finally:
        _stop(sitter)
    assert f"launcher: skipped {trees['cp313']}: in use by pid {sitter.pid}" in proc.stderr
    assert [p.name for p in (cache / "trees").iterdir()] == [trees["cp313"].name]
    assert not list((cache / "runs").iterdir())
    assert not list((cache / "probes").iterdir())
    # Kept: requirement sets (running jobs rebuild from them) and the gate.
    assert list((cache / "specs").glob("*.json"))
    assert list((cache / "bootstrap").iterdir())
    assert cache_json(cache, "clear")["removed"][0]["path"] == str(trees["cp313"])


def test_bad_age(cache: Path) -> None:
    proc = launcher("cache", "prune", "--older-than", "soon", env=base_env(cache))
    assert proc.returncode == 2
    assert proc.stderr == ("launcher: --older-than 'soon' is not an age "
                           "(use a number with a unit: 30d, 12h, 90m, 45s or 2w)\n")


def test_list_fits_the_terminal_and_its_names_are_what_the_other_commands_take(cache: Path) -> None:
    """Issue 20: a table within COLUMNS=100 whose TREE column verify, info and
    prune accept, and unique prefixes of a name or of its spec hash."""
    env = dict(base_env(cache), COLUMNS="100")
    out = launcher("cache", "list", env=env, check=True).stdout
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["TREE", "PYTHON"]
    assert all(len(line) <= 100 for line in lines), out
    names = [line.split()[0] for line in lines[1:]]
    assert sorted(names) == sorted(trees_by_abi(cache)[a].name for a in ("cp311", "cp313", "cp313t"))
    for name in names:
        assert launcher("cache", "verify", name, env=env, check=True).stdout.startswith(f"ok        {name}")
        assert json.loads(launcher("cache", "info", name, "--json", env=env, check=True).stdout)["name"] == name
    cp311 = trees_by_abi(cache)["cp311"].name
    for prefix in ("cp311", "cp311-x86"):
        assert f"tree:           {cp311}" in launcher("cache", "info", prefix, env=env, check=True).stdout
    # One requirement set, three ABIs: a spec hash alone names all three.
    short_hash = cp311.rsplit("-", 1)[1][:6]
    assert "matches 3 runtime trees" in launcher("cache", "info", short_hash, env=env).stderr
    ambiguous = launcher("cache", "verify", "cp313", env=env)  # cp313 and cp313t
    assert ambiguous.returncode == 2
    [line] = ambiguous.stderr.splitlines()
    assert "'cp313' is ambiguous: it matches 2 runtime trees" in line, line
    pruned = launcher("cache", "prune", "cp311", "--json", env=env, check=True).stdout
    assert [r["path"] for r in json.loads(pruned)["removed"]] == [str(cache / "trees" / cp311)]
    assert not (cache / "trees" / cp311).exists() and len(trees_by_abi(cache)) == 2


def test_cache_dir_prints_the_root(tmp_path: Path) -> None:
    env = base_env(tmp_path / "not-yet")
    assert launcher("cache", "dir", env=env, check=True).stdout == f"{tmp_path / 'not-yet'}\n"
    assert launcher("cache", "dir", "--cache-dir", str(tmp_path / "x"), env=env,
                    check=True).stdout == f"{tmp_path / 'x'}\n"


def test_prewarm_json(cache: Path, py311: str) -> None:
    proc = launcher("prewarm", "--json", "-p", py311, *offline_with("six"), env=base_env(cache), check=True)
    got = json.loads(proc.stdout)
    [job] = got["trees"]
    assert got["failed"] == 0 and job["state"] == "present" and job["tree"] == trees_by_abi(cache)["cp311"].name
    assert proc.stderr == ""
