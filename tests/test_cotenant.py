"""A second local user against a root launcher: generatively, not by a list.

Populate a cache the way real jobs do (runs with --preload on two ABIs,
--record, a failed requirement set, an Executor task, replicas, prewarm),
make every directory traversable by others but writable only by us (a state
the trust rule accepts), then for each directory in turn: make it
world-writable, let another real user drop a file into it and swap every
.pyc in it for a payload with the same header, size and mtime (Python checks
only the header against the source).  The next warm run must refuse (exit 2,
one line) or leave nothing owned by her and nothing group/world-writable,
and no payload may ever run.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import WHEELHOUSE, base_env, launcher, missing, offline_with, unreachable_with

USER = "launcher-cotenant"
SIX = "import six, sys; sys.stdout.write(six.__file__)"


@pytest.fixture(scope="session")
def cotenant() -> tuple[int, int]:
    """(uid, gid) of a second real local user (made with useradd when missing)."""
    if os.getuid() != 0:
        missing("the co-tenant tests need root (to create and become a second user); CI runs as root")
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                       check=True, capture_output=True)
        pw = pwd.getpwnam(USER)
    return pw.pw_uid, pw.pw_gid


def as_user(who: tuple[int, int], fn: Callable[[], None]) -> None:
    """Run `fn` in a forked child that is the other user (never returns into pytest there)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(who[1])
            os.setuid(who[0])
            fn()
            code = 0
        except BaseException as exc:  # report, and never run pytest's code in the child
            os.write(2, f"co-tenant: {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the co-tenant's step failed"


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """A directory others can traverse (pytest's own tmp dirs are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="launcher-cotenant-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _payload(python: str, marker_dir: Path) -> bytes:
    """Marshalled code for `python`'s version that leaves a file in `marker_dir` when it runs."""
    code = f"open({str(marker_dir)!r}+'/p','a').close()"
    return subprocess.run([python, "-c", "import marshal, sys; sys.stdout.buffer.write("
                           "marshal.dumps(compile(sys.argv[1], 'p', 'exec')))", code],
                          check=True, capture_output=True).stdout


class Scene:
    """One populated cache (at a fixed path: memo keys name it), restored per case."""

    def __init__(self, base: Path, py311: str, py313: str, jemalloc: str) -> None:
        self.cache = base / "cache"
        self.template = base / "template"
        self.marker = base / "ran"
        self.marker.mkdir(mode=0o777)
        self.marker.chmod(0o777)
        self.env = base_env(self.cache)
        self.py = {"311": py311, "313": py313}
        self.payloads = {tag: _payload(py, self.marker) for tag, py in self.py.items()}
        self.jemalloc = jemalloc
        self.swapped = 0
        self.executor_trees: set[str] = set()

    def run(self, tag: str) -> subprocess.CompletedProcess[str]:
        """The job's own warm run for one ABI: preloads, a record, six."""
        return launcher("run", "--preload", self.jemalloc, "--record", *offline_with("six"), "--",
                        self.py[tag], "-c", SIX, env=self.env)

    def executor(self) -> subprocess.CompletedProcess[str]:
        code = (f"import launcher, os\n"
                f"flags = {{'with': ['six'], 'find-links': [{str(WHEELHOUSE)!r}], 'offline': True}}\n"
                f"with launcher.Executor({self.py['313']!r}, max_workers=1, flags=flags) as ex:\n"
                f"    print(ex.submit(os.getpid).result(timeout=120))\n")
        return subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True,
                              timeout=300)

    def populate(self) -> None:
        for tag in ("311", "313"):
            proc = self.run(tag)
            assert proc.returncode == 0, proc.stderr
        failed = launcher("run", *unreachable_with("no-such-package-anywhere"), "--", self.py["311"], "-c", "pass",
                          env=self.env)
        assert failed.returncode == 0 and "could not build" in failed.stderr, failed.stderr
        launcher("prewarm", "--python", self.py["313"], *offline_with("six"), env=self.env, check=True)
        before = set(os.listdir(self.cache / "trees"))
        code = (f"import launcher, os\nfrom launcher.replicas import LocalReplicaExecutor\n"
                f"flags = {{'with': ['six'], 'find-links': [{str(WHEELHOUSE)!r}], 'offline': True}}\n"
                f"with LocalReplicaExecutor({self.py['313']!r}, flags=flags) as rep:\n"
                f"    print([r['status'] for r in rep.collect(rep.launch_replicas(2, 'os.getpid', {{}}))])\n")
        rep = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True,
                             timeout=300)
        assert rep.returncode == 0 and "succeeded" in rep.stdout, rep.stderr  # (the Executor's tree, too)
        assert self.executor().returncode == 0
        self.executor_trees = set(os.listdir(self.cache / "trees")) - before  # their own set: six + cloudpickle
        # Traversable and readable by others, writable only by us: accepted.
        for dirpath, _dirs, _files in os.walk(self.cache):
            os.chmod(dirpath, stat.S_IMODE(os.lstat(dirpath).st_mode) | 0o055)
        assert self.run("311").returncode == 0  # remembered: the next one is the warm path

    def assert_warm(self) -> None:
        """The job's run takes the warm path (only the full path stamps the tree as used)."""
        stamps = sorted((self.cache / "used").iterdir())
        before = [p.stat().st_mtime_ns for p in stamps]
        assert self.run("311").returncode == 0
        assert [p.stat().st_mtime_ns for p in stamps] == before, "not the warm path"

    def directories(self) -> list[str]:
        out = ["."]
        for dirpath, dirs, _files in os.walk(self.cache):
            out.extend(str((Path(dirpath) / d).relative_to(self.cache)) for d in dirs)
        return sorted(out)

    def plant(self, who: tuple[int, int], rel: str) -> Callable[[], None]:
        """Make cache/rel world-writable; as the other user, drop a file there and
        swap its .pycs for payloads.  Returns what undoes it (in place: same
        directory inodes and mtimes, so the job's next run is warm again)."""
        target = self.cache / rel
        before = target.lstat()
        pycs = []
        for p in sorted(target.iterdir()):
            tag = next((t for t in self.py if f".cpython-{t}" in p.name), None)
            if p.suffix == ".pyc" and tag is not None:
                st = p.lstat()
                pycs.append((p, p.read_bytes(), st, self.payloads[tag]))
        target.chmod(stat.S_IMODE(before.st_mode) | 0o777)

        def attack() -> None:
            (target / "planted.py").write_text(f"open({str(self.marker)!r}+'/planted','a').close()\n")
            for p, data, st, payload in pycs:
                body = data[:16] + payload
                assert len(body) <= st.st_size, p
                tmp = p.with_name(p.name + ".x")
                tmp.write_bytes(body + b"\0" * (st.st_size - len(body)))
                os.utime(tmp, ns=(st.st_mtime_ns, st.st_mtime_ns))
                os.rename(tmp, p)

        as_user(who, attack)
        self.swapped += len(pycs)

        def undo() -> None:
            (target / "planted.py").unlink()
            for p, data, st, _payload in pycs:
                p.unlink()
                p.write_bytes(data)
                os.chmod(p, stat.S_IMODE(st.st_mode))
                os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
            target.chmod(stat.S_IMODE(before.st_mode))
            os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))

        return undo

    def loose_or_foreign(self, uid: int) -> list[str]:
        out = []
        for dirpath, dirs, files in os.walk(self.cache):
            for name in [*dirs, *files]:
                p = Path(dirpath) / name
                st = p.lstat()
                if st.st_uid == uid or st.st_mode & 0o022 and not stat.S_ISLNK(st.st_mode):
                    out.append(f"{p.relative_to(self.cache)} (uid {st.st_uid}, {oct(st.st_mode)})")
        st = self.cache.lstat()
        if st.st_mode & 0o022:
            out.append(f". ({oct(st.st_mode)})")
        return out


def _refused(proc: subprocess.CompletedProcess[str]) -> bool:
    if proc.returncode != 2:
        return False
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("launcher: "), proc.stderr
    return True


def test_no_directory_of_a_populated_cache_lets_another_user_choose_what_runs(
        base: Path, py311: str, py313: str, jemalloc: str, cotenant: tuple[int, int]) -> None:
    scene = Scene(base, py311, py313, jemalloc)
    scene.populate()
    scene.assert_warm()
    cases = scene.directories()
    assert len(cases) > 20 and "bootstrap" in cases and any(c.endswith("__pycache__") for c in cases)
    assert scene.executor_trees and all(t.startswith("cp313") for t in scene.executor_trees)
    for rel in cases:
        undo = scene.plant(cotenant, rel)
        # The job's warm run, and whatever else uses what lives in this directory.
        runs: list[Callable[[], subprocess.CompletedProcess[str]]] = [lambda: scene.run("311")]
        tree = rel.split("/")[1] if rel.startswith("trees/") else ""
        if tree in scene.executor_trees:
            runs.append(scene.executor)
        elif tree.startswith("cp313"):
            runs.append(lambda: scene.run("313"))
        refused = False
        for again in runs:
            proc = again()
            assert list(scene.marker.iterdir()) == [], f"{rel}: a payload ran"
            assert proc.returncode in (0, 2), (rel, proc.returncode, proc.stderr)
            if _refused(proc):
                refused = True
                break
        if refused:
            undo()  # (a tree is set aside and rebuilt instead: nothing to undo)
        else:
            assert scene.loose_or_foreign(cotenant[0]) == [], rel  # (and the job's run remembered again)
    assert scene.swapped > 10  # the gate's and the trees' bytecode were among them
    scene.assert_warm()


def test_a_sticky_shared_root_whose_areas_another_user_made_first(
        base: Path, py311: str, cotenant: tuple[int, int]) -> None:
    root = base / "sticky"
    root.mkdir()
    root.chmod(0o1777)
    outside = base / "hers"
    outside.mkdir()
    outside.chmod(0o777)
    marker = base / "sticky-ran"

    def prepare() -> None:
        for area in ("probes", "locks", "log", "runs", "used", "failures", "spill", "trees", "bootstrap"):
            (root / area).mkdir()
            (root / area).chmod(0o777)
        (root / "log" / "installs.jsonl").symlink_to(outside / "written-by-root")
        (outside / "fake-python").write_text(f"#!/bin/sh\ntouch {marker}\n")
        (outside / "fake-python").chmod(0o755)

    as_user(cotenant, prepare)
    env = base_env(root)
    for args in (("run", *offline_with("six"), "--", py311, "-c", SIX),
                 ("prewarm", "--python", py311, *offline_with("six")), ("cache", "verify"), ("cache", "clear")):
        proc = launcher(*args, env=env)
        assert _refused(proc), (args, proc.stderr)
        assert "sticky" in proc.stderr and str(root) in proc.stderr
    assert not marker.exists() and not (outside / "written-by-root").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["fake-python"]
