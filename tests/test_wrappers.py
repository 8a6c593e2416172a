"""Interpreters the launcher cannot see get their tree from the gate, in-process."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from conftest import installs, launcher, offline_with

REPORT = (
    "import json, os, sys, markupsafe._speedups as s; "
    "sys.stdout.write(json.dumps({'exe': sys.executable, 'pid': os.getpid(), 'from': s.__file__}) + '\\n')"
)


def rows(stdout: str) -> list[dict]:
    return [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]


def test_bash_script_children(tmp_path: Path, env: dict[str, str], cache_dir: Path,
                              py313: str, py313t: str) -> None:
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\nset -e\n{py313} -c \"$1\"\n{py313t} -c \"$1\"\n")
    script.chmod(0o755)
    proc = launcher("run", *offline_with("markupsafe"), "--", str(script), REPORT, env=env, check=True)
    got = rows(proc.stdout)
    assert [Path(r["from"]).name for r in got] == [
        "_speedups.cpython-313-x86_64-linux-gnu.so", "_speedups.cpython-313t-x86_64-linux-gnu.so"]
    built = installs(cache_dir)
    # The launcher could not see inside the script: both were built by the gate,
    # each at the request of the worker itself.
    assert sorted(b["abi_key"].split("-")[0] for b in built) == ["cp313", "cp313t"]
    assert {int(b["requested_by"]) for b in built} == {r["pid"] for r in got}


def test_uv_run(env: dict[str, str], cache_dir: Path, py313: str, tmp_path: Path) -> None:
    uv = shutil.which("uv", path=env["PATH"])
    assert uv, "uv is a dependency of launcher"
    env["UV_CACHE_DIR"] = str(tmp_path / "uv-cache")
    proc = launcher("run", *offline_with("markupsafe"), "--", uv, "run", "--no-project", "--offline",
                    "--python", py313, "--", "python", "-c", REPORT, env=env, cwd=tmp_path, check=True)
    (got,) = rows(proc.stdout)
    assert got["from"].endswith("_speedups.cpython-313-x86_64-linux-gnu.so")
    assert "/trees/cp313-" in got["from"]


def test_spawn_workers_and_subprocess_children(tmp_path: Path, env: dict[str, str], cache_dir: Path,
                                               py311: str, py313t: str) -> None:
    parent = tmp_path / "parent.py"
    parent.write_text(textwrap.dedent(f"""
        import multiprocessing as mp, subprocess, sys

        def work(_):
            import json, os, sys, markupsafe._speedups as s
            return json.dumps({{'exe': sys.executable, 'pid': os.getpid(), 'from': s.__file__}})

        if __name__ == "__main__":
            with mp.get_context("spawn").Pool(2) as pool:
                for line in pool.map(work, range(2)):
                    print(line, flush=True)
            for _ in range(2):
                subprocess.run([{py313t!r}, "-c", {REPORT!r}], check=True)
            # a free-threaded parent of its own, with spawn workers
            subprocess.run([{py313t!r}, __file__, "inner"] if sys.argv[1:] != ["inner"] else ["true"],
                           check=True)
    """))
    inner = tmp_path / "inner.py"
    inner.write_text(textwrap.dedent("""
        import multiprocessing as mp
        def work(_):
            import json, os, sys, markupsafe._speedups as s
            return json.dumps({'exe': sys.executable, 'pid': os.getpid(), 'from': s.__file__})
        if __name__ == "__main__":
            with mp.get_context("spawn").Pool(2) as pool:
                print("\\n".join(pool.map(work, range(2))), flush=True)
    """))
    parent.write_text(parent.read_text().replace("__file__, \"inner\"", repr(str(inner)) + ", \"inner\""))
    proc = launcher("run", *offline_with("markupsafe"), "--", py311, str(parent), env=env, check=True)
    got = rows(proc.stdout)
    names = [Path(r["from"]).name for r in got]
    assert names.count("_speedups.cpython-311-x86_64-linux-gnu.so") == 2
    assert names.count("_speedups.cpython-313t-x86_64-linux-gnu.so") == 4
    assert all("/trees/" in r["from"] for r in got)
    built = installs(cache_dir)
    by_key = {b["abi_key"].split("-")[0]: b for b in built}
    assert set(by_key) == {"cp311", "cp313t"}
    assert by_key["cp311"]["requested_by"] == "launcher"  # visible: prepared before exec
    assert by_key["cp313t"]["requested_by"] != "launcher"  # invisible: the gate built it
    assert len(built) == 2  # four 3.13t processes, one install


@pytest.mark.parametrize("n", [8])
def test_thundering_herd_one_install(n: int, tmp_path: Path, env: dict[str, str], cache_dir: Path,
                                     py313: str) -> None:
    script = tmp_path / "herd.sh"
    script.write_text(
        "#!/bin/bash\n"
        f"for i in $(seq {n}); do {py313} -c \"$1\" & done\nwait\n"
    )
    script.chmod(0o755)
    proc = launcher("run", *offline_with("markupsafe"), "--", str(script), REPORT, env=env, check=True)
    got = rows(proc.stdout)
    assert len(got) == n
    assert all(r["from"].endswith("cpython-313-x86_64-linux-gnu.so") and "/trees/" in r["from"] for r in got)
    assert len(installs(cache_dir, "built")) == 1
    assert proc.stderr == ""
    assert os.listdir(cache_dir / "trees") == [next(iter(os.listdir(cache_dir / "trees")))]


def test_python_option_prepares_before_launch(tmp_path: Path, env: dict[str, str], cache_dir: Path,
                                              py313: str) -> None:
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/sh\nexec {py313} -c \"$1\"\n")
    script.chmod(0o755)
    proc = launcher("run", "--python", py313, *offline_with("markupsafe"), "--", str(script), REPORT,
                    env=env, check=True)
    (got,) = rows(proc.stdout)
    assert "/trees/cp313-" in got["from"]
    (built,) = installs(cache_dir)
    assert built["requested_by"] == "launcher"  # built before exec, not by the worker


def test_installer_never_runs_the_gate(tmp_path: Path, env: dict[str, str], cache_dir: Path,
                                       py313t: str) -> None:
    """The miss-path build (uv, and the target python it runs to compile
    bytecode) gets a scrubbed environment: no gate starts inside it."""
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/sh\n{py313t} -c \"$1\"\n")
    script.chmod(0o755)
    proc = launcher("run", "--record", *offline_with("markupsafe"), "--", str(script), REPORT,
                    env=env, check=True)
    (got,) = rows(proc.stdout)
    (record,) = (cache_dir / "runs").glob("*.jsonl")
    gates = [json.loads(x) for x in record.read_text().splitlines()]
    gates = [g for g in gates if g["event"] == "gate"]
    assert [g["pid"] for g in gates] == [got["pid"]]
    assert gates[0]["state"] == "built"


HOMES = (None, "/home/u", "/home/u/", "/", "//h", "rel/home")
XDGS = (None, "", " ", "/x", "/x/", "//x/./y//", "rel", " /x")
CACHE_DIRS = (None, "", "~", "~/", "~/c", "~/c/../d", "/a//b/./c/", "rel/c", "./c", "..", "//net/c", "///x",
              "~other/c", "/a/b/..")


@pytest.mark.parametrize("cache_dir", CACHE_DIRS)
def test_fast_path_cache_root_is_the_full_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                cache_dir: str | None) -> None:
    """The warm path computes the cache root without os or pathlib: for every
    kind of HOME, XDG_CACHE_HOME and LAUNCHER_CACHE_DIR it names the root the
    full path uses (config.cache_root), or defers (None) to it."""
    import _launcher_warm as _fastrun
    from launcher.config import Settings, cache_root

    monkeypatch.chdir(tmp_path)
    deferred = 0
    for home, xdg in itertools.product(HOMES, XDGS):
        for name, value in (("HOME", home), ("XDG_CACHE_HOME", xdg), ("LAUNCHER_CACHE_DIR", cache_dir)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        fast = _fastrun.cache_root(dict(os.environ))
        try:
            full = str(cache_root(Settings.model_validate({}), os.environ))
        except RuntimeError:  # platformdirs: no home directory to be found
            full = None
        if fast is None:
            deferred += 1
        else:
            assert fast == full, (home, xdg, cache_dir)
    if cache_dir != "~other/c":  # (another user's home needs pwd: always deferred)
        assert deferred < len(HOMES) * len(XDGS)  # the common values are not all deferred


def test_no_record_without_with_and_memo_watches_launcher_itself(env: dict[str, str], cache_dir: Path,
                                                                 py311: str) -> None:
    import launcher as installed
    from launcher.bootstrap import GATE_SOURCE

    args = ("run", "-v", "--", py311, "-c", "pass")
    launcher(*args, env=env, check=True)
    # Nothing to say, nothing written: no record, no install log, no tree,
    # no lock or stamp -- only the plan (memo), the probe and the gate.
    written = sorted(str(p.relative_to(cache_dir)) for p in cache_dir.rglob("*") if not p.is_dir())
    assert {w.split("/")[0] for w in written} == {"memo", "probes", "bootstrap"}, written
    assert "warm start" in launcher(*args, env=env, check=True).stderr
    # An upgraded launcher (new gate, new version) must not reuse an old plan:
    # one of its files with a new mtime (same size, same inode) and the next
    # run takes the full path, then the one after is warm again.
    for path in (Path(GATE_SOURCE), Path(installed.__file__)):
        st = path.stat()
        try:
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
            assert "warm start" not in launcher(*args, env=env, check=True).stderr, path
        finally:
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert "warm start" not in launcher(*args, env=env, check=True).stderr, path  # changed back
        assert "warm start" in launcher(*args, env=env, check=True).stderr, path
