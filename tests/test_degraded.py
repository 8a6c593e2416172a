"""Whatever happens to the launcher's own machinery, the command runs as it
would bare: its stdout, its exit code, at most one `launcher:` line per
interpreter on stderr, never a traceback, no temp files left behind.

Full disks are small tmpfs mounts and read-only caches are read-only bind
mounts (CI runs as root); elsewhere these tests say what they need."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import LAUNCHER, WHEELHOUSE, launcher, missing, offline_with, unreachable_with
from support import without_progress

PAYLOAD = "import sys; print('payload', 42); sys.exit(3)"


def sh(script: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run under /bin/sh, for redirections Python's subprocess cannot express (`2>&-`)."""
    return subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def q(s: str | Path) -> str:
    import shlex

    return shlex.quote(str(s))


def launcher_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("launcher: ")]


def assert_ran_bare_like(proc: subprocess.CompletedProcess[str], *, lines: int) -> None:
    assert proc.returncode == 3, proc
    assert proc.stdout == "payload 42\n", proc
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(launcher_lines(proc.stderr)) == lines, proc.stderr
    assert proc.stderr.count("\n") == lines, proc.stderr  # nothing but our lines


def leftovers(cache: Path) -> list[str]:
    """Temp files and dirs of ours that a failed write left behind (the
    contents of published trees are the installer's, not ours)."""
    import re

    temp = re.compile(r"^\.(tmp|trash)-|\.tmp\d+$|\.\d+$")
    out = []
    for p in cache.rglob("*"):
        rel = p.relative_to(cache).parts
        if len(rel) > 2 and rel[0] == "trees" and not rel[1].startswith("."):
            continue
        if temp.search(p.name):
            out.append(str(p))
    return out


def mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        missing(f"mount {' '.join(args)} failed ({proc.stderr.strip()}): these tests need root "
                "(CI runs as root)")


@pytest.fixture
def full_fs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 4 MiB; fill() takes its last byte."""
    d = tmp_path / "fs"
    d.mkdir()
    mount("-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(d))
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def fill(fs: Path) -> None:
    with open(fs / "filler", "wb", buffering=0) as f:  # unbuffered: nothing left for close()
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    with pytest.raises(OSError):
        (fs / "probe").write_bytes(b"x" * 8192)


# ------------------------------------------------------------------ full disk


def test_full_disk_without_with(full_fs: Path, env: dict[str, str], py311: str) -> None:
    fill(full_fs)
    env["LAUNCHER_CACHE_DIR"] = str(full_fs / "cache")
    proc = launcher("run", "--", py311, "-c", PAYLOAD, env=env)
    assert_ran_bare_like(proc, lines=1)
    assert "No space left on device" in proc.stderr
    assert leftovers(full_fs / "cache") == []


def test_full_disk_before_the_cache_is_laid_out(tmp_path: Path, env: dict[str, str], py311: str) -> None:
    """The cache dir exists (made by the user) but no inode is left for its
    subdirectories: the command still runs, with one line."""
    fs = tmp_path / "fs"
    fs.mkdir()
    mount("-t", "tmpfs", "-o", "size=4m,nr_inodes=2,mode=0700", "tmpfs", str(fs))
    try:
        (fs / "cache").mkdir(mode=0o700)
        with pytest.raises(OSError):
            (fs / "probe").mkdir()
        env["LAUNCHER_CACHE_DIR"] = str(fs / "cache")
        proc = launcher("run", *offline_with("six"), "--", py311, "-c", PAYLOAD, env=env)
        assert_ran_bare_like(proc, lines=1)
        assert "No space left on device" in proc.stderr
    finally:
        subprocess.run(["umount", "-l", str(fs)], check=False)


def test_full_disk_with_runtime(full_fs: Path, env: dict[str, str], py311: str) -> None:
    fill(full_fs)
    env["LAUNCHER_CACHE_DIR"] = str(full_fs / "cache")
    for _ in range(2):  # and again: nothing remembered, nothing half-written
        proc = launcher("run", *offline_with("six"), "--", py311, "-c", PAYLOAD, env=env)
        assert_ran_bare_like(proc, lines=1)
        assert leftovers(full_fs / "cache") == []


def test_full_disk_after_prewarm_serves_the_tree(full_fs: Path, env: dict[str, str], py311: str) -> None:
    env["LAUNCHER_CACHE_DIR"] = str(full_fs / "cache")
    # Gate written, tree built; a different argv later cannot use the memo.
    launcher("run", *offline_with("six"), "--", py311, "-c", "pass", env=env, check=True)
    fill(full_fs)
    proc = launcher("run", *offline_with("six"), "--", py311, "-c",
                    "import six, sys; print('payload', 42); sys.exit(3 if '/trees/' in six.__file__ else 9)",
                    env=env)
    assert_ran_bare_like(proc, lines=0)
    assert leftovers(full_fs / "cache") == []


def test_full_disk_gate_build_in_a_worker(full_fs: Path, env: dict[str, str], py311: str, py313: str) -> None:
    """A worker the launcher could not see builds through its gate, on a full disk."""
    env["LAUNCHER_CACHE_DIR"] = str(full_fs / "cache")
    launcher("run", *offline_with("six"), "--", py311, "-c", "pass", env=env, check=True)
    fill(full_fs)
    proc = launcher("run", *offline_with("six"), "--", "sh", "-c", f"exec {q(py313)} -c {q(PAYLOAD)}", env=env)
    assert_ran_bare_like(proc, lines=1)
    assert "cp313" in proc.stderr
    assert leftovers(full_fs / "cache") == []


def test_full_disk_preload_shims(full_fs: Path, env: dict[str, str], py311: str) -> None:
    """No room for the preload shims: one line, no preloads, and no gate
    re-exec that would fail to write one too and say so again."""
    from launcher import preload
    from launcher.errors import UsageError

    try:
        preload.resolve_one("jemalloc")
    except UsageError:
        missing("jemalloc is not installed: apt-get install libjemalloc2 (.ci/run installs it)")
    env["LAUNCHER_CACHE_DIR"] = str(full_fs / "cache")
    launcher("run", "--", py311, "-c", "pass", env=env, check=True)  # the gate is in place
    fill(full_fs)
    child = "import subprocess; subprocess.run(['python3', '-c', 'pass']); " + PAYLOAD
    proc = launcher("run", "--preload", "jemalloc", "--", py311, "-c", child, env=env)
    assert_ran_bare_like(proc, lines=1)
    assert re.fullmatch(rf"launcher: cannot write the preload shims in {re.escape(str(full_fs))}/cache/shims/"
                        r"[0-9a-f]+ \(No space left on device\); the command runs without its preloads\n",
                        proc.stderr), proc.stderr
    assert leftovers(full_fs / "cache") == []


# ------------------------------------------------------------ read-only cache


@pytest.fixture
def ro_cache(tmp_path: Path, env: dict[str, str], py311: str) -> Iterator[Path]:
    """A cache prewarmed for `--with six` on 3.11, then bind-mounted read-only."""
    src = tmp_path / "prewarmed"
    env_src = dict(env, LAUNCHER_CACHE_DIR=str(src))
    launcher("prewarm", "--python", py311, *offline_with("six"), env=env_src, check=True)
    ro = tmp_path / "ro"
    ro.mkdir()
    mount("--bind", str(src), str(ro))
    try:
        mount("-o", "remount,bind,ro", str(ro))
        with pytest.raises(OSError):
            (ro / "probe").write_text("x", encoding="utf-8")
        yield ro
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


@pytest.mark.parametrize("no_pyc", ["", "1"], ids=["pyc", "PYTHONDONTWRITEBYTECODE"])
def test_read_only_cache_serves_every_command(no_pyc: str, ro_cache: Path, env: dict[str, str],
                                              py311: str, tmp_path: Path) -> None:
    # The mount itself cannot change (the kernel sees to that): what can go
    # wrong is a write moved elsewhere -- a temp dir, a fallback cache in
    # HOME -- or an attempt that fails noisily.  Both are checked.
    elsewhere = {name: tmp_path / name for name in ("tmp", "home", "xdg")}
    for d in elsewhere.values():
        d.mkdir()
    env.update(LAUNCHER_CACHE_DIR=str(ro_cache), TMPDIR=str(elsewhere["tmp"]), HOME=str(elsewhere["home"]),
               XDG_CACHE_HOME=str(elsewhere["xdg"]))
    check = "import six, sys; print('payload', 42); sys.exit(3 if '/trees/' in six.__file__ else 9)"
    for argv in (["run", *offline_with("six"), "--", py311, "-c", check],  # never run before
                 ["run", *offline_with("six"), "--record", "--", py311, "-c", check],
                 ["run", "--", py311, "-c", PAYLOAD]):
        for _ in range(2):
            proc = launcher(*argv, env=dict(env, PYTHONDONTWRITEBYTECODE=no_pyc))
            assert_ran_bare_like(proc, lines=0)
    assert {name: sorted(d.rglob("*")) for name, d in elsewhere.items()} == {name: [] for name in elsewhere}


def test_read_only_cache_missing_tree_costs_one_line(ro_cache: Path, env: dict[str, str], py311: str,
                                                     py313: str) -> None:
    env["LAUNCHER_CACHE_DIR"] = str(ro_cache)
    # Seen by the launcher: its line; the top interpreter's gate stays quiet.
    proc = launcher("run", *offline_with("cloudpickle"), "--", py311, "-c",
                    "import subprocess, sys; subprocess.run([sys.executable, '-c', 'pass']); " + PAYLOAD, env=env)
    assert_ran_bare_like(proc, lines=1)
    assert "read-only" in proc.stderr and "cp311" in proc.stderr
    # Not seen by the launcher (behind sh): the worker's gate says it, once.
    proc = launcher("run", *offline_with("six"), "--", "sh", "-c", f"exec {q(py313)} -c {q(PAYLOAD)}", env=env)
    assert_ran_bare_like(proc, lines=1)
    assert "read-only" in proc.stderr and "cp313" in proc.stderr


# ------------------------------------------------------- closed, broken stdio


@pytest.mark.parametrize("with_", [[], ["six"]], ids=["bare", "with"])
def test_closed_stderr(with_: list[str], env: dict[str, str], py311: str) -> None:
    env.pop("PYTHONUNBUFFERED", None)
    args = " ".join(q(a) for a in offline_with(*with_)) if with_ else ""
    for _ in range(2):  # the full path, then the warm one
        proc = sh(f"exec 2>&-; exec {q(LAUNCHER)} run {args} -- {q(py311)} -c "
                  + q("import sys; print('payload', 42, sys.stderr is None); sys.exit(3)"), env)
        assert (proc.returncode, proc.stdout) == (3, "payload 42 True\n"), proc


def test_closed_stdin(env: dict[str, str], py311: str) -> None:
    for _ in range(2):
        proc = sh(f"exec <&-; exec {q(LAUNCHER)} run {' '.join(offline_with('six'))} -- {q(py311)} -c "
                  + q("import sys, six; print('payload', 42, sys.stdin is None); sys.exit(3)"), env)
        assert (proc.returncode, proc.stdout, without_progress(proc.stderr)) == (3, "payload 42 True\n", ""), proc


def test_closed_stdout(env: dict[str, str], py311: str) -> None:
    for _ in range(2):
        proc = sh(f"exec >&-; exec {q(LAUNCHER)} run {' '.join(offline_with('six'))} -- {q(py311)} -c "
                  + q("import sys, six; print('payload', sys.stdout is None, file=sys.stderr); sys.exit(3)"), env)
        assert (proc.returncode, without_progress(proc.stderr)) == (3, "payload True\n"), proc


@pytest.mark.parametrize("unbuffered", ["1", None], ids=["PYTHONUNBUFFERED", "buffered"])
def test_stderr_is_dev_full(unbuffered: str | None, env: dict[str, str], py311: str, py313: str) -> None:
    """The gate's one line cannot be written: the exit code stays the program's
    (a buffered write left behind would make it 120)."""
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    for cmd in ([py311, "-c", PAYLOAD],  # launcher line (failed build) to /dev/full
                ["sh", "-c", f"exec {q(py313)} -c {q(PAYLOAD)}"]):  # the gate's line
        for _ in range(2):
            with open("/dev/full", "w", encoding="utf-8") as full:
                proc = subprocess.run([str(LAUNCHER), "run", *unreachable_with("no-such-package-xyz"), "--", *cmd],
                                      env=env, stdout=subprocess.PIPE, stderr=full, text=True, timeout=300)
            assert (proc.returncode, proc.stdout) == (3, "payload 42\n")


# ---------------------------------------------------- anything of ours fails


def test_internal_error_runs_the_command(tmp_path: Path, env: dict[str, str], py311: str) -> None:
    """A bug in the launcher (injected into its own process) is one line; the
    command still runs, bare."""
    # Injected in the launcher's interpreter itself: a PYTHONPATH sitecustomize
    # no longer reaches it (it runs isolated, issue 20).
    inject = ("import sys\n"
              "import launcher.plan\n"
              "def boom(*a, **k):\n"
              "    raise RuntimeError('injected')\n"
              "launcher.plan.probe = boom\n"
              "sys.argv = ['launcher', *sys.argv[1:]]\n"
              "from launcher.__main__ import main\n"
              "main()\n")
    proc = subprocess.run([str(LAUNCHER.parent / "python"), "-c", inject, "run", *offline_with("six"), "--", py311,
                           "-c", PAYLOAD], env=env, capture_output=True, text=True, timeout=300)
    assert_ran_bare_like(proc, lines=1)
    assert "internal error (RuntimeError: injected)" in proc.stderr


# ------------------------------------------------------------- the gate itself


def _spec_hash(env: dict[str, str], *reqs: str) -> str:
    """The tree's spec hash for `offline_with(*reqs)`, as a launch from here computes it."""
    from launcher.config import resolve
    from launcher.spec import spec_for

    flags = {"with": list(reqs), "find-links": [str(WHEELHOUSE)], "offline": True}
    _, spec = spec_for(resolve(flags, cwd=Path.cwd(), environ=env).settings, Path.cwd(), env)
    assert spec is not None
    return spec.hash


def _abi_key(python: str) -> str:
    from launcher.bootstrap import GATE_SOURCE

    code = (f"import importlib.util as u; s = u.spec_from_file_location('g', {str(GATE_SOURCE)!r}); "
            "m = u.module_from_spec(s); s.loader.exec_module(m); print(m.abi_key())")
    return subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_ctrl_c_while_waiting_for_another_build(tmp_path: Path, env: dict[str, str], cache_dir: Path,
                                                py313: str) -> None:
    import fcntl
    import signal
    import time

    locks = cache_dir / "locks"
    locks.mkdir(parents=True)
    lock = locks / f"{_abi_key(py313)}-{_spec_hash(env, 'six')}.gate-lock"
    started = tmp_path / "started"
    # "Another process" builds: we hold the gate's lock, so the worker waits.
    with open(lock, "w", encoding="utf-8") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.Popen(
            [str(LAUNCHER), "run", *offline_with("six"), "--", "sh", "-c",
             f"touch {q(started)}; exec {q(py313)} -c {q('print(1)')}"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while not started.exists():
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.05)
        time.sleep(1.0)  # the python is now up and polling the lock
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)  # the pid is the python's: launcher and sh exec'd
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGINT, (proc.returncode, err)
    assert out == "" and "gate error" not in err and "Traceback" not in err, err


def test_system_exit_in_a_chained_sitecustomize_is_not_swallowed(tmp_path: Path, env: dict[str, str]) -> None:
    """A venv's own sitecustomize that exits: the launched run ends as the
    bare one does (CPython makes it a fatal start-up error), it does not
    carry on as if nothing happened."""
    import sys

    venv = tmp_path / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)],
                   check=True)
    (site,) = venv.glob("lib/python3*/site-packages")
    (site / "sitecustomize.py").write_text("raise SystemExit(5)\n", encoding="utf-8")
    py = str(venv / "bin" / "python")
    bare = subprocess.run([py, "-c", "print('ran')"], env=env, capture_output=True, text=True)
    launched = launcher("run", "--", py, "-c", "print('ran')", env=env)
    assert launched.returncode == bare.returncode != 0
    assert launched.stdout == bare.stdout == ""
    assert "gate error" not in launched.stderr


def test_system_exit_in_a_plugin_ends_the_process_with_its_code(tmp_path: Path, env: dict[str, str],
                                                                py311: str) -> None:
    from support import make_wheel

    links = tmp_path / "links"
    links.mkdir()
    make_wheel(links, "exitplugin", {"exitplugin.py": "import sys\ndef activate():\n    sys.exit(7)\n"},
               "[launcher.plugins]\nexit = exitplugin:activate\n")
    proc = launcher("run", "--with", "exitplugin", "--find-links", str(links), "--offline", "--",
                    py311, "-c", "print('ran')", env=env)
    assert (proc.returncode, proc.stdout) == (7, "")
    assert "gate error" not in proc.stderr and "Fatal Python error" not in proc.stderr


# ----------------------------------------------------- one failure, one line


@pytest.mark.parametrize("quiet", [[], ["-q"]], ids=["default", "quiet"])
def test_one_failure_one_line_with_its_reason(quiet: list[str], env: dict[str, str], py311: str) -> None:
    child = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'pass']); " + PAYLOAD
    proc = launcher("run", *quiet, *unreachable_with("no-such-package-xyz"), "--", py311, "-c", child, env=env)
    assert_ran_bare_like(proc, lines=1)
    assert "cp311" in proc.stderr and "no-such-package-xyz" in proc.stderr and "Connection refused" in proc.stderr


# ------------------------------------------------------- warnings as errors


def test_clean_under_warnings_as_errors(env: dict[str, str], cache_dir: Path, py311: str, py313: str) -> None:
    env = dict(env, PYTHONWARNINGS="error", PYTHONWARNDEFAULTENCODING="1")
    show = "import six, sys; print('six from', 'tree' if '/trees/' in six.__file__ else six.__file__)"
    # cp311: built by the launcher (CLI), then the gate's hit path; cp313 behind
    # sh: built through the gate's miss path; then both warm.
    for _ in range(2):
        for cmd in ([py311, "-X", "warn_default_encoding", "-W", "error", "-c", show],
                    ["sh", "-c", f"exec {q(py313)} -c {q(show)}"]):
            proc = launcher("run", *offline_with("six"), "--record", "--", *cmd, env=env)
            assert (proc.returncode, proc.stdout, without_progress(proc.stderr)) == (0, "six from tree\n", "")
    for argv in (["config"], ["cache", "list"], ["cache", "info"], ["doctor", "--python", py313],
                 ["prewarm", "--python", py313, *offline_with("six")], ["doctor", "--", py311, "-c", "pass"]):
        proc = launcher(*argv, env=env)
        assert "Warning" not in proc.stderr and "Traceback" not in proc.stderr, (argv, proc.stderr)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("case", ["pyproject-latin1", "launcher-toml-latin1", "env-cache-colon",
                                  "flag-cache-colon", "xdg-colon", "index-url", "tool-launcher-not-a-table",
                                  "python-dir-not-a-venv"])
def test_bad_input_is_one_line_and_exit_2(case: str, tmp_path: Path, env: dict[str, str], py311: str) -> None:
    marker = tmp_path / "ran"
    args: list[str] = []
    if case == "pyproject-latin1":
        (tmp_path / "pyproject.toml").write_bytes(b'# caf\xe9\n[tool.launcher]\nwith = ["six"]\n')
        needle = "not UTF-8"
    elif case == "launcher-toml-latin1":
        (tmp_path / "launcher.toml").write_bytes(b'with = ["six"]  # \xff\n')
        needle = "not UTF-8"
    elif case == "env-cache-colon":
        env["LAUNCHER_CACHE_DIR"] = str(tmp_path / "a:b")
        needle = "PYTHONPATH"
    elif case == "flag-cache-colon":
        args = ["--cache-dir", str(tmp_path / "a:b")]
        needle = "PYTHONPATH"
    elif case == "xdg-colon":
        env.pop("LAUNCHER_CACHE_DIR")
        env["XDG_CACHE_HOME"] = str(tmp_path / "x:y")
        needle = "PYTHONPATH"
    elif case == "tool-launcher-not-a-table":
        (tmp_path / "pyproject.toml").write_text("[tool]\nlauncher = 3  # not [tool.launcher]\n")
        needle = "[tool.launcher] header"
    elif case == "python-dir-not-a-venv":
        args = ["--python", str(tmp_path)]
        needle = "is a directory, not a Python interpreter"
    else:
        args = ["--index-url", "not a url"]
        needle = "not a url"
    proc = launcher("run", *args, "--", py311, "-c", f"open({str(marker)!r}, 'w')", env=env, cwd=str(tmp_path))
    assert proc.returncode == 2, proc
    assert proc.stderr.startswith("launcher: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert needle in proc.stderr
    assert not marker.exists() and proc.stdout == ""
