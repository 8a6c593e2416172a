"""Each interpreter ABI gets its own runtime tree, built for that ABI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import installs, launcher, offline_with

SHOW = (
    "import json, sys, markupsafe._speedups as s, psutil._psutil_linux as p; "
    "print(json.dumps({'speedups': s.__file__, 'psutil': p.__file__, "
    "'psutil_version': __import__('psutil').__version__}))"
)


CASES = {
    "py311": ("cp311-x86_64-linux-gnu", ".abi3.so"),
    "py313": ("cp313-x86_64-linux-gnu", ".abi3.so"),
    "py313t": ("cp313t-x86_64-linux-gnu", ".cpython-313t-x86_64-linux-gnu.so"),
}


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[Path, dict]:
    """One cache, one requirement set, launched under all three interpreters."""
    from conftest import LAUNCHER, base_env

    cache = tmp_path_factory.mktemp("abi-cache")
    base = base_env(cache)
    out = {}
    for which in CASES:
        python = request.getfixturevalue(which)
        # -q: a build that outlasts half a second would print its progress line.
        proc = launcher("run", "-q", *offline_with("markupsafe", "psutil==7.2.2"), "--", python, "-c", SHOW,
                        env=base, check=True)
        out[which] = (proc, json.loads(proc.stdout))
    assert LAUNCHER.exists()
    return cache, out


@pytest.mark.parametrize("which", list(CASES))
def test_each_abi_gets_its_own_tree(which: str, launched: tuple[Path, dict]) -> None:
    cache, out = launched
    tag, psutil_so = CASES[which]
    proc, got = out[which]
    tree = Path(got["speedups"]).parents[1]
    assert tree.parent == cache / "trees"
    assert tree.name.startswith(tag + "-glibc"), tree.name
    suffix = tag.replace("cp", "cpython-", 1)
    assert got["speedups"].endswith(f"_speedups.{suffix}.so")
    assert got["psutil"].startswith(str(tree))
    assert got["psutil"].endswith(psutil_so)  # abi3 for cp311/cp313, its own wheel for cp313t
    assert got["psutil_version"] == "7.2.2"
    assert proc.stderr == ""  # invisible when things are right


def test_three_distinct_trees(launched: tuple[Path, dict]) -> None:
    cache, _ = launched
    names = sorted(p.name for p in (cache / "trees").iterdir() if not p.name.startswith("."))
    assert len(names) == 3
    assert len({n.split("-glibc")[0] for n in names}) == 3
    assert len({n.rsplit("-", 1)[1] for n in names}) == 1  # one requirement set, three ABIs
    manifest = json.loads((cache / "trees" / names[-1] / ".launcher-manifest.json").read_text())
    assert {d["name"].lower() for d in manifest["distributions"]} == {"markupsafe", "psutil"}
    assert len(installs(cache)) == 3


def test_abi_key_separates_free_threaded(py313: str, py313t: str, cache_dir: Path) -> None:
    from launcher.cache import CacheLayout
    from launcher.probe import probe

    layout = CacheLayout(cache_dir)
    a, b = probe(py313, layout), probe(py313t, layout)
    assert a.cache_tag == b.cache_tag == "cpython-313"  # why cache_tag is no ABI key
    assert a.abi_key != b.abi_key
    assert b.gil_disabled and not a.gil_disabled


def test_pypy_tree_and_priority(env: dict[str, str], cache_dir: Path) -> None:
    """Debian's PyPy ships its own six: by default the interpreter's own
    packages win; --with-priority first puts the runtime tree before them."""
    from conftest import foreign_python

    pypy = foreign_python("pypy")
    code = "import six; print(six.__file__)"
    last = launcher("run", *offline_with("six"), "--", pypy, "-c", code, env=env, check=True)
    first = launcher("run", "--with-priority", "first", *offline_with("six"), "--", pypy, "-c", code,
                     env=env, check=True)
    tree = str(cache_dir / "trees" / "pypy39-pp73-x86_64-linux-gnu-")
    assert first.stdout.startswith(tree), first.stdout
    own = subprocess.run([pypy, "-c", code], capture_output=True, text=True)
    if own.returncode == 0:  # the interpreter has a six of its own: by default it wins
        assert last.stdout == own.stdout
    else:
        assert last.stdout.startswith(tree), last.stdout
