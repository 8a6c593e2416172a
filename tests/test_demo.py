"""`make demo` (issue 13): labelled columns, the full `launcher run` line it
runs, one preload (jemalloc, or a clear line why not), and a missing shared
directory is one clear line with no stamp written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from conftest import LAUNCHER, SHARED, missing
from support import FOREIGN, REPO


def _demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LAUNCHER.parent / "python"), "examples/demo.py"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def _env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHER_") and k != "PYTHONPATH"}
    e.update(extra)
    return e


def test_demo_shows_columns_the_command_and_a_preload() -> None:
    from launcher import preload
    from launcher.errors import UsageError

    proc = _demo(_env(SHARED=str(SHARED)))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    [cmd] = [ln for ln in lines if ln.startswith("$ ")]
    assert cmd.startswith(f"$ launcher run --with markupsafe --find-links {SHARED / 'wheelhouse'} --offline")
    assert cmd.endswith("/venv311/bin/python examples/fanout.py")
    header = lines[lines.index(cmd) + 1]
    assert header.split() == ["PROCESS", "PID", "ABI", "(extension", "suffix)", "JEMALLOC", "MARKUPSAFE",
                              "IMPORTED", "FROM"]
    rows = [ln for ln in lines if re.match(r"(parent|spawn worker|subprocess) ", ln)]
    assert len(rows) >= 3
    try:
        preload.resolve(["jemalloc"], machine=os.uname().machine)
    except UsageError:
        assert " --preload " not in cmd and "demo: no jemalloc preload on this machine (" in proc.stdout
        assert all(" no " in r for r in rows)
    else:
        assert " --preload jemalloc -- " in cmd
        assert all(re.search(r" yes +<cache>/trees/", r) for r in rows), rows
    # One tree per ABI the job ran: the parent's 3.11 and each foreign child present, each once.
    trees = lines[lines.index("runtime trees built (one per ABI):") + 1:]
    abis = {"cp311"} | {abi for abi, exe in (("cp313", FOREIGN["3.13"]), ("cp313t", FOREIGN["3.13t"]))
                        if exe.exists()}
    assert all(t.startswith("  ") for t in trees) and len(trees) == len(abis), trees
    assert sorted(t.split()[0].split("-")[0] for t in trees) == sorted(abis), trees


def test_demo_without_the_shared_dir_is_one_line(tmp_path: Path) -> None:
    proc = _demo(_env(SHARED=str(tmp_path / "nowhere")))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"demo: the offline wheelhouse {tmp_path / 'nowhere' / 'wheelhouse'} is missing: set SHARED=DIR to "
        "the shared directory (make demo SHARED=DIR)"]


def test_make_pythons_without_shared_is_one_line_and_writes_no_stamp(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        missing("make is not installed: apt-get install make")
    pythons = tmp_path / "pythons"
    proc = subprocess.run([make, "--no-print-directory", "pythons", f"SHARED={tmp_path / 'nowhere'}",
                           f"PYTHONS={pythons}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert f"no interpreters in {tmp_path / 'nowhere'}/pythons/*.tar.xz" in line and "SHARED=" in line
    assert not (pythons / ".stamp").exists()
    # A broken archive: an error, and still no stamp (the next run retries).
    (tmp_path / "bad" / "pythons").mkdir(parents=True)
    (tmp_path / "bad" / "pythons" / "broken.tar.xz").write_bytes(b"not xz")
    proc = subprocess.run([make, "--no-print-directory", "pythons", f"SHARED={tmp_path / 'bad'}",
                           f"PYTHONS={pythons}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "cannot unpack" in proc.stderr
    assert not (pythons / ".stamp").exists()
