"""Trees are published atomically, verified, rebuilt when tampered with, and never mixed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import LAUNCHER, installs, launcher, offline_with, unreachable_with

IMPORT = "import markupsafe, sys; sys.stdout.write(markupsafe.__file__)"


def visible_trees(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "trees").iterdir() if not p.name.startswith("."))


def test_kill_9_midway_leaves_no_tree(tmp_path: Path, env: dict[str, str], cache_dir: Path,
                                      py313: str) -> None:
    from uv import find_uv_bin

    marker = tmp_path / "installed"
    slow_uv = tmp_path / "slow-uv"
    # The real installer, then a pause before the launcher can validate and publish
    # (the resolution before it, `uv pip compile`, goes at full speed).
    slow_uv.write_text(f"#!/bin/sh\n{find_uv_bin()} \"$@\" || exit $?\n"
                       f"[ \"$2\" = install ] || exit 0\ntouch {marker}\nsleep 60\n")
    slow_uv.chmod(0o755)
    env_slow = dict(env, LAUNCHER_UV=str(slow_uv))
    proc = subprocess.Popen([str(LAUNCHER), "run", *offline_with("markupsafe"), "--", py313, "-c", IMPORT],
                            env=env_slow, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert visible_trees(cache_dir) == []  # nothing half-built is visible
    assert any(p.name.startswith(".tmp-") for p in (cache_dir / "trees").iterdir())

    ok = launcher("run", *offline_with("markupsafe"), "--", py313, "-c", IMPORT, env=env, check=True)
    assert "/trees/cp313-" in ok.stdout
    assert len(visible_trees(cache_dir)) == 1
    assert not any(p.name.startswith(".tmp-") for p in (cache_dir / "trees").iterdir())


def test_tampered_tree_is_rebuilt(env: dict[str, str], cache_dir: Path, py313: str) -> None:
    launcher("run", *offline_with("markupsafe"), "--", py313, "-c", IMPORT, env=env, check=True)
    (tree,) = visible_trees(cache_dir)
    init = cache_dir / "trees" / tree / "markupsafe" / "__init__.py"
    # Replaced the way editors and tools do (write aside, rename over): its
    # read-only directory changes, and that is what the warm path checks.
    # (An in-place edit keeps every directory as it was: `launcher cache
    # verify` and the full path catch those; see test_cache_trust.py.)
    aside = init.with_name(".edit")
    aside.write_text(init.read_text() + "\nraise ImportError('tampered')\n")
    os.replace(aside, init)
    # The same command again: the warm path must notice, not exec blindly.
    ok = launcher("run", *offline_with("markupsafe"), "--", py313, "-c", IMPORT, env=env, check=True)
    assert "tampered" not in ok.stderr
    rebuilt = installs(cache_dir, "rebuilt")
    assert len(rebuilt) == 1 and "markupsafe/__init__.py" in rebuilt[0]["detail"]

    manifest = cache_dir / "trees" / tree / ".launcher-manifest.json"
    data = json.loads(manifest.read_text())
    data["requirements"] = ["evil"]
    manifest.write_text(json.dumps(data))
    launcher("run", *offline_with("markupsafe"), "--", py313, "-c", IMPORT, env=env, check=True)
    rebuilt = installs(cache_dir, "rebuilt")
    assert len(rebuilt) == 2 and rebuilt[1]["detail"] == "manifest was modified after publishing"
    assert json.loads(manifest.read_text())["requirements"] == ["markupsafe"]


def test_two_requirement_sets_never_mix(env: dict[str, str], cache_dir: Path, py311: str) -> None:
    probe = "import importlib.util as u; print(bool(u.find_spec('six')), bool(u.find_spec('markupsafe')))"
    a = launcher("run", *offline_with("six"), "--", py311, "-c", probe, env=env, check=True)
    b = launcher("run", *offline_with("markupsafe"), "--", py311, "-c", probe, env=env, check=True)
    assert a.stdout.split() == ["True", "False"]
    assert b.stdout.split() == ["False", "True"]
    trees = visible_trees(cache_dir)
    assert len(trees) == 2 and len({t.rsplit("-", 1)[1] for t in trees}) == 2


def test_failed_build_in_worker_never_breaks_workload(tmp_path: Path, env: dict[str, str],
                                                      cache_dir: Path, py313: str) -> None:
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/sh\nfor i in 1 2 3; do {py313} -c 'print(\"payload\", 42)'; done\n")
    script.chmod(0o755)
    bare = subprocess.run([str(script)], capture_output=True, env=env)
    proc = subprocess.run([str(LAUNCHER), "run", *unreachable_with("no-such-package-xyz"), "--", str(script)],
                          capture_output=True, env=env)
    assert proc.returncode == 0
    assert proc.stdout == bare.stdout  # byte-identical
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 3 and all(ln.startswith("launcher: ") for ln in lines)
    assert "cp313-x86_64-linux-gnu" in lines[0] and "launcher doctor" in lines[0]
    # The first worker built and failed; the others remembered it instead of retrying.
    assert len(installs(cache_dir, "failed")) == 1
    # ... and say why, from the remembered failure, not just that it failed.
    assert all("build failed" in ln and "ago (" in ln and "no-such-package-xyz" in ln for ln in lines[1:])
