"""One job, one set of versions (issue 17): the interpreters a launch knows are
resolved together, the pins travel to interpreters it did not know, a lock
pins them for CI, a requirement nothing answers stops the job, and uv's own
configuration applies under the launcher.

Synthetic wheels, offline: `splitpkg` 2.0 has a cp311 wheel only, 1.0 is
universal -- the shape of a real release whose newest version lacks cp313t
wheels."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import UNREACHABLE, WHEELHOUSE, installs, launcher, offline_with
from support import make_wheel

SHOW = "import splitpkg; print(splitpkg.V)"


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    d = tmp_path / "wheels"
    make_wheel(d, "splitpkg", {"splitpkg.py": "V = '1.0'\n"}, version="1.0")
    make_wheel(d, "splitpkg", {"splitpkg.py": "V = '2.0'\n"}, version="2.0", tag="cp311-cp311-linux_x86_64")
    # travelpkg 3.0 exists for cp311 and cp313t, not for cp313; 1.0 for all.
    make_wheel(d, "travelpkg", {"travelpkg.py": "V = '1.0'\n"}, version="1.0")
    for tag in ("cp311-cp311-linux_x86_64", "cp313-cp313t-linux_x86_64"):
        make_wheel(d, "travelpkg", {"travelpkg.py": "V = '3.0'\n"}, version="3.0", tag=tag)
    return d


@pytest.fixture
def jenv(env: dict[str, str]) -> dict[str, str]:
    # Only the wheels the test makes: never a registry (not even uv's cached view of one).
    return dict(env, UV_NO_INDEX="1")


def split(wheels: Path, *reqs: str) -> list[str]:
    out: list[str] = []
    for r in reqs or ("splitpkg",):
        out += ["--with", r]
    return out + ["--find-links", str(wheels), "--offline"]


def child(python: str, code: str = SHOW) -> str:
    """`-c` code that prints this interpreter's view, then a child's on `python`."""
    return f"import subprocess; {code}; subprocess.run([{python!r}, '-c', {code!r}], check=True)"


def launcher_lines(stderr: str) -> list[str]:
    """The launcher's lines, but for the progress line a slow build shows (a loaded machine)."""
    return [ln for ln in stderr.splitlines() if ln.startswith("launcher: ") and "preparing the runtime" not in ln]


# ------------------------------------------------------------ job-wide versions


def test_two_known_abis_run_one_version(wheels: Path, jenv: dict[str, str], py311: str, py313t: str) -> None:
    alone = launcher("run", *split(wheels), "--", py311, "-c", SHOW, env=jenv, check=True)
    assert alone.stdout == "2.0\n"  # cp311 by itself gets the newest
    proc = launcher("run", *split(wheels), "--python", py313t, "--", py311, "-c", child(py313t), env=jenv,
                    check=True)
    assert proc.stdout == "1.0\n1.0\n" and launcher_lines(proc.stderr) == []  # together: the version both can have
    # Neither tree was built by the gate: the launch knew both.
    assert {r["requested_by"] for r in installs(Path(jenv["LAUNCHER_CACHE_DIR"]))} == {"launcher"}


def test_a_child_the_launch_did_not_know_gets_the_jobs_pins(wheels: Path, jenv: dict[str, str], py311: str,
                                                           py313: str, py313t: str) -> None:
    show = "import travelpkg; print(travelpkg.V)"
    # Alone, cp313t would take 3.0; the job (cp311 + cp313) is pinned to 1.0, and so is its cp313t child.
    alone = launcher("run", *split(wheels, "travelpkg"), "--", py313t, "-c", show, env=jenv, check=True)
    assert alone.stdout == "3.0\n"
    proc = launcher("run", *split(wheels, "travelpkg"), "--python", py313, "--", py311, "-c",
                    child(py313t, show), env=jenv, check=True)
    assert proc.stdout == "1.0\n1.0\n" and launcher_lines(proc.stderr) == []
    by_gate = [r["abi_key"].split("-")[0] for r in installs(Path(jenv["LAUNCHER_CACHE_DIR"]))
               if r["requested_by"] != "launcher"]
    assert by_gate == ["cp313t"]  # built in the child, with the job's pins


def test_a_pin_a_later_child_cannot_have_is_one_line(wheels: Path, jenv: dict[str, str], py311: str,
                                                     py313t: str) -> None:
    proc = launcher("run", *split(wheels), "--", py311, "-c", child(py313t), env=jenv)
    assert proc.returncode == 0 and proc.stdout == "2.0\n1.0\n", proc.stderr
    [line] = launcher_lines(proc.stderr)
    assert "splitpkg" in line and "cp313t gets 1.0" in line and "2.0" in line, line
    assert "no cp313t wheel of splitpkg 2.0" in line, line


def test_abis_that_cannot_agree_say_so_in_one_line(tmp_path: Path, jenv: dict[str, str], py311: str,
                                                   py313t: str) -> None:
    d = tmp_path / "apart"
    make_wheel(d, "splitpkg", {"splitpkg.py": "V = '2.0'\n"}, version="2.0", tag="cp311-cp311-linux_x86_64")
    make_wheel(d, "splitpkg", {"splitpkg.py": "V = '1.0'\n"}, version="1.0", tag="cp313-cp313t-linux_x86_64")
    proc = launcher("run", *split(d), "--python", py313t, "--", py311, "-c", child(py313t), env=jenv)
    assert proc.returncode == 0 and proc.stdout == "2.0\n1.0\n", proc.stderr
    [line] = launcher_lines(proc.stderr)
    assert "splitpkg" in line and "cp311 gets 2.0" in line and "cp313t gets 1.0" in line, line
    assert "no cp313t wheel of splitpkg 2.0" in line, line


# ------------------------------------------------------------------- the lock


def test_lock_then_run_lock_installs_the_same_versions_without_resolving(
        wheels: Path, jenv: dict[str, str], tmp_path: Path, py311: str, py313t: str) -> None:
    lock = tmp_path / "ci.lock"
    made = launcher("lock", *split(wheels), "--python", py311, "--python", py313t, "-o", str(lock), env=jenv,
                    cwd=tmp_path, check=True)
    text = lock.read_text()
    assert text.count('"splitpkg==1.0"') == 3 and "2.0" not in text, text  # job-wide, and each ABI
    assert "cp311-" in text and "cp313t-" in text and "locked" in made.stderr
    # A fresh cache and an installer that refuses to resolve: the lock alone decides.
    from uv import find_uv_bin

    no_compile = tmp_path / "uv-no-compile"
    no_compile.write_text(f"#!/bin/sh\n[ \"$2\" = compile ] && {{ echo resolved >&2; exit 9; }}\n"
                          f"exec {find_uv_bin()} \"$@\"\n")
    no_compile.chmod(0o755)
    fresh = dict(jenv, LAUNCHER_CACHE_DIR=str(tmp_path / "fresh"), LAUNCHER_UV=str(no_compile))
    proc = launcher("run", *split(wheels), "--lock", str(lock), "--python", py313t, "--", py311, "-c",
                    child(py313t), env=fresh, check=True)
    # (a slow build may say it is preparing; nothing resolves, nothing differs)
    assert proc.stdout == "1.0\n1.0\n" and "resolved" not in proc.stderr and "differs" not in proc.stderr
    # The same through the project file's `lock = "..."`.
    (tmp_path / "launcher.toml").write_text('lock = "ci.lock"\n')
    again = launcher("run", *split(wheels), "--python", py313t, "--", py311, "-c", SHOW, env=fresh,
                     cwd=tmp_path, check=True)
    assert again.stdout == "1.0\n"


def test_an_edited_requirement_with_an_old_lock_stops(wheels: Path, jenv: dict[str, str], tmp_path: Path,
                                                      py311: str) -> None:
    lock = tmp_path / "launcher.lock"
    launcher("lock", *split(wheels), "--python", py311, env=jenv, cwd=tmp_path, check=True)
    assert lock.is_file()  # the default name, in the working directory
    proc = launcher("run", *split(wheels, "splitpkg", "six"), "--find-links", str(WHEELHOUSE), "--lock",
                    str(lock), "--", py311, "-c", "print('ran')", env=jenv, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert str(lock) in line and "no longer matches" in line and "+six" in line and "launcher lock" in line


# ------------------------------------------------------- resolution errors stop


@pytest.mark.parametrize(("req", "reason"), [
    ("no-such-project", "no-such-project was not found"),
    ("markupsafe==99", "there is no version of markupsafe==99"),
])
@pytest.mark.parametrize("verb", ["run", "prewarm"])
def test_a_requirement_nothing_answers_stops_with_uvs_reason(req: str, reason: str, verb: str,
                                                              env: dict[str, str], py311: str,
                                                              tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    if verb == "run":
        proc = launcher("run", *offline_with(req), "--", py311, "-c", f"open({str(marker)!r}, 'w')", env=env)
    else:
        proc = launcher("prewarm", *offline_with(req), "--python", py311, env=env)
    assert proc.returncode == 2 and proc.stdout == "" and not marker.exists()
    [line] = proc.stderr.splitlines()
    assert line.startswith("launcher: ") and reason in line and "cp311" in line, line
    assert not (Path(env["LAUNCHER_CACHE_DIR"]) / "trees").is_dir() or \
        not any(Path(env["LAUNCHER_CACHE_DIR"], "trees").iterdir())


def test_an_unreachable_index_lets_the_command_run_with_one_line(env: dict[str, str], py311: str) -> None:
    proc = launcher("run", "--with", "six", "--index-url", UNREACHABLE, "--", py311, "-c", "print('ran')",
                    env=env)
    assert proc.returncode == 0 and proc.stdout == "ran\n"
    [line] = proc.stderr.splitlines()
    assert "127.0.0.1:9" in line and "runs without it" in line, line


def test_refresh_forgets_a_remembered_failure(env: dict[str, str], py311: str) -> None:
    cache = Path(env["LAUNCHER_CACHE_DIR"])
    launcher("run", "--with", "six", "--index-url", UNREACHABLE, "--", py311, "-c", "pass", env=env)
    assert list((cache / "failures").glob("*.json"))
    # The same requirement, now from the wheelhouse: --refresh resolves again.
    fixed = launcher("run", "--refresh", *offline_with("six"), "--", py311, "-c", "import six", env=env,
                     check=True)
    assert launcher_lines(fixed.stderr) == [] and not list((cache / "failures").glob("*.json"))


# --------------------------------------------------------- uv's configuration


def _uv_toml(home: Path, links: Path) -> dict[str, str]:
    (home / "uv").mkdir(parents=True)
    (home / "uv" / "uv.toml").write_text(f'no-index = true\nfind-links = ["{links}"]\n')
    return {"XDG_CONFIG_HOME": str(home)}


def test_a_uv_toml_is_honoured_and_isolated_ignores_it(wheels: Path, env: dict[str, str], tmp_path: Path,
                                                       py311: str) -> None:
    uenv = dict(env, **_uv_toml(tmp_path / "config", wheels))
    proc = launcher("run", "--with", "splitpkg", "--offline", "--", py311, "-c", SHOW, env=uenv, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == "2.0\n", proc.stderr
    iso = launcher("run", "--isolated", "--with", "splitpkg", "--offline", "--", py311, "-c", SHOW, env=uenv,
                   cwd=tmp_path)
    assert iso.returncode == 2 and iso.stdout == "" and "splitpkg" in iso.stderr, iso.stderr
    # The setting too (LAUNCHER_ISOLATED), and the warm path does not carry the old answer over.
    iso_env = launcher("run", "--with", "splitpkg", "--offline", "--", py311, "-c", SHOW,
                       env=dict(uenv, LAUNCHER_ISOLATED="1"), cwd=tmp_path)
    assert iso_env.returncode == 2


def test_two_index_configurations_give_two_trees(wheels: Path, env: dict[str, str], tmp_path: Path,
                                                 py311: str) -> None:
    other = tmp_path / "other"
    make_wheel(other, "splitpkg", {"splitpkg.py": "V = 'other 2.0'\n"}, version="2.0")
    first = dict(env, **_uv_toml(tmp_path / "a", wheels))
    second = dict(env, **_uv_toml(tmp_path / "b", other))
    one = launcher("run", "--with", "splitpkg==2.0", "--offline", "--", py311, "-c", SHOW, env=first,
                   cwd=tmp_path, check=True)
    two = launcher("run", "--with", "splitpkg==2.0", "--offline", "--", py311, "-c", SHOW, env=second,
                   cwd=tmp_path, check=True)
    assert (one.stdout, two.stdout) == ("2.0\n", "other 2.0\n")
    trees = sorted(p.name for p in (Path(env["LAUNCHER_CACHE_DIR"]) / "trees").iterdir()
                   if not p.name.startswith("."))
    assert len(trees) == 2 and all(t.startswith("cp311-") for t in trees)
    # An edit of the uv.toml the warm path watched re-plans too.
    (tmp_path / "a" / "uv" / "uv.toml").write_text(f'no-index = true\nfind-links = ["{other}"]\n')
    three = launcher("run", "--with", "splitpkg==2.0", "--offline", "--", py311, "-c", SHOW, env=first,
                     cwd=tmp_path, check=True)
    assert three.stdout == "other 2.0\n"


def test_the_offline_flag_is_uvs_offline(env: dict[str, str], tmp_path: Path) -> None:
    from launcher.probe import Interpreter
    from launcher.spec import Spec
    from launcher.tree import install_command

    interp = Interpreter.__new__(Interpreter)
    object.__setattr__(interp, "executable", "/x/python")
    cmd = install_command("uv", interp, Spec(requirements=("six",), offline=True), tmp_path, binary_only=True)
    assert "--offline" in cmd and "--no-index" not in cmd and "--no-config" not in cmd
    iso = install_command("uv", interp, Spec(requirements=("six",), isolated=True), tmp_path, binary_only=True)
    assert "--no-config" in iso


def test_a_run_of_one_prewarmed_interpreter_keeps_the_jobs_pins(wheels: Path, jenv: dict[str, str], py311: str,
                                                                py313t: str) -> None:
    cache = Path(jenv["LAUNCHER_CACHE_DIR"])
    launcher("prewarm", *split(wheels), "--python", py311, "--python", py313t, env=jenv, check=True)
    proc = launcher("run", *split(wheels), "--", py311, "-c", SHOW, env=jenv, check=True)
    assert proc.stdout == "1.0\n" and len(installs(cache)) == 2  # the prewarmed tree, not a new one
    # --refresh resolves this launch's interpreters anew: cp311 alone takes 2.0.
    fresh = launcher("run", "--refresh", *split(wheels), "--", py311, "-c", SHOW, env=jenv, check=True)
    assert fresh.stdout == "2.0\n" and len(installs(cache)) == 3
