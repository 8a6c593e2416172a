"""Shared fixtures: real interpreters of other ABIs, the offline wheelhouse,
an isolated cache, and a way to run the installed `launcher` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from support import FOREIGN, LAUNCHER, PYTHONS, REPO, SHARED, WHEELHOUSE, installs  # noqa: F401 - re-exported

STRICT = bool(os.environ.get("LAUNCHER_TEST_STRICT"))
# uv's cache as the developer (or CI's setup) left it: PyPI metadata and
# wheels that `make setup`, `make ray-env` or any install on this machine put
# there.  Offline runs with `--find-links WHEELHOUSE` would resolve against
# that too (a markupsafe 3.0.4 cached for cp311 only split a job's
# versions), so the tests run with a cache of their own (uv_cache below);
# the two that need what `make setup` cached (hatchling, the launcher's
# dependencies) ask for this one.
REAL_UV_CACHE = os.environ.get("UV_CACHE_DIR")


@pytest.fixture(scope="session", autouse=True)
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Generator[Path, None, None]:
    """Every uv the tests start, through the launcher or not, gets an empty
    cache of the session's: offline resolutions see the wheelhouse only."""
    path = tmp_path_factory.mktemp("uv-cache")
    os.environ["UV_CACHE_DIR"] = str(path)
    yield path
    if REAL_UV_CACHE is None:
        os.environ.pop("UV_CACHE_DIR", None)
    else:
        os.environ["UV_CACHE_DIR"] = REAL_UV_CACHE


def with_real_uv_cache(env: dict[str, str]) -> dict[str, str]:
    """`env` with uv's own cache, for an offline `uv build`/`uv tool install`
    of this checkout (hatchling and the dependencies are there, not in the
    wheelhouse)."""
    out = dict(env)
    if REAL_UV_CACHE is None:
        out.pop("UV_CACHE_DIR", None)
    else:
        out["UV_CACHE_DIR"] = REAL_UV_CACHE
    return out


def missing(reason: str) -> NoReturn:
    """The one way a test skips: for want of something, saying how to get it.
    In CI (LAUNCHER_TEST_STRICT=1) that is a failure instead."""
    if STRICT:
        pytest.fail(f"{reason} (LAUNCHER_TEST_STRICT is set: CI must have it)")
    pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Under strict, a skip that did not come through `missing` (a marker, a
    plugin, a stray pytest.skip) fails too: CI must not pass by skipping."""
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under LAUNCHER_TEST_STRICT=1: {report.longrepr}"


def foreign_python(name: str) -> str:
    """Path of a foreign interpreter, or skip saying how to get it."""
    if name == "pypy":
        found = shutil.which("pypy3")
        if not found:
            missing("PyPy is not installed: apt-get install pypy3 (.ci/run installs it)")
        return str(found)
    path = FOREIGN[name]
    if not path.exists():
        missing(f"{path} is missing: run 'make pythons' to unpack ../shared/pythons")
    return str(path)


@pytest.fixture(scope="session")
def py311(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A bare 3.11 venv: the machine's own interpreter without its site-packages
    (which already hold markupsafe and would hide the runtime tree)."""
    d = tmp_path_factory.mktemp("venv311")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(d)], check=True)
    return str(d / "bin" / "python")


@pytest.fixture(scope="session")
def py313() -> str:
    return foreign_python("3.13")


@pytest.fixture(scope="session")
def py313t() -> str:
    return foreign_python("3.13t")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    d = tmp_path / "cache"
    return d


@pytest.fixture
def env(cache_dir: Path) -> dict[str, str]:
    return base_env(cache_dir)


def base_env(cache_dir: Path) -> dict[str, str]:
    """The caller's environment for a launcher run: isolated cache, none of ours."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("LAUNCHER_") and k not in ("PYTHONPATH", "LD_PRELOAD", "PYTHON_EXEC")}
    e["LAUNCHER_CACHE_DIR"] = str(cache_dir)
    e["PATH"] = f"{LAUNCHER.parent}{os.pathsep}{e.get('PATH', '')}"
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    e["UV_HTTP_RETRIES"] = "0"  # an unreachable index (UNREACHABLE) fails at once
    return e


def offline_with(*reqs: str) -> list[str]:
    """`--with R ... --find-links WHEELHOUSE --offline`."""
    out: list[str] = []
    for r in reqs:
        out += ["--with", r]
    return out + ["--find-links", str(WHEELHOUSE), "--offline"]


# Nothing listens on the discard port: an index there is an infrastructure
# failure (uv exits 2), which never stops the workload.
UNREACHABLE = "http://127.0.0.1:9/simple"


def unreachable_with(*reqs: str) -> list[str]:
    """`--with R ... --index-url UNREACHABLE`: a runtime that cannot be built,
    though nothing is wrong with the requirements."""
    out: list[str] = []
    for r in reqs:
        out += ["--with", r]
    return out + ["--index-url", UNREACHABLE]


def launcher(*args: str, env: dict[str, str], check: bool = False, timeout: float = 300,
             **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(LAUNCHER), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise AssertionError(f"launcher {' '.join(args)} -> {proc.returncode}\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def preload_lib(name: str, how: str) -> str:
    """The path of an installed preload library, or `missing` (how to install it)."""
    from launcher import preload
    from launcher.errors import UsageError

    try:
        return preload.resolve_one(name).path
    except UsageError:
        missing(f"{name} is not installed: {how} (.ci/run installs it)")


@pytest.fixture(scope="session")
def jemalloc() -> str:
    return preload_lib("jemalloc", "apt-get install libjemalloc2")


def gone(pid: int) -> bool:
    """Dead (a zombie waiting for init to reap it counts as dead)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
