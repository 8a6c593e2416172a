"""A cache you can trust: never through a link or outside the cache, never code
another user could write, immutable trees checked at the right depth, and
`launcher cache verify [--repair]`."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import base_env, installs, launcher, offline_with
from launcher.cache.safety import remove  # trees are read-only: this is how to delete one

SIX = "import six, sys; sys.stdout.write(six.__file__)"
MARKUPSAFE = "import markupsafe, sys; sys.stdout.write(markupsafe.__file__)"
AREAS = ("trees", "memo", "probes", "runs", "failures", "used")
NOBODY = pwd.getpwnam("nobody").pw_uid


def trees_of(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "trees").iterdir() if not p.name.startswith("."))


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Everything under `root`: kind/mode, size and content digest, by relative path."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, digest)
    return out


def copy_cache(template: Path, dst: Path) -> Path:
    shutil.copytree(template, dst, symlinks=True)
    return dst


def doctor_fails(cache: Path) -> list[dict[str, object]]:
    from launcher.doctor.models import Report

    proc = launcher("doctor", "--json", env=base_env(cache))
    report = Report.model_validate_json(proc.stdout)
    assert proc.returncode == report.exit_code
    return [f.model_dump() for f in report.findings() if f.status == "fail"]


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr


def one_line(proc: subprocess.CompletedProcess[str], *parts: str) -> str:
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("launcher: "), proc.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def six_cache(tmp_path_factory: pytest.TempPathFactory, py311: str) -> Path:
    """A cache with one `--with six` tree (3.11), a run record and a memo entry."""
    cache = tmp_path_factory.mktemp("trust-six") / "cache"
    launcher("run", "--record", *offline_with("six"), "--", py311, "-c", SIX, env=base_env(cache), check=True)
    (cache / "failures" / "old.json").write_text("{}")
    return cache


@pytest.fixture(scope="module")
def markupsafe_cache(tmp_path_factory: pytest.TempPathFactory, py313: str) -> Path:
    cache = tmp_path_factory.mktemp("trust-markupsafe") / "cache"
    launcher("run", *offline_with("markupsafe"), "--", py313, "-c", MARKUPSAFE, env=base_env(cache), check=True)
    return cache


# ------------------------------------------------------------ never through a link


@pytest.mark.parametrize("command", [("prune",), ("prune", "--older-than", "0s"), ("clear",)])
@pytest.mark.parametrize("area", [*AREAS, "one tree"])
def test_cleaning_never_follows_a_link_out_of_the_cache(six_cache: Path, tmp_path: Path, area: str,
                                                        command: tuple[str, ...]) -> None:
    cache = copy_cache(six_cache, tmp_path / "cache")
    outside = tmp_path / "outside"
    if area == "one tree":
        (tree,) = trees_of(cache)
        shutil.copytree(tree, outside / tree.name, symlinks=True)
        assert remove(tree) == []
        tree.symlink_to(outside / tree.name)
        link = tree
    else:
        # The area's own entries, moved out: exactly what a cleaner following
        # the link would delete.
        shutil.move(str(cache / area), str(outside / area))
        (outside / area / "precious.json").write_text("{}")
        (cache / area).symlink_to(outside / area)
        link = cache / area
    before = snapshot(outside)

    proc = launcher("cache", *command, env=base_env(cache))

    no_traceback(proc)
    assert snapshot(outside) == before, "something outside the cache changed"
    assert link.is_symlink()
    if area == "one tree":
        assert proc.returncode == 0
        assert f"launcher: skipped {link}: is a symlink" in proc.stderr
    else:
        assert proc.returncode == 2
        one_line(proc, f"{link} is a symlink", f"rm {link}")


@pytest.mark.parametrize("command", [("prune",), ("prune", "--older-than", "0s"), ("clear",)])
def test_a_directory_where_a_use_stamp_should_be(six_cache: Path, tmp_path: Path,
                                                 command: tuple[str, ...]) -> None:
    cache = copy_cache(six_cache, tmp_path / "cache")
    (tree,) = trees_of(cache)
    stamp = cache / "used" / tree.name
    stamp.unlink()
    stamp.mkdir()
    (stamp / "keep").write_text("x")
    orphan = cache / "used" / "no-such-tree"
    orphan.mkdir()

    proc = launcher("cache", *command, env=base_env(cache))

    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert (stamp / "keep").read_text() == "x" and orphan.is_dir()
    assert f"skipped {orphan}: is a directory where a use stamp should be" in proc.stderr
    assert any(str(orphan) in str(f["message"]) for f in doctor_fails(cache))


@pytest.mark.parametrize("where", ["trees", "root"])
def test_a_file_where_a_cache_dir_should_be(six_cache: Path, tmp_path: Path, py311: str, where: str) -> None:
    cache = copy_cache(six_cache, tmp_path / "cache")
    odd = cache / "trees" if where == "trees" else cache
    assert remove(odd) == []
    odd.write_text("not a directory")
    env = base_env(cache)
    for args in (("cache", "list"), ("cache", "info"), ("cache", "prune"), ("cache", "clear"),
                 ("cache", "verify"), ("run", *offline_with("six"), "--", py311, "-c", SIX)):
        proc = launcher(*args, env=env)
        no_traceback(proc)
        assert proc.returncode == 2, (args, proc.stderr)
        one_line(proc, f"{odd} is not a directory")
    doctor = launcher("doctor", env=env)
    assert doctor.returncode == 1 and f"{odd} is not a directory" in doctor.stdout


def test_a_symlinked_tree_is_used_by_neither_run_nor_the_gate(six_cache: Path, tmp_path: Path,
                                                              py311: str) -> None:
    cache = copy_cache(six_cache, tmp_path / "cache")
    env = base_env(cache)
    child_env = json.loads(launcher("run", *offline_with("six"), "--", py311, "-c",
                                    "import json, os; print(json.dumps(dict(os.environ)))",
                                    env=env, check=True).stdout)
    (tree,) = trees_of(cache)
    elsewhere = tmp_path / "elsewhere" / tree.name
    shutil.copytree(tree, elsewhere, symlinks=True)
    assert remove(tree) == []
    tree.symlink_to(elsewhere)
    marker = tmp_path / "ran"

    proc = launcher("run", *offline_with("six"), "--", py311, "-c", f"open({str(marker)!r}, 'w')", env=env)
    assert proc.returncode == 2 and not marker.exists()
    one_line(proc, f"{tree} is a symlink", f"rm {tree}")

    # A worker started with the environment of an earlier run: its gate must
    # not import from the link (and says why once; the workload goes on).
    gated = subprocess.run([py311, "-c", "import sys; print([p for p in sys.path if 'trees' in p])"],
                           env=child_env, capture_output=True, text=True, timeout=120)
    assert gated.returncode == 0 and gated.stdout.strip() == "[]", gated
    assert len(gated.stderr.splitlines()) == 1 and "is a symlink" in gated.stderr
    assert tree.is_symlink() and (elsewhere / "six.py").is_file()


# ----------------------------------------------------------------- ownership


def _loosen(cache: Path, how: str) -> Path:
    """Make the cache (or a code dir in it) untrustworthy; return the dir named."""
    if how == "world-writable":
        cache.chmod(0o777)
        return cache
    if how == "owned by nobody":
        os.chown(cache, NOBODY, -1)  # root can still write it: the rule is about ownership
        return cache
    if how == "bootstrap group-writable":
        (cache / "bootstrap").chmod(0o770)
        return cache / "bootstrap"
    assert how == "trees owned by nobody"
    os.chown(cache / "trees", NOBODY, -1)
    return cache / "trees"


@pytest.mark.parametrize("how", ["world-writable", "owned by nobody", "bootstrap group-writable",
                                 "trees owned by nobody"])
def test_an_untrusted_cache_runs_nothing(six_cache: Path, tmp_path: Path, py311: str, how: str) -> None:
    cache = copy_cache(six_cache, tmp_path / "cache")
    env = base_env(cache)
    marker = tmp_path / "ran"
    run = ("run", *offline_with("six"), "--", py311, "-c", f"open({str(marker)!r}, 'w')")
    launcher(*run, env=env, check=True)  # remembered: the next identical run is the warm path
    marker.unlink()
    bad = _loosen(cache, how)
    fix = "chmod 700" if "writable" in how else "chown -R"

    proc = launcher(*run, env=env)
    assert proc.returncode == 2 and not marker.exists(), proc.stderr
    line = one_line(proc, str(bad), f"{fix} ", "LAUNCHER_CACHE_DIR")

    built = len(installs(cache, None))
    pre = launcher("prewarm", "--python", py311, *offline_with("six", "markupsafe"), env=env)
    assert pre.returncode == 2 and len(installs(cache, None)) == built
    assert one_line(pre) == line

    fails = doctor_fails(cache)
    assert [f["check"] for f in fails] == ["cache"]
    assert str(fails[0]["fix"]) in line and str(bad) in str(fails[0]["message"])


def test_new_dirs_are_private_and_trees_immutable(six_cache: Path) -> None:
    assert stat.S_IMODE(os.stat(six_cache).st_mode) == 0o700
    for area in ("memo", "specs", "used", "runs", "locks", "probes"):
        assert stat.S_IMODE(os.lstat(six_cache / area).st_mode) == 0o700, area
    # What a read-only shared cache serves: readable by others, writable by nobody else.
    for area in ("trees", "bootstrap"):
        assert stat.S_IMODE(os.lstat(six_cache / area).st_mode) == 0o755, area
    (tree,) = trees_of(six_cache)
    assert stat.S_IMODE(os.lstat(tree).st_mode) == 0o555
    for dirpath, dirs, files in os.walk(tree):
        for name in dirs + files:
            mode = os.lstat(os.path.join(dirpath, name)).st_mode
            assert not mode & 0o222, (name, oct(mode))
    listed = (tree / ".launcher-dirs").read_text().splitlines()
    assert listed[0] == "." and "__pycache__" in listed


# ------------------------------------------------------------- verify, repair


def _same_size_same_mtime_edit(tree: Path) -> str:
    p = tree / "markupsafe" / "__init__.py"
    st = p.stat()
    data = p.read_bytes()
    p.write_bytes(data.replace(b"Markup", b"Murkap", 1))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert p.stat().st_size == st.st_size
    return "markupsafe/__init__.py"


def _added(tree: Path) -> str:
    (tree / "markupsafe" / "evil.py").write_text("x = 1\n")
    return "markupsafe/evil.py"


def _deleted(tree: Path) -> str:
    (tree / "markupsafe" / "_native.py").unlink()
    return "markupsafe/_native.py"


def _foreign(tree: Path) -> str:
    (so,) = (tree / "markupsafe").glob("_speedups.cpython-313-*.so")
    foreign = so.with_name(so.name.replace("cpython-313", "cpython-311"))
    shutil.copyfile(so, foreign)
    return foreign.relative_to(tree).as_posix()


def _file_write_bit(tree: Path) -> str:
    # Content untouched: only the mode says a published file could be changed.
    p = tree / "markupsafe" / "_native.py"
    p.chmod(p.stat().st_mode | 0o200)
    return "markupsafe/_native.py"


def _dir_write_bit(tree: Path) -> str:
    p = tree / "markupsafe" / "__pycache__"
    p.chmod(p.stat().st_mode | 0o200)
    return "markupsafe/__pycache__"


@pytest.mark.parametrize("damage", [_same_size_same_mtime_edit, _added, _deleted, _foreign, _file_write_bit,
                                    _dir_write_bit], ids=lambda f: f.__name__.strip("_"))
def test_verify_finds_damage_and_repair_makes_it_whole(markupsafe_cache: Path, tmp_path: Path, py313: str,
                                                       damage: object) -> None:
    cache = copy_cache(markupsafe_cache, tmp_path / "cache")
    env = base_env(cache)
    (tree,) = trees_of(cache)
    assert launcher("cache", "verify", env=env, check=True).stdout.startswith(f"ok        {tree.name} (")
    bad = damage(tree)  # type: ignore[operator]

    proc = launcher("cache", "verify", env=env)
    assert proc.returncode == 1 and f"damaged   {tree.name}: {bad}: " in proc.stdout, proc.stdout
    assert tree.name in proc.stderr and "--repair" in proc.stderr
    report = json.loads(launcher("cache", "verify", "--json", tree.name, env=env).stdout)
    kinds = {p["kind"] for p in report["trees"][0]["problems"] if p["path"] == bad}
    if damage is _foreign:
        assert "foreign" in kinds and "cannot import (built for cp311" in proc.stdout + json.dumps(report)
    if damage in (_file_write_bit, _dir_write_bit):
        assert kinds == {"writable"} and f"{bad}: writable (published trees are read-only)" in proc.stdout

    fixed = launcher("cache", "verify", "--repair", env=env)
    assert fixed.returncode == 0 and f"repaired  {tree.name} (was: {bad}" in fixed.stdout, fixed
    assert launcher("cache", "verify", env=env).returncode == 0
    assert not (tree / "markupsafe" / "evil.py").exists()
    assert (tree / "markupsafe" / "_native.py").is_file()
    ok = launcher("run", *offline_with("markupsafe"), "--", py313, "-c",
                  "import markupsafe; print(markupsafe.Markup('<b>').__class__.__name__)", env=env, check=True)
    assert ok.stdout.strip() == "Markup"


def test_the_full_path_sees_a_same_size_edit_of_a_tree_file(markupsafe_cache: Path, tmp_path: Path,
                                                            py313: str) -> None:
    """Edited in place (same inode, same size, new mtime), as root or after a
    chmod can: no directory changes, so only the full path's check of each
    file's size and mtime against the manifest sees it, and rebuilds."""
    cache = copy_cache(markupsafe_cache, tmp_path / "cache")
    env = base_env(cache)
    (tree,) = trees_of(cache)
    p = tree / "markupsafe" / "__init__.py"
    st = p.stat()
    data = p.read_bytes()
    p.chmod(0o644)
    with open(p, "r+b") as f:
        f.write(data.replace(b"Markup", b"Murkap", 1))
    p.chmod(stat.S_IMODE(st.st_mode))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert (p.stat().st_ino, p.stat().st_size) == (st.st_ino, st.st_size)
    ok = launcher("run", *offline_with("markupsafe"), "--", py313, "-c",
                  "import markupsafe; print(markupsafe.Markup.__name__)", env=env, check=True)
    assert ok.stdout == "Markup\n", ok.stderr
    (rebuilt,) = installs(cache, "rebuilt")
    assert rebuilt["detail"] == "markupsafe/__init__.py: was modified", rebuilt
    assert p.read_bytes() == data


def test_verify_unknown_tree_is_one_line(markupsafe_cache: Path) -> None:
    proc = launcher("cache", "verify", "cp399-nope", env=base_env(markupsafe_cache))
    assert proc.returncode == 2
    one_line(proc, "no runtime tree 'cp399-nope'", "launcher cache list")


@pytest.mark.parametrize("change", ["gained", "lost"])
def test_a_warm_run_rebuilds_a_tree_that_gained_or_lost_a_file(markupsafe_cache: Path, tmp_path: Path,
                                                                py313: str, change: str) -> None:
    cache = copy_cache(markupsafe_cache, tmp_path / "cache")
    env = base_env(cache)
    run = ("run", *offline_with("markupsafe"), "--", py313, "-c", MARKUPSAFE)
    launcher(*run, env=env, check=True)
    launcher(*run, env=env, check=True)  # warm
    (tree,) = trees_of(cache)
    # What an age-based cleaner does (tmpreaper, systemd-tmpfiles): one old file gone.
    victim = tree / "markupsafe" / "__pycache__" / "extra.cpython-313.pyc"
    if change == "gained":
        victim.write_bytes(b"")
    else:
        victim = next((tree / "markupsafe" / "__pycache__").glob("_native.*.pyc"))
        victim.unlink()

    launcher(*run, env=env, check=True)
    (rebuilt,) = installs(cache, "rebuilt")
    assert rebuilt["detail"].startswith(str(victim.relative_to(tree)))
    assert victim.exists() == (change == "lost")
    assert launcher("cache", "verify", env=env).returncode == 0


def test_memo_is_one_small_entry_per_invocation(markupsafe_cache: Path, tmp_path: Path, py313: str) -> None:
    cache = copy_cache(markupsafe_cache, tmp_path / "cache")
    env = base_env(cache)
    for p in (cache / "memo").iterdir():
        p.unlink()  # the template's, for its own paths
    for i in range(3):
        launcher("run", *offline_with("markupsafe"), "--", py313, "-c", f"pass  # {i}", env=env, check=True)
    memo = cache / "memo"
    entries = sorted(memo.glob("run-*.marshal"))
    plans = sorted(memo.glob("plan-*.marshal"))
    assert len(entries) == 3 and len(plans) == 1, (entries, plans)
    # A fixed set of watched paths (config and uv.toml places, the gate,
    # the interpreter, the spec, one manifest per tree): small whatever the tree.
    assert all(p.stat().st_size < 4096 for p in entries + plans)
    # No file list: a plan names each tree once, with one digest.
    assert b"markupsafe/__init__.py" not in plans[0].read_bytes()


def test_the_safe_walker_never_descends_or_deletes_through_a_link(tmp_path: Path) -> None:
    from launcher.cache.safety import walk

    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "keep.txt").write_text("mine")
    doomed = tmp_path / "cache" / "trees" / ".trash-x"
    (doomed / "pkg" / "sub").mkdir(parents=True)
    (doomed / "pkg" / "sub" / "m.py").write_text("x = 1\n")
    (doomed / "pkg" / "to-dir").symlink_to(outside)
    (doomed / "pkg" / "to-file").symlink_to(outside / "deep" / "keep.txt")
    for p in (doomed / "pkg" / "sub" / "m.py", doomed / "pkg" / "sub", doomed / "pkg", doomed):
        p.chmod(0o500 if p.is_dir() else 0o400)  # as published: read-only
    before = snapshot(outside)

    seen = [rel for rel, _st in walk(doomed)]
    assert seen == ["pkg", "pkg/sub", "pkg/sub/m.py", "pkg/to-dir", "pkg/to-file"]
    assert remove(doomed) == [] and not doomed.exists()
    assert snapshot(outside) == before
    link = tmp_path / "cache" / "trees" / "linked"
    link.symlink_to(outside)
    assert remove(link) == [] and not os.path.lexists(link) and snapshot(outside) == before


def test_published_trees_stop_their_owner_and_still_get_removed(six_cache: Path) -> None:
    """Root ignores modes, so the owner here is `nobody`: in a forked child that
    drops to it, a published tree refuses edits, additions and removals, and
    the safe walker still removes the whole tree (as prune and clear do)."""
    import tempfile

    (tree,) = trees_of(six_cache)
    base = Path(tempfile.mkdtemp(prefix="launcher-trust-"))
    try:
        copy = base / "trees" / tree.name
        shutil.copytree(tree, copy, symlinks=True)
        for dirpath, _dirs, files in os.walk(base):
            for p in [dirpath, *(os.path.join(dirpath, f) for f in files)]:
                os.chown(p, NOBODY, -1)
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 1
            try:
                os.setgid(pwd.getpwnam("nobody").pw_gid)
                os.setuid(NOBODY)
                refused = 0
                for attempt in (lambda: os.open(copy / "six.py", os.O_WRONLY | os.O_APPEND),
                                lambda: os.open(copy / "new.py", os.O_WRONLY | os.O_CREAT),
                                lambda: os.unlink(copy / "six.py"), lambda: os.mkdir(copy / "pkg")):
                    try:
                        attempt()
                    except PermissionError:
                        refused += 1
                code = 0 if refused == 4 and remove(copy) == [] and not copy.exists() else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        shutil.rmtree(base)


def test_memo_names_are_stable_across_processes_and_bounded(tmp_path: Path) -> None:
    """The warm path finds an entry by a hash of its key that every process
    computes alike (str hashes are salted per process; int hashes are not),
    and remembering more than 64 invocations keeps the newest 64."""
    import sys

    import _launcher_warm as _fastrun
    from launcher import memo

    root = str(tmp_path / "cache")
    os.makedirs(root + "/memo", mode=0o700)
    environ = {"LAUNCHER_CACHE_DIR": root, "PATH": "/usr/bin"}
    watched = tmp_path / "watched"
    watched.write_text("x")
    code = ("import sys; import _launcher_warm as f; "
            "print(f.entry_path(sys.argv[1], f.key(['run', 'x'], {'PATH': '/usr/bin'}, '/w')))")
    names = {subprocess.run([sys.executable, "-c", code, root], capture_output=True, text=True, check=True,
                            env=dict(os.environ, PYTHONHASHSEED=seed)).stdout.strip() for seed in ("1", "2")}
    assert names == {_fastrun.entry_path(root, _fastrun.key(["run", "x"], {"PATH": "/usr/bin"}, "/w"))}

    def argv(i: int) -> list[str]:
        return ["run", "--", "python3", "-c", f"pass  # {i}"]

    for i in range(70):
        memo.remember(argv(i), environ, "/w", ["python3"], {}, None, [str(watched)], root)
    entries = sorted(Path(root, "memo").glob("run-*.marshal"))
    assert len(entries) == 64 and len(list(Path(root, "memo").glob("plan-*.marshal"))) == 1
    # The newest 64 are where the warm path looks for them; the 6 oldest are not.
    kept = {i for i in range(70) if os.path.exists(_fastrun.entry_path(root, _fastrun.key(argv(i), environ, "/w")))}
    assert kept == set(range(6, 70))


@pytest.mark.parametrize("how", ["world-writable", "locks linked elsewhere"])
def test_the_gates_miss_path_writes_nothing_into_an_untrusted_cache(six_cache: Path, tmp_path: Path,
                                                                    py311: str, py313: str, how: str) -> None:
    # A worker of an earlier run, on an interpreter with no tree yet (the miss
    # path), after the cache became unsafe: no lock, no record, no build.
    cache = copy_cache(six_cache, tmp_path / "cache")
    child_env = json.loads(launcher("run", "--record", *offline_with("six"), "--", py311, "-c",
                                    "import json, os; print(json.dumps(dict(os.environ)))",
                                    env=base_env(cache), check=True).stdout)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if how == "world-writable":
        cache.chmod(0o777)
        named = str(cache)
    else:
        remove(cache / "locks")
        (cache / "locks").symlink_to(elsewhere)
        named = str(cache / "locks")
    before = snapshot(cache)
    gated = subprocess.run([py313, "-c", "import sys; print([p for p in sys.path if 'trees' in p])"],
                           env=child_env, capture_output=True, text=True, timeout=120)
    assert gated.returncode == 0 and gated.stdout.strip() == "[]", gated
    lines = gated.stderr.splitlines()
    assert len(lines) == 1 and named in lines[0] and "launcher doctor" in lines[0], gated.stderr
    # (The interpreter's own import system may cache the gate's bytecode
    # before any code of ours runs: that is CPython's, not a write of ours.)
    def ours(snap: dict[str, tuple[int, int, str]]) -> dict[str, tuple[int, int, str]]:
        return {k: v for k, v in snap.items() if "__pycache__" not in k and not k.startswith("runs/")}

    assert ours(snapshot(cache)) == ours(before) and list(elsewhere.iterdir()) == []
    record = cache / "runs" / f"{child_env['LAUNCHER_RUN_ID']}.jsonl"
    events = [json.loads(x) for x in record.read_text().splitlines()]
    if how == "world-writable":  # not even the run record: others could have replaced runs/
        assert not any(e.get("state") == "untrusted" for e in events), events
    else:  # runs/ is still ours: doctor can tell what happened
        assert [e["state"] for e in events if e["event"] == "gate"][-1] == "untrusted", events


# One rule, three copies: cache.safety (the full path, doctor, cache commands),
# _launcher_warm.trusted (the warm path, no pathlib) and the gate's _untrusted (its
# miss path, stdlib only).  They cannot import each other cheaply, so this
# holds them to the same verdicts.
ROOT_CASES = ["0700", "0777", "0770", "1777 sticky", "owned by nobody", "a link to a 0700 dir"]
AREA_CASES = ["0700", "0770", "0757", "1777 sticky", "owned by nobody", "a link", "a file", "missing"]


def _shape(path: Path, how: str, tmp_path: Path) -> None:
    if how == "missing":
        return
    if how == "a file":
        path.write_text("x")
        return
    if how.startswith("a link"):
        real = tmp_path / f"real-{path.name}"
        real.mkdir(mode=0o700)
        path.symlink_to(real)
        return
    path.mkdir()
    if how == "owned by nobody":
        path.chmod(0o700)
        os.chown(path, NOBODY, -1)
    else:
        path.chmod(int(how.split()[0], 8))


@pytest.mark.parametrize(("where", "how"), [("root", h) for h in ROOT_CASES] + [("trees", h) for h in AREA_CASES])
def test_the_three_copies_of_the_trust_rule_agree(tmp_path: Path, where: str, how: str) -> None:
    import _launcher_warm as _fastrun
    from launcher.cache import CacheLayout, safety
    from launcher.gate import _launcher_miss

    root = tmp_path / "cache"
    if where == "root":
        _shape(root, how, tmp_path)
    else:
        root.mkdir(mode=0o700)
        _shape(root / "trees", how, tmp_path)
    full = safety.problems(CacheLayout(root)) == []
    warm = _fastrun.trusted(str(root))
    gate = (_launcher_miss._untrusted(str(root), True) is None
            and _launcher_miss._untrusted(str(root / "trees")) is None)
    assert full == warm == gate, (how, where, full, warm, gate)
    # A sticky shared root (like /tmp) is refused too: others could create its areas first.
    assert full == (how in ("0700", "a link to a 0700 dir", "missing"))
