"""Start-up cost guards that time nothing: the gate's matched path and the warm
`launcher run` fast path import only what a fixed allow-list names.

A regression that adds an import to either path (a `json` for convenience, a
`typing` for an annotation) is caught by `make test` on any machine, however
noisy; `make bench` then says what it costs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import LAUNCHER, foreign_python, offline_with
from support import imported_modules

# What the gate may add to sys.modules on the matched path: itself, nothing else.
GATE_ALLOWED = {"sitecustomize"}
# What the warm `launcher run` may import beyond a bare start of its own python.
FASTPATH_ALLOWED = {"_launcher_warm", "launcher", "launcher.__main__", "launcher.execute"}
# Named explicitly too, so a failure says what went wrong.
HEAVY = {"click", "pydantic", "pydantic_core", "rich", "packaging", "platformdirs", "json",
         "filelock", "psutil", "uv", "typing", "__future__"}

SHOW_MODULES = "import sys; sys.stdout.write('\\n'.join(sorted(sys.modules)) + '\\n--\\n' + '\\n'.join(sys.path))"
CAPTURE_ENV = "import json, os; print(json.dumps(dict(os.environ)))"
# Interpreter -> what its runtime tree holds (PyPy has no markupsafe wheel offline).
PACKAGES = {"py311": "markupsafe", "py313": "markupsafe", "py313t": "markupsafe", "pypy": "six"}


@pytest.fixture(scope="module")
def base_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The caller's environment with an isolated cache, and bytecode writing off
    as on many machines (the gate must still run from its own .pyc)."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("LAUNCHER_") and k not in ("PYTHONPATH", "LD_PRELOAD", "PYTHON_EXEC",
                                                        "PYTHONPROFILEIMPORTTIME", "PYTHONVERBOSE")}
    e["LAUNCHER_CACHE_DIR"] = str(tmp_path_factory.mktemp("gate-imports") / "cache")
    e["PYTHONDONTWRITEBYTECODE"] = "1"
    return e


def _python(request: pytest.FixtureRequest, name: str) -> str:
    return foreign_python("pypy") if name == "pypy" else str(request.getfixturevalue(name))


def _gated_env(python: str, package: str, base_env: dict[str, str]) -> dict[str, str]:
    """Exactly the environment `launcher run` gives `python` (its tree built first)."""
    proc = subprocess.run([str(LAUNCHER), "run", *offline_with(package), "--", python, "-c", CAPTURE_ENV],
                          env=base_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    env: dict[str, str] = json.loads(proc.stdout)
    return env


def _modules(python: str, env: dict[str, str]) -> tuple[set[str], list[str]]:
    proc = subprocess.run([python, "-c", SHOW_MODULES], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    mods, _, path = proc.stdout.partition("\n--\n")
    return set(mods.split()), path.splitlines()


@pytest.mark.parametrize("name", ["py311", "py313", "py313t", "pypy"])
def test_matched_gate_imports_nothing_beyond_the_allow_list(
        request: pytest.FixtureRequest, name: str, base_env: dict[str, str]) -> None:
    python = _python(request, name)
    gated = _gated_env(python, PACKAGES[name], base_env)
    cache = Path(base_env["LAUNCHER_CACHE_DIR"])
    subprocess.run([python, "-c", "pass"], env=gated, check=True, timeout=120)  # the gate's .pyc, once
    before = _files(cache)

    bare_mods, _ = _modules(python, base_env)
    gated_mods, gated_path = _modules(python, gated)

    assert "sitecustomize" in gated_mods, "the gate did not run"
    assert any("/trees/" in p for p in gated_path), "not the matched path: no runtime tree on sys.path"
    assert gated_mods - bare_mods <= GATE_ALLOWED, sorted(gated_mods - bare_mods - GATE_ALLOWED)
    # The matched path only reads: no record, no lock, no stamp, nothing
    # created, changed or removed anywhere in the cache.
    assert _files(cache) == before


def _files(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under `root`: (mode, size, mtime_ns), by path."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.join(dirpath, name)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("name", ["py311", "py313", "py313t", "pypy"])
def test_matched_gate_runs_from_its_own_bytecode(
        request: pytest.FixtureRequest, name: str, base_env: dict[str, str]) -> None:
    """With PYTHONDONTWRITEBYTECODE the import system never caches the gate; the
    gate writes its .pyc itself once, and every later start loads it."""
    python = _python(request, name)
    gated = _gated_env(python, PACKAGES[name], base_env)
    boot = Path(gated["LAUNCHER_BOOTSTRAP"])
    for pyc in (boot / "__pycache__").glob("sitecustomize.*"):
        pyc.unlink()  # as on a cold cache the launcher could not probe this interpreter on
    first = subprocess.run([python, "-c", "pass"], env=gated, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0 and first.stderr == "", first.stderr
    assert list((boot / "__pycache__").glob("sitecustomize.*.pyc")), "the gate wrote no .pyc"

    verbose = subprocess.run([python, "-v", "-c", "pass"], env=gated, capture_output=True, text=True,
                             timeout=120).stderr
    assert f"matches {boot}/sitecustomize.py" in verbose, "the gate was compiled from source again"


def test_warm_launcher_run_imports_no_heavy_module(py311: str, base_env: dict[str, str]) -> None:
    args = [sys.executable, "-X", "importtime", str(LAUNCHER), "run", *offline_with("markupsafe"), "--",
            py311, "-c", "pass"]
    cold = subprocess.run(args, env=base_env, capture_output=True, text=True, timeout=600)
    warm = subprocess.run(args, env=base_env, capture_output=True, text=True, timeout=120)
    bare = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], env=base_env,
                          capture_output=True, text=True, timeout=120)
    assert cold.returncode == warm.returncode == bare.returncode == 0, warm.stderr
    cold_mods, warm_mods, bare_mods = (imported_modules(p.stderr) for p in (cold, warm, bare))

    assert "launcher.plan" in cold_mods  # the parser sees the full path when it runs
    assert "_launcher_warm" in warm_mods and "launcher.plan" not in warm_mods, "no fast path"
    assert not {m for m in warm_mods if m.split(".")[0] in HEAVY}, sorted(
        m for m in warm_mods if m.split(".")[0] in HEAVY)
    assert warm_mods - bare_mods <= FASTPATH_ALLOWED, sorted(warm_mods - bare_mods - FASTPATH_ALLOWED)

    # ... and loads them from bytecode even under PYTHONDONTWRITEBYTECODE (the
    # full path writes it once): compiling them would cost more than the rest.
    verbose = subprocess.run([sys.executable, "-v", *args[3:]], env=base_env, capture_output=True,
                             text=True, timeout=120).stderr
    for name in ("launcher/__init__", "launcher/__main__", "_launcher_warm"):
        folder, _, stem = name.rpartition("/")
        where = rf"\S+/{folder}/" if folder else r"\S+/"
        assert re.search(rf"^# {where}__pycache__/{stem}\.\S+\.pyc matches {where}{stem}\.py$",
                         verbose, re.M), f"{name}.py was compiled from source"


@pytest.mark.parametrize("supervise", [False, True], ids=["exec", "supervise"])
def test_warm_launcher_run_as_the_script_runs_it_imports_not_even_os(
        py311: str, base_env: dict[str, str], supervise: bool) -> None:
    """The `launcher` script runs its python with -I -S, so nothing has imported
    os yet: the warm path must not either (os, with collections.abc's classes,
    costs more than the rest of the warm path); nor --supervise's."""
    flags = ["--supervise"] if supervise else []
    args = [str(LAUNCHER), "run", *flags, *offline_with("markupsafe"), "--", py311, "-c", "pass"]
    subprocess.run(args, env=base_env, capture_output=True, check=True, timeout=600)  # cold: remembers
    isolated = [sys.executable, "-I", "-S", "-X", "importtime"]
    warm = subprocess.run([*isolated, *args], env=base_env, capture_output=True, text=True, timeout=120)
    bare = subprocess.run([*isolated, "-c", "pass"], env=base_env, capture_output=True, text=True, timeout=120)
    assert warm.returncode == bare.returncode == 0, warm.stderr
    warm_mods, bare_mods = imported_modules(warm.stderr), imported_modules(bare.stderr)
    assert "_launcher_warm" in warm_mods and "launcher.plan" not in warm_mods, "no fast path"
    allowed = FASTPATH_ALLOWED | ({"launcher.supervise", "launcher._proctree", "_ctypes"} if supervise else set())
    assert "os" not in bare_mods  # else this test proves nothing
    assert warm_mods - bare_mods <= allowed, sorted(warm_mods - bare_mods - allowed)
    if not supervise:  # one module of ours, found without the package
        assert warm_mods - bare_mods == {"_launcher_warm"}, sorted(warm_mods - bare_mods)


def test_the_gates_miss_part_is_read_only_on_a_miss(base_env: dict[str, str], py311: str, py313: str,
                                                    tmp_path: Path) -> None:
    # Building, records and rare exits live in _launcher_miss.py so that a
    # matched start does not read and unmarshal them: a hit never loads it
    # (-v names every code object an interpreter loads from bytecode).
    env = dict(base_env, LAUNCHER_CACHE_DIR=str(tmp_path / "cache"))
    hit = subprocess.run([str(LAUNCHER), "run", *offline_with("six"), "--", py311, "-v", "-c", "import six"],
                         env=env, check=True, capture_output=True, text=True, timeout=300)
    boot = next((tmp_path / "cache" / "bootstrap").iterdir())
    assert (boot / "_launcher_miss.py").is_file() and f"matches {boot}/sitecustomize.py" in hit.stderr
    assert "_launcher_miss" not in hit.stderr
    # Its bytecode is there all the same: the launcher writes it up front for
    # the interpreters it prepares, so none of them writes into the gate's dir.
    assert list((boot / "__pycache__").glob("_launcher_miss.cpython-311.opt-2.pyc"))
    # A worker the launcher could not see (3.13 behind sh) takes the miss path.
    script = f"{py313} -c 'import six, sys; print(sys.modules[\"six\"].__file__)'"
    got = subprocess.run([str(LAUNCHER), "run", *offline_with("six"), "--", "/bin/sh", "-c", script],
                         env=env, check=True, capture_output=True, text=True, timeout=300)
    assert "/trees/cp313-" in got.stdout, got
    assert list((boot / "__pycache__").glob("_launcher_miss.cpython-313.pyc"))  # loaded by that 3.13
