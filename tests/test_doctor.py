"""`launcher doctor` (issue 4): every "Done when" bullet, against real
interpreters, real wheels unpacked into real venvs, real uv builds and the
real dynamic loader.  Each doctor run is a subprocess of the installed
`launcher` command, so the CLI wiring and the exit status are tested too."""

from __future__ import annotations

import json
import os
import pty
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import (
    LAUNCHER,
    WHEELHOUSE,
    installs,
    launcher,
    missing,
    offline_with,
    unreachable_with,
)
from launcher import preload
from launcher.doctor.models import Finding, Report, report_schema
from launcher.errors import UsageError
from support import REPO, read_pty

MARKUPSAFE_311 = "markupsafe-3.0.3-cp311-cp311-*.whl"
PSUTIL_ABI3 = "psutil-7.2.2-cp36-abi3-*.whl"
SPEEDUPS_311 = "markupsafe/_speedups.cpython-311-x86_64-linux-gnu.so"


def _wheel(pattern: str) -> Path:
    found = sorted(WHEELHOUSE.glob(pattern))
    if not found:
        missing(f"{pattern} is not in {WHEELHOUSE}: restore ../shared/wheelhouse")
    return found[0]


def _unpack(pattern: str, dest: Path) -> Path:
    """A wheel's files copied in place, as a foreign installer would have left them."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(_wheel(pattern)) as z:
        z.extractall(dest)
    return dest


def _venv(base: str, where: Path) -> Path:
    subprocess.run([base, "-m", "venv", "--without-pip", str(where)], check=True)
    return next((where / "lib").glob("python3*/site-packages"))


def _env(cache: Path, **extra: str) -> dict[str, str]:
    """Like conftest's `env` fixture, for module-scoped runs (own cache, none of ours)."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("LAUNCHER_") and k not in ("PYTHONPATH", "LD_PRELOAD", "PYTHON_EXEC")}
    e["LAUNCHER_CACHE_DIR"] = str(cache)
    e["PATH"] = f"{LAUNCHER.parent}{os.pathsep}{e.get('PATH', '')}"
    e.pop("NO_COLOR", None)
    e.update(extra)
    return e


def doctor(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return launcher("doctor", *args, env=env, cwd=cwd, timeout=120)


def doctor_json(*args: str, env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], Report]:
    proc = doctor("--json", *args, env=env, cwd=cwd)
    assert proc.returncode in (0, 1), proc.stderr
    report = Report.model_validate_json(proc.stdout)  # the shipped model is the contract
    assert report.exit_code == proc.returncode
    return proc, report


def _fails(report: Report) -> list[Finding]:
    return [f for f in report.findings() if f.status == "fail"]


def _group(report: Report, path: str):
    return next(g for g in report.groups if g.interpreter and g.interpreter.path == path)


# ----------------------------------------------------- ABI mismatch in a venv


@pytest.fixture(scope="module")
def broken313(tmp_path_factory: pytest.TempPathFactory, py313: str) -> Path:
    """A 3.13 venv into which a cp311 markupsafe wheel's files were copied, with
    a sitecustomize of its own."""
    root = tmp_path_factory.mktemp("broken313")
    site = _venv(py313, root / "venv")
    _unpack(MARKUPSAFE_311, site)
    (site / "sitecustomize.py").write_text("import os\nos.environ['VENV_SITECUSTOMIZE_RAN'] = '1'\n")
    return root / "venv"


@pytest.fixture(scope="module")
def broken313_runs(broken313: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("broken313-doctor")
    env = _env(work / "cache")
    text = doctor("--python", str(broken313 / "bin" / "python"), env=env, cwd=work)
    proc, report = doctor_json("--python", str(broken313), env=env, cwd=work)  # a venv dir works too
    return text, report


def test_foreign_abi_in_venv_fails_naming_package_file_abi_and_fix(broken313_runs) -> None:
    text, _ = broken313_runs
    assert text.returncode == 1, text.stdout + text.stderr
    out = text.stdout
    line = next(ln for ln in out.splitlines() if "FAIL" in ln and "markupsafe" in ln)
    assert "markupsafe 3.0.3" in line and SPEEDUPS_311 in line
    assert "built for cp311" in line and "this interpreter is cp313" in line
    fix = out.splitlines()[out.splitlines().index(line) + 1]
    assert fix.strip().startswith("fix:") and "reinstall markupsafe==3.0.3" in fix.replace("--", "")
    assert "problems found" in out.splitlines()[0]


def test_foreign_abi_json_carries_the_same_facts(broken313_runs, broken313: Path) -> None:
    _, report = broken313_runs
    assert report.status == "fail" and report.exit_code == 1
    group = _group(report, str(broken313 / "bin" / "python"))
    assert group.status == "fail"
    assert group.interpreter.abi_key.startswith("cp313-") and group.interpreter.is_venv
    assert group.interpreter.origin == "--python"
    assert group.interpreter.site_packages == [str(next((broken313 / "lib").glob("python3.13/site-packages")))]
    [bad] = [f for f in group.findings if f.status == "fail"]
    assert bad.check == "environment"
    assert bad.facts["distribution"] == "markupsafe" and bad.facts["version"] == "3.0.3"
    assert bad.facts["files"] == [SPEEDUPS_311]
    assert bad.facts["built_for"] == "cp311" and bad.facts["interpreter_abi"] == "cp313"
    assert bad.facts["location"] == group.interpreter.site_packages[0]
    assert bad.fix and "markupsafe==3.0.3" in bad.fix and str(broken313 / "bin" / "python") in bad.fix
    # Everything else about this interpreter is fine: one failure, not noise.
    assert len(_fails(report)) == 1


def test_venv_sitecustomize_is_reported_as_chained(broken313_runs, broken313: Path) -> None:
    text, report = broken313_runs
    own = str(next((broken313 / "lib").glob("python3.13/site-packages")) / "sitecustomize.py")
    group = _group(report, str(broken313 / "bin" / "python"))
    [start] = [f for f in group.findings if f.check == "startup"]
    assert start.status == "ok" and start.facts == {"sitecustomize": own, "chained": True}
    assert "will be chained" in start.message
    assert any(own in ln and "will be chained" in ln for ln in text.stdout.splitlines())


def test_pythonpath_holding_another_interpreters_site_packages(broken313: Path, py311: str,
                                                               tmp_path: Path) -> None:
    site = str(next((broken313 / "lib").glob("python3.13/site-packages")))
    env = _env(tmp_path / "cache", PYTHONPATH=os.pathsep.join([str(tmp_path / "nope"), site]))
    proc, report = doctor_json("--python", py311, env=env, cwd=tmp_path)
    entries = {f.facts.get("entry"): f for f in report.findings("startup") if f.status == "warn"}
    assert "does not exist" in entries[str(tmp_path / "nope")].message
    other = entries[site]
    assert "site-packages of python3.13" in other.message and other.fix and "PYTHONPATH" in other.fix
    # Its cp311 markupsafe happens to suit this cp311 interpreter: warned, not failed.
    assert not _fails(report) and proc.returncode == 0
    # The first sitecustomize on PYTHONPATH is the one the gate will chain.
    [chained] = [f for f in report.findings("startup") if f.facts.get("chained")]
    assert chained.facts["sitecustomize"] == os.path.join(site, "sitecustomize.py")


def test_abi3_under_free_threaded_is_flagged(py313t: str, py313: str, tmp_path: Path) -> None:
    pkgs = _unpack(PSUTIL_ABI3, tmp_path / "pkgs")
    env = _env(tmp_path / "cache", PYTHONPATH=str(pkgs))
    proc, report = doctor_json("--python", py313t, "--python", py313, env=env, cwd=tmp_path)
    assert proc.returncode == 1
    ft = _group(report, py313t)
    [bad] = [f for f in ft.findings if f.status == "fail"]
    assert bad.facts["distribution"] == "psutil" and bad.facts["version"] == "7.2.2"
    assert bad.facts["built_for"] == "abi3" and bad.facts["free_threaded"] is True
    assert "abi3" in bad.message and "free-threaded cp313t" in bad.message and bad.fix
    # The same abi3 files are fine for the GIL build: only the free-threaded one is flagged.
    gil = _group(report, py313)
    assert gil.status == "ok"
    [scan] = [f for f in gil.findings if f.check == "environment"]
    assert scan.facts["extensions"] >= 1


# ---------------------------------------------------- the command's interpreters


def test_shebang_script_names_its_interpreter(py311: str, tmp_path: Path) -> None:
    torchrun = tmp_path / "bin" / "torchrun"
    torchrun.parent.mkdir()
    torchrun.write_text(f"#!{py311}\nimport sys\nsys.exit(0)\n")
    torchrun.chmod(0o755)
    proc, report = doctor_json("--", str(torchrun), "--nproc-per-node", "2", "train.py",
                               env=_env(tmp_path / "cache"), cwd=tmp_path)
    assert report.command is not None
    assert report.command.kind == "script" and report.command.interpreter == py311
    group = _group(report, py311)
    assert group.interpreter.origin == f"shebang of {torchrun}"
    assert group.interpreter.abi_key.startswith("cp311-")
    assert proc.returncode == 0, proc.stdout


def test_isolated_python_warns_that_the_gate_will_not_run(py311: str, tmp_path: Path) -> None:
    env = _env(tmp_path / "cache")
    proc, report = doctor_json("--", "python", "-I", "x.py", env=env, cwd=tmp_path)  # found on PATH
    [bypass] = [f for f in report.findings() if f.facts.get("flags")]
    assert bypass.status == "warn" and bypass.facts["flags"] == ["-I"]
    assert report.command is not None and report.command.kind == "python"
    assert bypass.facts["interpreter"] == report.command.interpreter == str(LAUNCHER.parent / "python")
    assert "gate will not run" in bypass.message and bypass.fix and "-I" in bypass.fix
    assert proc.returncode == 0  # a warning, not a failure
    text = doctor("--", py311, "-S", "x.py", env=env, cwd=tmp_path)
    assert any(ln.startswith("  warn") and "-S" in ln and "gate will not run" in ln
               for ln in text.stdout.splitlines()), text.stdout


def test_uv_run_reports_the_project_interpreter(py313: str, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\nrequires-python = ">=3.11"\n')
    _venv(py313, project / ".venv")
    _, report = doctor_json("--", "uv", "run", "python", "-E", "train.py",
                            env=_env(tmp_path / "cache"), cwd=project)
    venv_python = str(project / ".venv" / "bin" / "python")
    assert report.command is not None and report.command.kind == "uv"
    assert report.command.interpreter == venv_python
    assert _group(report, venv_python).interpreter.abi_key.startswith("cp313-")
    assert any(f.facts.get("flags") == ["-E"] for f in report.findings("startup"))


def test_shell_script_is_said_to_be_opaque(tmp_path: Path) -> None:
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/bash\npython train.py\n")
    script.chmod(0o755)
    proc, report = doctor_json("--", str(script), env=_env(tmp_path / "cache"), cwd=tmp_path)
    [cmd] = report.findings("command")
    assert cmd.status == "warn" and "cannot see" in cmd.message and "in-process" in cmd.message
    assert not [g for g in report.groups if g.kind == "interpreter"]
    missing = doctor("--", "no-such-command-xyz", env=_env(tmp_path / "cache"), cwd=tmp_path)
    assert missing.returncode == 1 and "command not found: no-such-command-xyz" in missing.stdout


# ------------------------------------------------------------------- preloads


def _need(name: str, how: str) -> str:
    try:
        return preload.resolve_one(name).path
    except UsageError:
        missing(f"{name} is not installed: {how} (CI installs it)")


def _preload_findings(report: Report) -> list[Finding]:
    return report.findings("preload")


def test_preload_missing_library_is_one_failure_with_a_fix(tmp_path: Path) -> None:
    proc, report = doctor_json("--preload", "libdoesnotexist.so.7", env=_env(tmp_path / "cache"), cwd=tmp_path)
    [bad] = _fails(report)
    assert proc.returncode == 1 and bad.check == "preload"
    assert "libdoesnotexist.so.7" in bad.message and "not found" in bad.message and bad.fix


def test_preload_for_the_wrong_machine_is_one_failure_with_a_fix(tmp_path: Path) -> None:
    host = os.uname().machine
    other = 62 if host == "aarch64" else 183  # x86_64 / aarch64
    fake = tmp_path / "libfake.so"
    fake.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HH", 3, other) + bytes(44))
    proc, report = doctor_json("--preload", str(fake), env=_env(tmp_path / "cache"), cwd=tmp_path)
    [bad] = _fails(report)
    assert proc.returncode == 1 and bad.check == "preload"
    assert preload.EM_NAMES[other] in bad.message and str(fake) in bad.message
    assert bad.fix and host in bad.fix


def test_asan_not_first_is_one_failure_with_a_fix(py311: str, tmp_path: Path) -> None:
    _need("asan", "apt-get install libasan8")
    _need("jemalloc", "apt-get install libjemalloc2")
    # The user's own LD_PRELOAD, set by an env prefix of the command.
    proc, report = doctor_json("--", "env", "LD_PRELOAD=libjemalloc.so.2:libasan.so.8", py311, "-c", "pass",
                               env=_env(tmp_path / "cache"), cwd=tmp_path)
    [bad] = _fails(report)
    assert bad.check == "preload" and "ASan runtime libasan.so.8 comes after libjemalloc.so.2" in bad.message
    assert bad.fix == "put it first: LD_PRELOAD=libasan.so.8:libjemalloc.so.2"
    assert report.command is not None and report.command.env_assignments["LD_PRELOAD"]
    # The caller's LD_PRELOAD holds ASan and the launcher would put jemalloc before it.
    env = _env(tmp_path / "cache", LD_PRELOAD="libasan.so.8", ASAN_OPTIONS="detect_leaks=0")
    _, report = doctor_json("--preload", "jemalloc", env=env, cwd=tmp_path)
    [bad] = _fails(report)
    assert "comes after libjemalloc.so.2" in bad.message and bad.fix and "--preload asan" in bad.fix


def test_two_allocators_are_flagged(tmp_path: Path) -> None:
    _need("jemalloc", "apt-get install libjemalloc2")
    _need("tcmalloc", "apt-get install libtcmalloc-minimal4")
    _, report = doctor_json("--preload", "jemalloc", "--preload", "tcmalloc", env=_env(tmp_path / "cache"),
                            cwd=tmp_path)
    [bad] = _fails(report)
    assert "two allocators" in bad.message and "jemalloc and tcmalloc" in bad.message and bad.fix


def test_good_jemalloc_preload_is_ok(tmp_path: Path) -> None:
    path = _need("jemalloc", "apt-get install libjemalloc2")
    proc, report = doctor_json("--preload", "jemalloc", env=_env(tmp_path / "cache"), cwd=tmp_path)
    assert proc.returncode == 0 and report.status == "ok", proc.stdout
    found = _preload_findings(report)
    assert [f.facts["resolved"] for f in found if "resolved" in f.facts] == [path]
    assert any("ld.so --list --preload" in f.message and f.status == "ok" for f in found)


# ------------------------------------------------------- the cache and the installer


def test_cache_writable_by_others_fails(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o777)
    proc, report = doctor_json(env=_env(cache), cwd=tmp_path)
    [bad] = _fails(report)
    assert proc.returncode == 1 and bad.check == "cache" and "writable by group or others" in bad.message
    assert bad.fix == f"chmod 700 {cache}, or set LAUNCHER_CACHE_DIR to a directory only you can write"
    cache.chmod(0o1777)  # a sticky shared dir is no cache root: others could create its areas first
    proc, report = doctor_json(env=_env(cache), cwd=tmp_path)
    [bad] = _fails(report)
    assert proc.returncode == 1 and "shared sticky directory" in bad.message and "mkdir -m 700" in str(bad.fix)
    cache.chmod(0o700)
    assert doctor_json(env=_env(cache), cwd=tmp_path)[1].status == "ok"


def test_missing_uv_fails(tmp_path: Path) -> None:
    env = _env(tmp_path / "cache", LAUNCHER_UV=str(tmp_path / "no" / "uv"))
    proc, report = doctor_json(env=env, cwd=tmp_path)
    [bad] = _fails(report)
    assert proc.returncode == 1 and bad.check == "installer"
    assert f"LAUNCHER_UV={tmp_path / 'no' / 'uv'}" in bad.message and bad.fix and "LAUNCHER_UV" in bad.fix


def test_remembered_failed_build_is_reported_with_its_error(py311: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = _env(cache)
    ran = launcher("run", *unreachable_with("doesnotexist-pkg"), "--", py311, "-c", "pass", env=env, cwd=tmp_path)
    assert ran.returncode == 0 and installs(cache, "failed"), ran.stderr
    # Plain `doctor`: the cache remembers it.
    proc, report = doctor_json(env=env, cwd=tmp_path)
    [bad] = _fails(report)
    assert proc.returncode == 1 and bad.check == "failure"
    assert "doesnotexist-pkg" in bad.message and bad.facts["requirements"] == ["doesnotexist-pkg"]
    assert bad.fix and "--refresh" in bad.fix and "Connection refused" in str(bad.facts["log"])
    # With the same options and interpreter: reported once, under the interpreter.
    _, report = doctor_json(*unreachable_with("doesnotexist-pkg"), "--python", py311, env=env, cwd=tmp_path)
    [bad] = _fails(report)
    assert bad.check == "failure" and _group(report, py311).status == "fail"
    text = doctor(env=env, cwd=tmp_path)
    assert "doesnotexist-pkg" in text.stdout and "fix:" in text.stdout and "| " in text.stdout


def test_locks_held_and_stale_temp_dirs(tmp_path: Path) -> None:
    from filelock import FileLock

    cache = tmp_path / "cache"
    for sub in ("trees", "locks"):
        (cache / sub).mkdir(parents=True, mode=0o700)
    cache.chmod(0o700)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = cache / "trees" / f".tmp-cp311-x86_64-linux-gnu-glibc2.36-0123456789ab-{dead.pid}-42"
    (stale / "pkg").mkdir(parents=True)
    (stale / "pkg" / "mod.py").write_text("x = 1\n" * 100)
    lock = cache / "locks" / "cp313-x86_64-linux-gnu-glibc2.36-0123456789ab.lock"
    with FileLock(str(lock)):
        lock.with_suffix(".pid").write_text(str(os.getpid()))
        proc, report = doctor_json(env=_env(cache), cwd=tmp_path)
    held = [f for f in report.findings("lock") if f.facts.get("pid") == os.getpid()]
    assert len(held) == 1 and held[0].status == "ok" and f"held by pid {os.getpid()}" in held[0].message
    [tmp] = [f for f in report.findings("temp") if f.status == "warn"]
    assert tmp.facts["path"] == str(stale) and tmp.facts["pid"] == dead.pid
    assert "killed install" in tmp.message and tmp.fix and str(stale) in tmp.fix
    # Released: a pid record left beside a free lock says the build was killed.
    lock.with_suffix(".pid").write_text(str(dead.pid))
    _, report = doctor_json(env=_env(cache), cwd=tmp_path)
    [killed] = [f for f in report.findings("lock") if f.status == "warn"]
    assert f"pid {dead.pid} was killed" in killed.message


# ----------------------------------------------------------------- healthy


@pytest.fixture(scope="module")
def healthy(py311: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    work = tmp_path_factory.mktemp("healthy")
    env = _env(work / "cache")
    launcher("run", *offline_with("six"), "--", py311, "-c", "import six", env=env, cwd=work, check=True)
    assert len(installs(work / "cache")) == 1
    return work, env


def test_healthy_setup_is_all_ok_and_exits_0(healthy: tuple[Path, dict[str, str]], py311: str) -> None:
    work, env = healthy
    args = (*offline_with("six"), "--", py311, "-c", "import six")
    proc, report = doctor_json(*args, env=env, cwd=work)
    not_ok = [(f.status, f.message) for f in report.findings() if f.status != "ok"]
    assert not not_ok and proc.returncode == 0 and report.status == "ok"
    [tree] = [f for f in report.findings("tree") if f.facts.get("state")]
    assert tree.facts["state"] == "present" and "six 1.17.0" in tree.message
    assert {g.kind for g in report.groups} >= {"launcher", "cache", "command", "environment", "interpreter"}
    text = doctor(*args, env=env, cwd=work)
    assert text.returncode == 0 and text.stdout.startswith("launcher doctor: all ok (0 fail, 0 warn")
    assert "\x1b[" not in text.stdout  # not a terminal: plain text
    assert installs(work / "cache") and len(installs(work / "cache", None)) == 1  # doctor built nothing


def _on_a_terminal(args: list[str], env: dict[str, str], cwd: Path) -> str:
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(LAUNCHER), "doctor", *args], env=env, cwd=cwd, stdout=slave,
                            stderr=subprocess.DEVNULL)
    os.close(slave)
    data = read_pty(master)
    proc.wait(timeout=120)
    os.close(master)
    return data.decode(errors="replace")


def test_rich_on_a_terminal_plain_with_no_color(healthy: tuple[Path, dict[str, str]]) -> None:
    work, env = healthy
    coloured = _on_a_terminal([], {**env, "TERM": "xterm-256color"}, work)
    assert "\x1b[" in coloured and "✔" in coloured
    plain = _on_a_terminal([], {**env, "TERM": "xterm-256color", "NO_COLOR": "1"}, work)
    assert "\x1b[" not in plain and "launcher doctor: all ok" in plain


# --------------------------------------------------------------- the schema


def test_json_schema_is_shipped_and_documented(tmp_path: Path) -> None:
    proc = doctor("--schema", env=_env(tmp_path / "cache"), cwd=tmp_path)
    assert proc.returncode == 0 and json.loads(proc.stdout) == report_schema()
    docs = (REPO / "docs" / "doctor.md").read_text()
    for name, model in report_schema()["$defs"].items():
        for field in model.get("properties", {}):
            assert f"`{field}`" in docs, f"docs/doctor.md does not document {name}.{field}"
    for field in report_schema()["properties"]:
        assert f"`{field}`" in docs, f"docs/doctor.md does not document Report.{field}"


def test_doctor_json_does_not_import_rich(tmp_path: Path) -> None:
    code = ("import sys\nfrom launcher.doctor.runner import diagnose\n"
            "diagnose([], {})\nassert 'rich' not in sys.modules, 'rich imported'\n")
    subprocess.run([sys.executable, "-c", code], env=_env(tmp_path / "cache"), cwd=tmp_path, check=True,
                   timeout=120)


@pytest.mark.parametrize(("argv", "wrapper"), [
    (["tox", "-e", "py311"], "tox"),
    (["uvx", "tox", "-e", "py311"], "tox"),
    (["sudo", "python3", "-c", "pass"], "sudo"),
    (["sudo", "-E", "python3", "-c", "pass"], None),
    (["systemd-run", "--user", "--wait", "python3", "-c", "pass"], "systemd-run"),
    (["python3", "-c", "pass"], None),
])
def test_doctor_names_environment_filtering_wrappers(argv: list[str], wrapper: str | None, tmp_path: Path) -> None:
    """Issue 20: a wrapper that starts its command with an environment of its
    own drops the gate silently; doctor says so, with the fix."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("tox", "uvx", "sudo", "systemd-run"):  # stand-ins: doctor only reads the command line
        (bindir / name).write_text("#!/bin/sh\nexit 0\n")
        (bindir / name).chmod(0o755)
    env = _env(tmp_path / "cache")
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    _, report = doctor_json("--", *argv, env=env, cwd=tmp_path)
    found = [f for f in report.findings() if f.check == "command" and f.facts.get("wrapper")]
    if wrapper is None:
        assert found == []
        return
    [f] = found
    assert f.status == "warn" and f.facts["wrapper"] == wrapper and f.fix
    if wrapper == "tox":
        assert "pass_env = PYTHONPATH, LAUNCHER_*" in f.fix
    else:
        assert f"{wrapper} launcher run" in f.fix or "launcher run" in f.fix


def test_recipes_cover_the_wrappers_and_agree_with_doctor() -> None:
    from launcher.doctor.checks.command import PASS_THROUGH

    text = (REPO / "docs" / "recipes.md").read_text()
    headings = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["tox", "nox", "pre-commit", "pytest-xdist", "Jupyter kernels", "Ray", "Dask"]
    tox = text.split("## tox", 1)[1].split("## nox", 1)[0]
    for var in PASS_THROUGH:  # the lines doctor's fix names are the recipe's
        assert f"    {var}\n" in tox and f'"{var}"' in tox, var
