"""The Python API: the examples in docs/api.md run as written, `launcher run`
uses the same `prepare()`, and the API is typed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, WHEELHOUSE, installs, launcher, missing, offline_with

DOC = REPO / "docs" / "api.md"


def examples() -> list[str]:
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.S | re.M)
    assert blocks, f"{DOC} has no ```python example"
    return blocks


@pytest.fixture
def api_env(env: dict[str, str]) -> dict[str, str]:
    # How a user's CI would point the launcher at a wheelhouse: variables.
    env.update(LAUNCHER_FIND_LINKS=str(WHEELHOUSE), LAUNCHER_OFFLINE="1")
    return env


def run_example(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    script = cwd / "example.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"example failed:\n{code}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


def test_worker_example_runs(api_env: dict[str, str], cache_dir: Path, tmp_path: Path) -> None:
    probe = subprocess.run([sys.executable, "-c", "import six"], capture_output=True)
    assert probe.returncode != 0, "six must come from the runtime tree, not the test venv"
    proc = run_example(examples()[0], api_env, tmp_path)
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"cp311-x86_64-linux-gnu-glibc[\d.]+: runtime tree \S+ \(built\)", lines[0]), lines
    tree = lines[0].split("runtime tree ")[1].split(" (")[0]
    assert Path(tree).parent == cache_dir / "trees"
    assert lines[-1] == f"3 workers imported six from {tree}"
    assert [r["abi_key"].split("-")[0] for r in installs(cache_dir)] == ["cp311"]
    # Twice: the tree is now present and nothing is rebuilt.
    again = run_example(examples()[0], api_env, tmp_path)
    assert again.stdout.splitlines()[0].endswith("(present)")
    assert len(installs(cache_dir)) == 1


def test_error_example_runs(api_env: dict[str, str], tmp_path: Path) -> None:
    proc = run_example(examples()[1], api_env, tmp_path)
    lines = proc.stdout.splitlines()
    assert lines[0] == "exit 127: command not found: no-such-command-xyz"
    assert lines[1].startswith("exit 2: command line: with = ['six>>>1'] is invalid")


def executor_example() -> str:
    (code,) = [b for b in examples() if "launcher.Executor(" in b]
    return code


@pytest.mark.parametrize("which", ["same", "py313t"])
def test_executor_example_runs(which: str, api_env: dict[str, str], cache_dir: Path, tmp_path: Path,
                               request: pytest.FixtureRequest) -> None:
    """The same example on the driver's own Python and on a free-threaded 3.13t."""
    if which != "same":
        api_env["WORKER_PYTHON"] = request.getfixturevalue(which)
    proc = run_example(executor_example(), api_env, tmp_path)
    lines = proc.stdout.splitlines()
    version = f"{sys.version_info[0]}.{sys.version_info[1]}" if which == "same" else "3.13"
    assert lines[0].startswith(f"python {version}."), lines
    pid, abi, tree = re.fullmatch(r"pid (\d+) abi (\S+) tree (\S+)", lines[1]).groups()  # type: ignore[union-attr]
    assert abi.startswith("cp311-" if which == "same" else "cp313t-"), abi
    assert Path(tree).parent == cache_dir / "trees" and Path(tree).name.startswith(abi)
    assert lines[2:5] == ["six 1.17.0", "map [1024, 9]", "error ValueError RemoteTraceback"]
    assert lines[5] == ("lambda 42" if which == "same" else "lambda refused: move it into a module")
    assert lines[6:] == ["rank 0 succeeded 'hello from a replica'",
                         "rank 1 succeeded 'hello from a replica'"]


def test_run_is_prepare(env: dict[str, str], cache_dir: Path, py313: str, tmp_path: Path) -> None:
    """What `launcher run` execs equals what the API returns for the same input."""
    show = "import json, os, sys; print(json.dumps({'argv': sys.orig_argv, 'env': dict(os.environ)}))"
    ran = json.loads(launcher("run", *offline_with("six"), "--", py313, "-c", show, env=env,
                              cwd=tmp_path, check=True).stdout)
    code = (
        "import json, sys, launcher\n"
        f"p = launcher.prepare([{py313!r}, '-c', {show!r}], flags={{'with': ['six'], "
        f"'find-links': [{str(WHEELHOUSE)!r}], 'offline': True}})\n"
        "print(json.dumps({'argv': p.argv, 'env': p.env}))\n"
    )
    api = json.loads(run_example(code, env, tmp_path).stdout)
    assert api["argv"] == ran["argv"]
    for key in ("PYTHONPATH", "LAUNCHER_BOOTSTRAP", "LAUNCHER_CACHE_DIR", "LAUNCHER_SPEC",
                "LAUNCHER_SELF_PYTHON", "LAUNCHER_FAILURE_TTL"):
        assert api["env"][key] == ran["env"][key], key
    assert set(k for k in api["env"] if k.startswith("LAUNCHER_")) == \
        set(k for k in ran["env"] if k.startswith("LAUNCHER_"))
    assert len(installs(cache_dir)) == 1  # the API found the tree `run` built


def test_api_is_typed(tmp_path: Path) -> None:
    mypy = Path(sys.executable).parent / "mypy"
    if not mypy.exists():
        missing("mypy is not installed: make setup installs the dev extras")
    (tmp_path / "use.py").write_text(
        "import launcher\n"
        "p = launcher.prepare(['true'], flags={'with': ['six']})\n"
        "reveal_type(p)\n"
        "reveal_type(p.env)\n"
        "n: int = p.argv\n"
    )
    proc = subprocess.run([str(mypy), "--cache-dir", str(tmp_path / ".mypy"), "--no-error-summary",
                           "use.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert 'Revealed type is "launcher.plan.Prepared"' in out, out
    assert 'Revealed type is "builtins.dict[builtins.str, builtins.str]"' in out \
        or 'Revealed type is "dict[str, str]"' in out, out
    assert 'has type "list[str]", variable has type "int"' in out, out
