"""The trust rule's other faces: modes whatever the umask, published trees
that -O/-OO interpreters leave alone, cleaning that a racer cannot point
outside the cache, odd cache paths, Ctrl-C while waiting, and `cache verify`
holding the gate to the same rule."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import LAUNCHER, base_env, installs, launcher, offline_with
from test_cache_trust import copy_cache, no_traceback, one_line, snapshot

SIX = "import six, sys; sys.stdout.write(six.__file__)"


@pytest.fixture(scope="module")
def six_template(tmp_path_factory: pytest.TempPathFactory, py311: str) -> Path:
    """A cache with one `--with six` tree (3.11), a run record, a memo entry and a failure record."""
    cache = tmp_path_factory.mktemp("rule-six") / "cache"
    launcher("run", "--record", *offline_with("six"), "--", py311, "-c", SIX, env=base_env(cache), check=True)
    (cache / "failures" / "old.json").write_text("{}")
    return cache


def quiet(stderr: str) -> bool:
    """Nothing but the cold run's progress line."""
    return all(line.startswith("launcher: preparing the runtime") for line in stderr.splitlines())


def loose(cache: Path) -> list[str]:
    """Everything in the cache that group or others could write."""
    out = []
    for dirpath, dirs, files in os.walk(cache):
        for name in [*dirs, *files]:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_mode & 0o022 and not stat.S_ISLNK(st.st_mode):
                out.append(f"{os.path.relpath(os.path.join(dirpath, name), cache)} {oct(st.st_mode)}")
    return out


def test_umask_000_cold_and_warm_runs_work_and_leave_nothing_loose(tmp_path: Path, py311: str,
                                                                   jemalloc: str) -> None:
    cache = tmp_path / "cache"
    env = base_env(cache)
    run = ("run", "--preload", jemalloc, "--record", *offline_with("six"), "--", py311, "-c", SIX)
    old = os.umask(0)
    try:
        for _ in range(2):  # cold, then warm
            proc = launcher(*run, env=env)
            assert proc.returncode == 0 and quiet(proc.stderr) and proc.stdout.startswith(str(cache)), proc.stderr
        # The workload itself still gets the caller's umask.
        seen = launcher("run", *offline_with("six"), "--", py311, "-c",
                        "import os; print(oct(os.umask(0)))", env=env, check=True)
        assert seen.stdout.strip() == "0o0"
        for args in (("cache", "verify"), ("cache", "list"), ("prewarm", "--python", py311, *offline_with("six"))):
            assert launcher(*args, env=env).returncode == 0, args
    finally:
        os.umask(old)
    assert loose(cache) == []
    assert stat.S_IMODE(os.lstat(cache / "shims").st_mode) == 0o755
    (boot,) = (cache / "bootstrap").iterdir()
    assert {stat.S_IMODE(p.lstat().st_mode) for p in boot.iterdir() if p.is_file()} == {0o644}
    assert stat.S_IMODE((boot / "__pycache__").lstat().st_mode) == 0o755


@pytest.mark.parametrize("how", ["-O", "-OO", "PYTHONOPTIMIZE=2"])
def test_optimised_interpreters_write_nothing_into_published_trees_or_the_gate(tmp_path: Path, py311: str,
                                                                                py313: str, how: str) -> None:
    cache = tmp_path / "cache"
    env = base_env(cache)
    for py in (py311, py313):
        launcher("run", *offline_with("six"), "--", py, "-c", SIX, env=env, check=True)
    before = snapshot(cache / "trees"), snapshot(cache / "bootstrap")
    run_env = dict(env, PYTHONOPTIMIZE="2") if how.startswith("PYTHONOPTIMIZE") else env
    flags = [] if how.startswith("PYTHONOPTIMIZE") else [how]
    for py in (py311, py313):
        # Root ignores the read-only modes: only bytecode that is already there stops a write.
        proc = launcher("run", *offline_with("six"), "--", py, *flags, "-c", SIX + "; import json, textwrap",
                        env=run_env)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert (snapshot(cache / "trees"), snapshot(cache / "bootstrap")) == before
    verify = launcher("cache", "verify", env=env)
    assert verify.returncode == 0 and "damaged" not in verify.stdout, verify.stdout
    assert installs(cache, "rebuilt") == [] and len(installs(cache, "built")) == 2


# ------------------------------------------------------------ cleaning vs a racer


AREAS = ("trees", "runs", "failures", "used", "probes", "memo")


def _racer(cache: Path, outside: Path, stop: threading.Event, done: threading.Event, swaps: int) -> None:
    """Swap each area for a link to a look-alike outside the cache and back,
    over and over until told to stop; `done` once each was swapped `swaps` times."""
    n = 0
    while not (stop.is_set() and done.is_set()):
        for area in AREAS:
            real, aside = cache / area, cache / f".{area}-aside"
            os.rename(real, aside)
            os.symlink(outside / area, real)
            time.sleep(0.001)
            os.unlink(real)
            os.rename(aside, real)
        time.sleep(0.001)
        n += 1
        if n >= swaps:
            done.set()


def test_prune_and_clear_against_a_racer_delete_nothing_outside(six_template: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    for rnd in range(3):
        cache = copy_cache(six_template, tmp_path / f"cache{rnd}")
        if rnd == 0:  # what a cleaner following a link would delete: the areas' own entries, copied
            for area in AREAS:
                (outside / area).mkdir(parents=True)
                for p in (cache / area).iterdir():
                    if p.is_file():
                        (outside / area / p.name).write_bytes(p.read_bytes())
                    else:
                        (outside / area / p.name).mkdir()
                        (outside / area / p.name / "precious").write_text("x")
            before = snapshot(outside)
        stop, done = threading.Event(), threading.Event()
        racer = threading.Thread(target=_racer, args=(cache, outside, stop, done, 200))
        racer.start()
        try:
            while not done.is_set():
                for command in (("prune", "--older-than", "0s"), ("clear",)):
                    no_traceback(launcher("cache", *command, env=base_env(cache)))
        finally:
            stop.set()
            racer.join()
        assert snapshot(outside) == before, f"round {rnd}: something outside the cache changed"


def test_a_runs_own_memo_follows_no_area_swapped_for_a_link(six_template: Path, tmp_path: Path,
                                                            py311: str) -> None:
    """The plan a full run remembers is written relative to memo/ as opened
    and checked: a racer swapping memo/ for a link to a look-alike outside
    the cache between the run's check and its write gets nothing written
    there.  (Written by path, about one run in four wrote outside.)"""
    cache = copy_cache(six_template, tmp_path / "cache")
    outside = tmp_path / "outside" / "memo"
    outside.mkdir(parents=True)
    stop = threading.Event()
    real, aside = cache / "memo", cache / ".memo-aside"
    swaps: list[int] = []
    failed: list[BaseException] = []

    def put_back() -> None:
        # A run may have made a new memo/ while ours was aside: drop it (retry
        # while runs keep making it), so the racer never dies of ENOTEMPTY.
        while True:
            if real.is_symlink():
                real.unlink()
            elif real.is_dir():
                shutil.rmtree(real, ignore_errors=True)
            try:
                os.rename(aside, real)
                return
            except OSError:
                continue

    def racer() -> None:
        try:
            while not stop.is_set():
                os.rename(real, aside)
                try:
                    os.symlink(outside, real)
                    swaps.append(1)
                except FileExistsError:
                    pass  # a run made memo/ in between
                time.sleep(0.002)
                put_back()
                time.sleep(0.002)
        except BaseException as exc:  # a dead racer would leave the runs unraced: fail the test
            failed.append(exc)

    thread = threading.Thread(target=racer)
    thread.start()
    env = dict(base_env(cache), LAUNCHER_NO_FASTPATH="1")  # every run writes its plan
    try:
        for i in range(24):  # each its own invocation: a new memo entry each time
            no_traceback(launcher("run", *offline_with("six"), "--", py311, "-c", f"pass  # {i}", env=env))
    finally:
        stop.set()
        thread.join()
    assert not failed, failed
    assert len(swaps) > 24  # the runs were raced all along
    assert [p.name for p in outside.iterdir()] == []


# ------------------------------------------------------------------ odd paths


@pytest.mark.parametrize("odd", ["non-utf8", "newline"])
def test_a_cache_path_no_child_could_carry_is_one_line(tmp_path: Path, py311: str, odd: str) -> None:
    name = os.fsdecode(b"cache-\xff") if odd == "non-utf8" else "cache\nx"
    cache = tmp_path / name
    env = base_env(tmp_path)
    env_b = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    env_b[b"LAUNCHER_CACHE_DIR"] = os.fsencode(str(cache))
    for args in (("run", *offline_with("six"), "--", py311, "-c", SIX), ("cache", "list"), ("cache", "verify"),
                 ("prewarm", "--python", py311, *offline_with("six"))):
        proc = subprocess.run([str(LAUNCHER), *args], env=env_b, capture_output=True, text=True, timeout=300)
        no_traceback(proc)
        assert proc.returncode == 2, (args, proc.stderr)
        one_line(proc, "LAUNCHER_CACHE_DIR", "UTF-8" if odd == "non-utf8" else "newline")
    assert not os.path.lexists(cache)


# ------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_while_waiting_for_another_build_dies_of_sigint(tmp_path: Path, py311: str) -> None:
    from filelock import FileLock

    probe_cache = tmp_path / "first"
    launcher("run", *offline_with("six"), "--", py311, "-c", "pass", env=base_env(probe_cache), check=True)
    (tree,) = (p.name for p in (probe_cache / "trees").iterdir() if not p.name.startswith("."))
    cache = tmp_path / "cache"
    (cache / "locks").mkdir(parents=True, mode=0o700)
    cache.chmod(0o700)
    lock = FileLock(str(cache / "locks" / f"{tree}.lock"))
    lock.acquire()  # another process's build
    try:
        proc = subprocess.Popen([str(LAUNCHER), "run", *offline_with("six"), "--", py311, "-c", "pass"],
                                env=base_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while not (cache / "specs").is_dir() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # probed, spec saved: now queued on the lock
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        lock.release()
    assert proc.returncode == -signal.SIGINT, (proc.returncode, err)  # a shell shows 130
    assert quiet(err) and "aborted" not in err and "" not in err.splitlines() and out == "", err


# ------------------------------------------------------------ verify and doctor


def test_verify_and_doctor_hold_the_gate_to_the_rule(six_template: Path, tmp_path: Path) -> None:
    cache = copy_cache(six_template, tmp_path / "cache")
    env = base_env(cache)
    assert launcher("cache", "verify", env=env).returncode == 0
    (boot,) = (cache / "bootstrap").iterdir()
    boot.chmod(0o777)
    proc = launcher("cache", "verify", env=env)
    assert proc.returncode == 1 and f"untrusted {boot} is writable by group or others" in proc.stdout, proc
    assert f"chmod 700 {boot}" in proc.stderr
    report = json.loads(launcher("cache", "verify", "--json", env=env).stdout)
    assert [u["path"] for u in report["untrusted"]] == [str(boot)]
    doctor = launcher("doctor", env=env)
    assert doctor.returncode == 1 and str(boot) in doctor.stdout
    boot.chmod(0o755)
    (boot / "__pycache__" / "sitecustomize.cpython-311.pyc").chmod(0o666)
    proc = launcher("cache", "verify", env=env)
    assert proc.returncode == 1 and "sitecustomize.cpython-311.pyc is writable" in proc.stdout


def test_the_gate_never_imports_from_a_loosened_tree_and_it_is_rebuilt(six_template: Path, tmp_path: Path,
                                                                       py311: str) -> None:
    # A worker started with the environment of an earlier run (no launcher in
    # between): the gate's one lstat holds the tree to the rule too.
    cache = copy_cache(six_template, tmp_path / "cache")
    child_env = json.loads(launcher("run", *offline_with("six"), "--", py311, "-c",
                                    "import json, os; print(json.dumps(dict(os.environ)))",
                                    env=base_env(cache), check=True).stdout)
    (tree,) = (p for p in (cache / "trees").iterdir() if not p.name.startswith("."))
    tree.chmod(0o777)
    (tree / "six.py").chmod(0o644)
    (tree / "six.py").write_text("raise SystemExit('planted')\n")
    gated = subprocess.run([py311, "-c", SIX], env=child_env, capture_output=True, text=True, timeout=300)
    assert gated.returncode == 0 and gated.stdout == str(tree / "six.py"), gated
    assert loose(cache) == [] and "planted" not in (tree / "six.py").read_text()
    assert [r["result"] for r in installs(cache, None)][-1] == "rebuilt"


def test_the_gates_shim_writer_reaches_its_dir_through_checked_components(tmp_path: Path) -> None:
    """The gate writes a shim for an interpreter the launch did not prepare:
    into shims/<hash> reached one checked component at a time, never through
    a link or into a directory others can write, 0755 whatever the umask."""
    from launcher.gate._launcher_preloads import write_shim

    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    old = os.umask(0)
    try:
        shim = write_shim(str(cache / "shims" / "abc"), "/usr/bin/python3", ["/lib/libx.so"])
    finally:
        os.umask(old)
    assert [stat.S_IMODE(os.lstat(p).st_mode) for p in (cache / "shims", cache / "shims" / "abc", shim)] \
        == [0o755] * 3
    outside = tmp_path / "outside"
    outside.mkdir()
    (cache / "shims" / "link").symlink_to(outside)
    with pytest.raises(OSError):
        write_shim(str(cache / "shims" / "link"), "/usr/bin/python3", ["/lib/libx.so"])
    assert list(outside.iterdir()) == []
    (cache / "shims").chmod(0o777)
    with pytest.raises(OSError, match="nobody else can write"):
        write_shim(str(cache / "shims" / "abc"), "/usr/bin/python3.11", ["/lib/libx.so"])
