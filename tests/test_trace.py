"""Preloads and runtime trees leave no trace (issue 11).

sys.executable is what a bare run gives, so what tools persist from it --
console-script shebangs, pyvenv.cfg -- never names a launcher path; installers
run inside a job manage the user's environment, not the runtime tree; a
PYTHON_EXEC the user set keeps naming their interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import WHEELHOUSE, base_env, foreign_python, launcher, missing, offline_with
from launcher import execute, preload
from launcher.errors import UsageError
from launcher.gate import sitecustomize as gate
from support import make_wheel

SELF = ("import json, os, sys\n"
        "print(json.dumps([sys.executable, getattr(sys, '_base_executable', None), sys.prefix,"
        " sys.exec_prefix, sys.base_prefix, sys.argv]))")


@pytest.mark.parametrize("which", ["py311", "py313t"])
@pytest.mark.parametrize("how", ["path", "name"])
def test_sys_executable_and_what_derives_from_it_are_the_bare_runs(
        which: str, how: str, request: pytest.FixtureRequest, env: dict[str, str], jemalloc: str) -> None:
    python = request.getfixturevalue(which)
    argv0 = python if how == "path" else os.path.basename(python)
    env["PATH"] = f"{os.path.dirname(python)}{os.pathsep}{env['PATH']}"
    bare = subprocess.run([argv0, "-c", SELF], env=env, capture_output=True, text=True, check=True)
    proc = launcher("run", "--preload", "jemalloc", "--", argv0, "-c", SELF, env=env, check=True)
    assert json.loads(proc.stdout) == json.loads(bare.stdout)
    assert "/shims/" not in proc.stdout


# --- a venv made inside a job, pip and console scripts --------------------------------

def _no_cache_path(root: Path, cache: Path) -> list[str]:
    """Files under `root` that name the cache (or any shim of ours)."""
    bad = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if str(cache).encode() in data or b"/shims/" in data:
                bad.append(str(path))
    return bad


@pytest.fixture(scope="module")
def job_venv(py311: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """`python -m venv` (with pip, through ensurepip) run inside a --preload job."""
    try:
        preload.resolve_one("jemalloc")
    except UsageError:
        missing("jemalloc is not installed: apt-get install libjemalloc2 (.ci/run installs it)")
    root = tmp_path_factory.mktemp("jobvenv")
    env = base_env(root / "cache")
    venv = root / "venv"
    launcher("run", "--preload", "jemalloc", "--", py311, "-m", "venv", str(venv), env=env, check=True,
             timeout=600)
    return venv, env


def test_venv_made_in_a_job_names_no_launcher_path(job_venv: tuple[Path, dict[str, str]]) -> None:
    venv, env = job_venv
    cache = Path(env["LAUNCHER_CACHE_DIR"])
    assert (venv / "pyvenv.cfg").is_file() and (venv / "bin" / "pip").is_file()
    assert _no_cache_path(venv, cache) == []
    # pip (installed by ensurepip, in the job) wrote the venv's own interpreter.
    shebang = (venv / "bin" / "pip").read_text().splitlines()[0]
    assert shebang.startswith(f"#!{venv}/bin/python") and os.path.isfile(shebang[2:]), shebang


HELLO = r'''
import json, os, subprocess, sys

def main():
    sh = subprocess.run(["sh", "-c", "cat /proc/self/maps"], capture_output=True, text=True).stdout
    with open("/proc/self/maps") as f:
        mine = f.read()
    print(json.dumps({"executable": sys.executable, "jemalloc": "/libjemalloc" in mine,
                      "sh_jemalloc": "/libjemalloc" in sh}))
'''


def test_pip_console_script_names_the_venv_and_runs_after_cache_clear(
        job_venv: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    venv, env = job_venv
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "trace_hello", {"trace_hello/__init__.py": HELLO},
               "[console_scripts]\ntrace-hello = trace_hello:main\n")  # pip installs it like any other
    launcher("run", "--preload", "jemalloc", "--", str(venv / "bin" / "pip"), "install", "--no-index",
             "--find-links", str(wheels), "trace_hello", env=env, check=True, timeout=300)
    script = venv / "bin" / "trace-hello"
    # What pip writes in a bare run: the interpreter pip itself runs on (the venv's).
    exe = (venv / "bin" / "pip").read_text().splitlines()[0][2:]
    assert exe.startswith(f"{venv}/bin/python")
    assert script.read_text().splitlines()[0] == f"#!{exe}"

    # In a job: preloaded (it re-execs through the shim), its shell children are not.
    got = json.loads(launcher("run", "--preload", "jemalloc", "--", str(script), env=env, check=True).stdout)
    assert got == {"executable": exe, "jemalloc": True, "sh_jemalloc": False}

    launcher("cache", "clear", env=env, check=True)
    # `cache clear` keeps shims (a running job may use them): remove them too,
    # as an age-based cleaner would -- nothing installed may depend on them.
    shutil.rmtree(Path(env["LAUNCHER_CACHE_DIR"]) / "shims")
    plain = {k: v for k, v in env.items() if k != "LAUNCHER_CACHE_DIR"}
    proc = subprocess.run([str(script)], env=plain, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"executable": exe, "jemalloc": False, "sh_jemalloc": False}


def test_pip_in_a_with_job_sees_and_installs_into_the_venv_only(
        job_venv: tuple[Path, dict[str, str]]) -> None:
    venv, env = job_venv
    python = str(venv / "bin" / "python")
    job = ("run", *offline_with("markupsafe"), "--preload", "jemalloc", "--")
    # The job does give the venv's python markupsafe, from the runtime tree ...
    where = launcher(*job, python, "-c", "import markupsafe; print(markupsafe.__file__)", env=env, check=True)
    assert "/trees/cp311-" in where.stdout
    # ... but pip, however started, sees only the venv.
    listed = launcher(*job, python, "-m", "pip", "list", "--format", "json", env=env, check=True)
    assert "markupsafe" not in {d["name"].lower() for d in json.loads(listed.stdout)}
    frozen = launcher(*job, str(venv / "bin" / "pip"), "freeze", "--all", env=env, check=True)
    assert "markupsafe" not in frozen.stdout.lower() and "pip==" in frozen.stdout
    proc = launcher(*job, python, "-m", "pip", "install", "--no-index", "--find-links", str(WHEELHOUSE),
                    "markupsafe", env=env, check=True, timeout=300)
    assert "Successfully installed" in proc.stdout, proc.stdout
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert list(site.glob("markupsafe/_speedups.cpython-311-*.so")), "markupsafe is not in the venv"
    assert list(site.glob("[Mm]arkup[Ss]afe-*.dist-info"))


@pytest.mark.parametrize(("argv", "flags", "module"), [
    (["python", "-m", "pip", "install", "x"], "", "pip"),
    (["python", "-mpip"], "", "pip"),
    (["python", "-s", "-E", "-m", "venv", "v"], "sE", "venv"),
    (["python", "-sm", "ensurepip"], "s", "ensurepip"),
    (["python", "-W", "ignore", "-X", "utf8", "-m", "pip.__main__"], "", "pip.__main__"),
    (["python", "-WIgnore", "-Xdev", "-I", "-m", "virtualenv"], "I", "virtualenv"),
    (["python", "--check-hash-based-pycs", "always", "-Bm", "pip"], "B", "pip"),
    (["python", "-Ic", "-m pip"], "I", ""),
    (["python", "script.py", "-I", "-m", "pip"], "", ""),
    (["python", "-"], "", ""),
])
def test_interpreter_flags_and_the_dash_m_module_are_read_like_python_does(
        argv: list[str], flags: str, module: str) -> None:
    assert gate._flags(argv) == (flags, module)


@pytest.mark.parametrize(("argv", "installer"), [
    (["/venv/bin/pip", "install", "x"], True),
    (["/venv/bin/pip3.13", "list"], True),
    (["/venv/bin/pip-sync", "requirements.txt"], True),
    (["/usr/bin/virtualenv", "env"], True),
    (["/home/me/pipeline.py"], False),
    (["/venv/bin/pipenv", "install"], False),  # it runs `python -m pip`, which is recognised
    (["train.py"], False),
    (["-c"], False),
    ([], False),
])
def test_installer_console_scripts_are_recognised(argv: list[str], installer: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", argv)
    assert gate._installer() is installer


# --- PYTHON_EXEC ---------------------------------------------------------------------

SHOW_EXEC = "import os; print(os.environ.get('PYTHON_EXEC', '<unset>'))"
MAPS = ("import json, os, sys; m = open('/proc/self/maps').read(); "
        "print(json.dumps({'executable': sys.executable, 'jemalloc': '/libjemalloc' in m, "
        "'reexec': os.environ.get('LAUNCHER_REEXEC_PID') == str(os.getpid())}))")
CHILD_FACTS = ("import json, os, subprocess, sys; m = open('/proc/self/maps').read(); "
               f"c = subprocess.run([sys.executable, '-c', {MAPS!r}], capture_output=True, text=True).stdout; "
               "print(json.dumps({'executable': sys.executable, 'jemalloc': '/libjemalloc' in m, "
               "'reexec': os.environ.get('LAUNCHER_REEXEC_PID') == str(os.getpid()), 'child': json.loads(c)}))")


def test_users_python_exec_survives_descendants_and_a_nested_launch(
        py311: str, py313t: str, env: dict[str, str], jemalloc: str, tmp_path: Path) -> None:
    env["PYTHON_EXEC"] = py313t
    # A Python child of a Python child: both keep the user's interpreter behind the shim.
    code = ("import os, subprocess, sys; print(os.environ['PYTHON_EXEC']); sys.stdout.flush(); "
            f"subprocess.run([sys.executable, '-c', {SHOW_EXEC!r}])")
    shims = launcher("run", "--preload", "jemalloc", "--", py311, "-c", code, env=env, check=True).stdout.split()
    assert len(shims) == 2 and shims[0] == shims[1]
    assert f"exec '{py313t}' " in Path(shims[0]).read_text()
    # A nested launch without preloads hands the user's own value on, unchanged.
    nested = launcher("run", "--preload", "jemalloc", "--", "launcher", "run", "--", py311, "-c", SHOW_EXEC,
                      env=env, check=True)
    assert nested.stdout.strip() == py313t
    # Unit of the same rule: the outer shim is dropped, the user's value restored.
    outer = dict(env, LAUNCHER_BOOTSTRAP="/c/bootstrap/x", PYTHON_EXEC=shims[0],
                 LAUNCHER_USER_PYTHON_EXEC=py313t)
    assert execute.child_env(outer, {"LAUNCHER_BOOTSTRAP": "/c/bootstrap/y"})["PYTHON_EXEC"] == py313t
    del outer["LAUNCHER_USER_PYTHON_EXEC"]
    assert "PYTHON_EXEC" not in execute.child_env(outer, {"LAUNCHER_BOOTSTRAP": "/c/bootstrap/y"})


def test_a_python_exec_by_name_is_shimmed_as_the_path_its_workers_will_have(
        py311: str, py313t: str, env: dict[str, str], jemalloc: str) -> None:
    env["PYTHON_EXEC"] = os.path.basename(py313t)
    env["PATH"] = f"{os.path.dirname(py313t)}{os.pathsep}{env['PATH']}"
    code = ("import os, subprocess, sys; print(os.environ['PYTHON_EXEC']); sys.stdout.flush(); "
            f"subprocess.run([os.environ['PYTHON_EXEC'], '-c', {CHILD_FACTS!r}])")
    out = launcher("run", "--preload", "jemalloc", "--", py311, "-c", code, env=env, check=True).stdout
    shim, facts = out.splitlines()
    assert f"exec '{py313t}' " in Path(shim).read_text()
    worker = json.loads(facts)
    assert worker["executable"] == py313t and worker["jemalloc"] and not worker["reexec"]
    # The worker's own sys.executable children start through its shim too.
    assert worker["child"]["jemalloc"] and not worker["child"]["reexec"]


def test_a_python_exec_the_user_unsets_in_a_child_is_not_brought_back(
        py311: str, py313t: str, env: dict[str, str], jemalloc: str) -> None:
    env["PYTHON_EXEC"] = py313t
    code = ("import os, subprocess, sys; env = dict(os.environ); del env['PYTHON_EXEC']; "
            f"subprocess.run([sys.executable, '-c', {SHOW_EXEC!r}], env=env)")
    shim = launcher("run", "--preload", "jemalloc", "--", py311, "-c", code, env=env, check=True).stdout.strip()
    # Its own interpreter's shim, as torchrun would default to sys.executable.
    assert f"exec '{py311}' " in Path(shim).read_text()


def test_doctor_reports_the_users_python_exec(py313t: str, env: dict[str, str]) -> None:
    env["PYTHON_EXEC"] = py313t
    report = json.loads(launcher("doctor", "--json", env=env).stdout)
    found = [f for g in report["groups"] for f in g["findings"] if "PYTHON_EXEC" in f.get("facts", {})]
    assert len(found) == 1 and found[0]["status"] == "ok", found
    assert found[0]["facts"]["abi_key"].startswith("cp313t-")
    assert found[0]["facts"]["interpreter"] == py313t
    assert "free-threaded" in found[0]["message"]
    env["PYTHON_EXEC"] = "/nonexistent/python3"
    report = json.loads(launcher("doctor", "--json", env=env).stdout)
    found = [f for g in report["groups"] for f in g["findings"] if "PYTHON_EXEC" in f.get("facts", {})]
    assert len(found) == 1 and found[0]["status"] == "warn" and "names no existing interpreter" in found[0]["message"]


def test_uv_pip_in_a_with_job_installs_into_the_venv(py311: str, env: dict[str, str], tmp_path: Path) -> None:
    # uv queries an interpreter with `python -I`: no gate, so no tree, there.
    from launcher.uvbin import find_uv

    venv = tmp_path / "venv"
    subprocess.run([py311, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    job = ("run", *offline_with("markupsafe"), "--")
    where = launcher(*job, python, "-c", "import markupsafe; print(markupsafe.__file__)", env=env, check=True)
    assert "/trees/cp311-" in where.stdout
    uv = (find_uv(), "pip")
    listed = launcher(*job, *uv, "list", "--python", python, "--format", "json", env=env, check=True)
    assert "markupsafe" not in listed.stdout.lower()
    launcher(*job, *uv, "install", "--python", python, "--offline", "--no-index", "--find-links",
             str(WHEELHOUSE), "markupsafe", env=env, check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert list(site.glob("markupsafe/_speedups.cpython-311-*.so")), "markupsafe is not in the venv"
    shebangs = [p.read_text(errors="replace").splitlines()[0] for p in (venv / "bin").iterdir()
                if p.is_file() and p.read_bytes()[:2] == b"#!"]
    assert not [s for s in shebangs if env["LAUNCHER_CACHE_DIR"] in s or "/shims/" in s]


@pytest.mark.parametrize("which", ["py311", "pypy"])
def test_the_gates_preload_part_loads_only_when_needed_and_from_its_bytecode(
        which: str, request: pytest.FixtureRequest, env: dict[str, str], jemalloc: str) -> None:
    python = foreign_python("pypy") if which == "pypy" else request.getfixturevalue(which)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    show = "import sys; print(sorted(m for m in sys.modules if 'launcher' in m))"
    # Started through its shim and starting no child: the preload part is not even loaded.
    quiet = launcher("run", "--preload", "jemalloc", "--", python, "-c", show, env=env, check=True)
    boot = next((Path(env["LAUNCHER_CACHE_DIR"]) / "bootstrap").iterdir())
    assert quiet.stdout.strip() == "[]"
    # Its bytecode was written by the launcher for this interpreter, and is what importing subprocess loads.
    assert list((boot / "__pycache__").glob("_launcher_preloads.*.pyc"))
    verbose = launcher("run", "--preload", "jemalloc", "--", python, "-v", "-c", "import subprocess", env=env,
                       check=True).stderr
    assert f"matches {boot}/_launcher_preloads.py" in verbose


def test_a_broken_preload_part_never_breaks_the_users_imports(py311: str, env: dict[str, str], jemalloc: str) -> None:
    launcher("run", "--preload", "jemalloc", "--", py311, "-c", "pass", env=env, check=True)
    boot = next((Path(env["LAUNCHER_CACHE_DIR"]) / "bootstrap").iterdir())
    (boot / "_launcher_preloads.py").write_text("raise RuntimeError('broken')\n")
    code = ("import json, subprocess, sys; "
            "p = subprocess.run([sys.executable, '-c', 'print(7)'], capture_output=True, text=True); "
            "print(json.dumps([p.stdout, p.stderr]))")
    proc = launcher("run", "--preload", "jemalloc", "--", py311, "-c", code, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", "the top process must not complain: its import of subprocess just goes on"
    out, err = json.loads(proc.stdout)
    # The child (not started through a shim) needed it at start-up: one line, and it runs.
    assert out == "7\n"
    assert err.startswith("launcher: ") and err.count("\n") == 1 and "broken" in err


def test_a_broken_preload_part_still_leaves_the_runtime_tree(py311: str, env: dict[str, str],
                                                             jemalloc: str) -> None:
    # The child's gate needs the preload part at start-up and cannot load it:
    # it says so once, and the rest of the gate (the tree on sys.path) still runs.
    job = ("run", "--preload", "jemalloc", "--with", "six", "--find-links", str(WHEELHOUSE), "--offline", "--")
    launcher(*job, py311, "-c", "pass", env=env, check=True)
    boot = next((Path(env["LAUNCHER_CACHE_DIR"]) / "bootstrap").iterdir())
    (boot / "_launcher_preloads.py").write_text("raise RuntimeError('broken')\n")
    code = ("import json, subprocess, sys; "
            "p = subprocess.run([sys.executable, '-c', 'import six; print(six.__file__)'], "
            "capture_output=True, text=True); print(json.dumps([p.returncode, p.stdout, p.stderr]))")
    proc = launcher(*job, py311, "-c", code, env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    rc, out, err = json.loads(proc.stdout)
    assert rc == 0 and "/trees/cp311-" in out, (out, err)
    assert err.startswith("launcher: ") and err.count("\n") == 1 and "broken" in err


def test_a_removed_preload_part_is_put_back_by_the_next_launch(py311: str, env: dict[str, str], jemalloc: str) -> None:
    # Age-based cleaners delete old files one by one; the warm path watches this one too.
    code = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'pass'], check=True)"
    launcher("run", "--preload", "jemalloc", "--", py311, "-c", code, env=env, check=True)
    boot = next((Path(env["LAUNCHER_CACHE_DIR"]) / "bootstrap").iterdir())
    part = boot / "_launcher_preloads.py"
    want = part.read_bytes()
    part.unlink()
    proc = launcher("run", "--preload", "jemalloc", "--", py311, "-c", code, env=env, check=True)
    assert proc.stderr == "" and part.read_bytes() == want
