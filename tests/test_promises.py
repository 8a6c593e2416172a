"""Promises the README makes that only show when they break: what the gate's
hit costs does not grow with the tree, a wheel built for another ABI never
becomes a tree, a preload library that went away is noticed on the warm path,
and a failure line names `launcher doctor`.  Each asserts what the user sees
or the system does (syscalls, lines, files), never an internal list."""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import WHEELHOUSE, installs, launcher, missing
from support import make_wheel

BIG = 5000


def _strace() -> str:
    found = shutil.which("strace")
    if not found:
        missing("strace is not installed: apt-get install strace (.ci/run installs it)")
    return found


def _tree_wheel(links: Path, name: str, modules: int) -> None:
    """A pure wheel of `modules` one-line modules in packages of 100."""
    files = {f"{name}/__init__.py": ""}
    for m in range(modules):
        pkg = f"{name}/p{m // 100:02d}"
        files.setdefault(f"{pkg}/__init__.py", "")
        files[f"{pkg}/m{m % 100:02d}.py"] = f"VALUE = {m}\n"
    make_wheel(links, name, files)


def _gated_env(py: str, req: str, links: Path, cache: Path, env: dict[str, str]) -> tuple[dict[str, str], str]:
    """What `launcher run --with req` execs `py` with (its tree built and published)."""
    import launcher as api

    flags = {"with": [req], "find-links": [str(links), str(WHEELHOUSE)], "offline": True,
             "cache-dir": str(cache)}
    prepared = api.prepare([py, "-c", "pass"], flags=flags, environ=env)
    (pi,) = prepared.interpreters
    assert pi.tree is not None and pi.tree.is_dir(), pi
    return dict(prepared.env), str(pi.tree)


CALL = re.compile(r"^(?:\[pid +\d+\] |\d+ +)?([a-z_0-9]+)\((.*)$")
ADDRESS = re.compile(r"0x[0-9a-f]+")  # buffers on the stack: ASLR moves them between runs


def _file_syscalls(strace: str, py: str, env: dict[str, str], tree: str, out: Path) -> list[str]:
    """Every file syscall of `py -c pass`, the tree's path replaced by TREE."""
    subprocess.run([strace, "-f", "-qq", "-s", "4096", "-e", "trace=%file", "-o", str(out), py, "-c", "pass"],
                   env=env, check=True, timeout=120, capture_output=True)
    calls = []
    for line in out.read_text(errors="replace").splitlines():
        m = CALL.match(line)
        if m:
            args = ADDRESS.sub("0x?", m.group(2).replace(tree, "TREE"))
            calls.append(f"{m.group(1)}({args}")
    return calls


def test_the_gates_hit_costs_the_same_syscalls_with_a_5000_module_tree(tmp_path: Path, env: dict[str, str],
                                                                       cache_dir: Path, py311: str) -> None:
    """README: the start-up cost does not grow with the tree.  Counted, not
    timed: the gate's matched path makes the same file syscalls with a
    10-module tree and a 5,000-module one (one lstat of the tree, whatever
    is in it)."""
    strace = _strace()
    links = tmp_path / "links"
    _tree_wheel(links, "smalltree", 10)
    _tree_wheel(links, "bigtree", BIG)
    small_env, small = _gated_env(py311, "smalltree", links, cache_dir, env)
    big_env, big = _gated_env(py311, "bigtree", links, cache_dir, env)
    assert sum(len(f) for _d, _s, f in os.walk(big)) > BIG
    for e, tree, mod in ((small_env, small, "smalltree.p00.m03"), (big_env, big, "bigtree.p49.m99")):
        got = subprocess.run([py311, "-c", f"import {mod} as m, sys; print(m.__file__, m.VALUE)"], env=e,
                             capture_output=True, text=True, timeout=120)
        assert got.stdout.startswith(tree + "/") and got.stderr == "", got  # the matched path, the tree used
    _file_syscalls(strace, py311, small_env, small, tmp_path / "warmup")  # the gate's .pyc written once
    _file_syscalls(strace, py311, big_env, big, tmp_path / "warmup")
    small_calls = _file_syscalls(strace, py311, small_env, small, tmp_path / "small")
    big_calls = _file_syscalls(strace, py311, big_env, big, tmp_path / "big")
    # The tree itself is looked at (the gate's lstat and plugins check, the
    # import system's listing of its top), never a file inside it.
    inside = [c for c in big_calls if "TREE/" in c and "TREE/.launcher-plugins" not in c]
    assert inside == [], inside[:5]
    assert collections.Counter(big_calls) == collections.Counter(small_calls), (
        sorted((collections.Counter(big_calls) - collections.Counter(small_calls)).items())[:10])


def test_a_foreign_extension_fails_the_build_at_publish(tmp_path: Path, env: dict[str, str], cache_dir: Path,
                                                        py311: str) -> None:
    """A wheel that says py3-none-any but ships a cp313 extension: installed for
    3.11 it would import as ModuleNotFoundError at the worst moment.  The build
    fails at publish, in one line that points at `launcher doctor`, no tree is
    published, and the command still runs."""
    links = tmp_path / "links"
    so = "foreignext/_speedups.cpython-313-x86_64-linux-gnu.so"
    make_wheel(links, "foreignext", {"foreignext/__init__.py": "", so: "not really a shared object\n"})
    proc = launcher("run", "--with", "foreignext", "--find-links", str(links), "--offline", "--", py311, "-c",
                    "print('payload')", env=env)
    assert (proc.returncode, proc.stdout) == (0, "payload\n"), proc.stderr
    [line] = proc.stderr.splitlines()
    assert re.fullmatch(
        r"launcher: could not build the runtime for (cp311-\S+) \(the installer produced 1 extension module "
        rf"\1 cannot import, e\.g\. {re.escape(so)} \(built for cp313 \(x86_64-linux-gnu\)\)\); the command runs "
        r"without it\. Run 'launcher doctor' for details\.", line), line
    assert [p.name for p in (cache_dir / "trees").iterdir() if not p.name.startswith(".")] == []
    assert len(installs(cache_dir, "failed")) == 1


MAPPED = "import os; print('/libjemalloc' in open('/proc/self/maps').read(), os.environ.get('LD_PRELOAD'))"


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_a_preload_library_gone_after_a_warm_run_is_noticed(how: str, tmp_path: Path, env: dict[str, str],
                                                            jemalloc: str, py311: str) -> None:
    """The loader silently skips a preload that is gone (a warning and exit 0),
    so the warm path must notice it: the run refuses with the line the full
    path gives, and the command does not run without the preload unawares."""
    lib = tmp_path / "lib" / "libjemalloc.so.2"
    lib.parent.mkdir()
    shutil.copyfile(os.path.realpath(jemalloc), lib)
    argv = ("run", "--preload", str(lib), "--", py311, "-c", MAPPED)
    for _ in range(2):  # cold, then warm
        proc = launcher(*argv, env=env, check=True)
        assert (proc.stdout, proc.stderr) == ("True None\n", ""), proc
    if how == "removed":
        lib.unlink()
    else:  # by something else that is not a library (written aside, renamed over)
        aside = lib.with_name("aside")
        aside.write_text("not a library\n")
        os.replace(aside, lib)
    proc = launcher(*argv, env=env)
    assert (proc.returncode, proc.stdout) == (2, ""), proc
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"launcher: --preload {lib}: "), line
    if how == "removed":
        assert line.startswith(f"launcher: --preload {lib}: no such file"), line
