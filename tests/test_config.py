"""Settings: flags > LAUNCHER_* > [tool.launcher] > defaults, for every key,
`launcher config` naming each source, and one clear line for a bad file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import WHEELHOUSE, launcher

# key: (file value (TOML), env value, flag value, what each resolves to).
# Paths from the file are relative to the file; from env/flags they are kept.
CASES: dict[str, tuple[str, str | None, Any, Any, Any, Any]] = {
    # family: requirements
    "with": ('["six"]', "markupsafe psutil", ["attrs"], ["six"], ["markupsafe", "psutil"], ["attrs"]),
    "with-requirements": ('["req.txt"]', "/env/req.txt", ["flag.txt"], "FILE/req.txt", ["/env/req.txt"],
                          ["flag.txt"]),
    "with-priority": ('"first"', "last", "first", "first", "last", "first"),
    # family: package sources
    "find-links": ('["wheels"]', "/env/wheels", ["/flag/wheels"], "FILE/wheels", ["/env/wheels"],
                   ["/flag/wheels"]),
    "index-url": ('"https://file.example/simple"', "https://env.example/simple",
                  "https://flag.example/simple", "https://file.example/simple",
                  "https://env.example/simple", "https://flag.example/simple"),
    "offline": ("true", "0", True, True, False, True),
    # family: interpreters (no variable: LAUNCHER_PYTHON would be ambiguous)
    "python": ('["/file/python"]', None, ["/flag/python"], ["/file/python"], ["/file/python"],
               ["/flag/python"]),
    # family: preloads
    "preload": ('["jemalloc"]', "tcmalloc", ["asan"], ["jemalloc"], ["tcmalloc"], ["asan"]),
    "preload-scope": ('"all"', "python", "all", "all", "python", "all"),
    "preload-missing": ('"warn"', "ignore", "reexec", "warn", "ignore", "reexec"),
    # family: cache
    "cache-dir": ('"cachedir"', "/env/cache", "/flag/cache", "FILE/cachedir", "/env/cache", "/flag/cache"),
    # family: timeouts
    "lock-timeout": ("30", "45", 60.0, 30.0, 45.0, 60.0),
    "failure-ttl": ("5", "0", 7.5, 5.0, 0.0, 7.5),
    # family: recording
    "record": ("true", "no", True, True, False, True),
}


def _resolve(tmp_path: Path, key: str, *, file: bool, env: bool, flag: bool) -> tuple[Any, str]:
    from launcher.config import KEYS, env_name, resolve

    toml, env_value, flag_value = CASES[key][:3]
    project = tmp_path / "proj"
    project.mkdir(exist_ok=True)
    (project / "pyproject.toml").write_text(
        "[project]\nname = 'x'\n" + (f"[tool.launcher]\n{key} = {toml}\n" if file else ""))
    environ = {env_name(key): env_value} if env and env_value is not None else {}
    flags = {key: flag_value} if flag else {}
    got = resolve(flags, cwd=project, environ=environ)
    return got.settings.model_dump()[KEYS[key]], got.sources[key]


def _expected(tmp_path: Path, value: Any) -> Any:
    if isinstance(value, str) and value.startswith("FILE/"):
        value = str(tmp_path / "proj" / value[5:])
        return [value] if "cachedir" not in value else value
    return value


@pytest.mark.parametrize("key", list(CASES))
def test_precedence_for_every_key(key: str, tmp_path: Path) -> None:
    from launcher.config import KEYS, Settings

    _, env_value, _, from_file, from_env, from_flag = CASES[key]
    default = Settings.model_validate({}).model_dump()[KEYS[key]]
    assert _resolve(tmp_path, key, file=False, env=False, flag=False) == (default, "default")
    file_path = str(tmp_path / "proj" / "pyproject.toml")
    assert _resolve(tmp_path, key, file=True, env=False, flag=False) == (_expected(tmp_path, from_file),
                                                                         file_path)
    if env_value is not None:
        assert _resolve(tmp_path, key, file=True, env=True, flag=False) == (from_env, "environment")
    else:  # the variable is ignored: the file still wins over the default
        assert _resolve(tmp_path, key, file=True, env=True, flag=False)[1] == file_path
    assert _resolve(tmp_path, key, file=True, env=True, flag=True) == (from_flag, "command line")


def _project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    (proj / "sub" / "dir").mkdir(parents=True)
    (proj / "pyproject.toml").write_text(
        "[project]\nname = 'demo'\n\n[tool.launcher]\n"
        'with = ["six"]\nfind-links = ["wheels"]\noffline = true\npreload = ["jemalloc"]\n'
        'preload-scope = "all"\ncache-dir = "cachedir"\nlock-timeout = 30\npython = ["/file/python"]\n')
    return proj


def _config(env: dict[str, str], cwd: Path, *args: str) -> dict[str, Any]:
    proc = launcher("config", "--json", *args, env=env, cwd=cwd, check=True)
    return json.loads(proc.stdout)


def test_config_command_shows_each_layer(tmp_path: Path, env: dict[str, str]) -> None:
    proj = _project(tmp_path)
    env.pop("LAUNCHER_CACHE_DIR")
    # Found from a subdirectory: the nearest pyproject.toml with [tool.launcher].
    got = _config(env, proj / "sub" / "dir")
    assert got["config_file"] == str(proj / "pyproject.toml")
    s = got["settings"]
    assert s["with"] == {"value": ["six"], "layer": "file", "source": str(proj / "pyproject.toml")}
    assert s["find-links"]["value"] == [str(proj / "wheels")]
    assert got["cache_dir"] == str(proj / "cachedir")
    assert s["preload-missing"] == {"value": "reexec", "layer": "default", "source": "default"}

    env.update(LAUNCHER_WITH="markupsafe", LAUNCHER_PRELOAD_SCOPE="python", LAUNCHER_LOCK_TIMEOUT="45",
               LAUNCHER_CACHE_DIR=str(tmp_path / "envcache"))
    s = _config(env, proj)["settings"]
    assert s["with"] == {"value": ["markupsafe"], "layer": "env", "source": "env LAUNCHER_WITH"}
    assert s["preload-scope"]["source"] == "env LAUNCHER_PRELOAD_SCOPE"
    assert s["lock-timeout"] == {"value": 45.0, "layer": "env", "source": "env LAUNCHER_LOCK_TIMEOUT"}
    assert s["cache-dir"]["layer"] == "env"
    assert s["offline"]["layer"] == "file"

    got = _config(env, proj, "--with", "attrs", "--preload-scope", "all", "--cache-dir", "/flag/cache",
                  "--python", "/flag/python")
    s = got["settings"]
    assert s["with"] == {"value": ["attrs"], "layer": "flag", "source": "--with"}
    assert s["preload-scope"] == {"value": "all", "layer": "flag", "source": "--preload-scope"}
    assert s["python"] == {"value": ["/flag/python"], "layer": "flag", "source": "--python"}
    assert got["cache_dir"] == "/flag/cache"
    assert s["lock-timeout"]["layer"] == "env"  # no flag given: env still wins over the file


def test_config_text_names_sources(tmp_path: Path, env: dict[str, str]) -> None:
    proj = _project(tmp_path)
    env["LAUNCHER_PRELOAD_SCOPE"] = "python"
    out = launcher("config", "--with", "attrs", env=env, cwd=proj, check=True).stdout
    lines = {ln.split("=")[0].strip(): ln for ln in out.splitlines() if "=" in ln}
    assert out.splitlines()[0] == f"config file: {proj / 'pyproject.toml'}"
    assert lines["with"].endswith("(--with)") and "attrs" in lines["with"]
    assert lines["preload-scope"].endswith("(env LAUNCHER_PRELOAD_SCOPE)")
    assert lines["preload"].endswith(f"({proj / 'pyproject.toml'})") and "jemalloc" in lines["preload"]
    assert lines["failure-ttl"].endswith("(default)")
    assert lines["cache-dir"].endswith("(env LAUNCHER_CACHE_DIR)")


def test_launcher_toml(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "launcher.toml").write_text('with = ["six"]\npreload-missing = "ignore"\n')
    s = _config(env, tmp_path)["settings"]
    assert s["with"]["source"] == str(tmp_path / "launcher.toml")
    assert s["preload-missing"]["value"] == "ignore"


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        ('wiht = ["six"]', ["unknown key 'wiht'", "did you mean 'with'?", "allowed keys: build, cache-dir"]),
        ('with_requirements = ["r.txt"]', ["unknown key 'with_requirements'", "did you mean 'with-requirements'?"]),
        ('lock-timeout = "soon"', ["lock-timeout = 'soon' is invalid", "a number of seconds > 0"]),
        ('with = "six"', ["with = 'six' is invalid", "valid list", "use a list of strings"]),
        ('offline = "maybe"', ["offline = 'maybe' is invalid", "use true or false"]),
        ('preload-scope = "everything"', ["preload-scope = 'everything' is invalid", "use 'python' or 'all'"]),
        ('with = ["six>>>1"]', ["with = ['six>>>1'] is invalid", "'six>>>1'", "PEP 508"]),
    ],
    ids=["unknown-key", "underscore-key", "wrong-type-number", "wrong-type-list", "wrong-type-bool",
         "bad-choice", "bad-requirement"],
)
def test_malformed_file_is_one_line_exit_2(body: str, expect: list[str], tmp_path: Path,
                                           env: dict[str, str]) -> None:
    _one_clear_line(["config"], body, expect, tmp_path, env)


@pytest.mark.parametrize("body", ['wiht = ["six"]', 'lock-timeout = "soon"', 'with = ["six>>>1"]'],
                         ids=["unknown-key", "wrong-type", "bad-requirement"])
def test_run_refuses_a_malformed_file(body: str, tmp_path: Path, env: dict[str, str]) -> None:
    _one_clear_line(["run", "--", "true"], body, [body.split(" =")[0]], tmp_path, env)


def _one_clear_line(cmd: list[str], body: str, expect: list[str], tmp_path: Path,
                    env: dict[str, str]) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[project]\nname = 'x'\n\n[tool.launcher]\n{body}\n")
    proc = launcher(*cmd, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"launcher: {tmp_path / 'pyproject.toml'}: ")
    for piece in expect:
        assert piece in lines[0]


def test_bad_variable_is_one_line_exit_2(tmp_path: Path, env: dict[str, str]) -> None:
    env["LAUNCHER_OFFLINE"] = "maybe"
    proc = launcher("config", env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "launcher: LAUNCHER_OFFLINE = 'maybe' is invalid: Input should be a valid boolean, "
        "unable to interpret input (use true or false)"]


def test_unparsable_toml(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "launcher.toml").write_text("with = [six\n")
    proc = launcher("config", env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(f"launcher: {tmp_path / 'launcher.toml'}: cannot parse")


@pytest.mark.parametrize(("value", "expected"), [
    ("pydantic>=2,<3", ["pydantic>=2,<3"]),  # one requirement: its comma never splits it
    ("six markupsafe[a,b]>=2,!=2.1", ["six", "markupsafe[a,b]>=2,!=2.1"]),
    ("six\nmarkupsafe>=2,<4\n", ["six", "markupsafe>=2,<4"]),
    # A direct reference is written without spaces in a list (as in pip's).
    ("six@https://example.org/six-1.17.0-py2.py3-none-any.whl markupsafe",
     ["six@https://example.org/six-1.17.0-py2.py3-none-any.whl", "markupsafe"]),
])
def test_list_variables_are_separated_by_whitespace(value: str, expected: list[str], tmp_path: Path,
                                                    env: dict[str, str]) -> None:
    """As pip's PIP_* lists: spaces or newlines separate, so any PEP 508
    requirement fits in one item."""
    env["LAUNCHER_WITH"] = value
    assert _config(env, tmp_path)["settings"]["with"]["value"] == expected


def test_comma_joined_lists_name_the_separator(tmp_path: Path, env: dict[str, str]) -> None:
    env["LAUNCHER_WITH"] = "six,markupsafe"
    proc = launcher("config", env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert "spaces or newlines, not commas" in proc.stderr, proc.stderr
    env["LAUNCHER_PRELOAD"] = "jemalloc tcmalloc"
    env["LAUNCHER_WITH"] = "six markupsafe"
    assert _config(env, tmp_path)["settings"]["preload"]["value"] == ["jemalloc", "tcmalloc"]


@pytest.mark.parametrize("req", ["six @ http://[::1", "six @ http://host:x/six.whl", "six @ nohost",
                                 "six @ https:///six.whl"])
def test_a_malformed_direct_reference_is_one_line_and_exit_2(req: str, tmp_path: Path, env: dict[str, str],
                                                             py311: str) -> None:
    """Refused before anything runs, not by the installer after the command started."""
    proc = launcher("run", "--with", req, "--", py311, "-c", "print('ran')", env=env, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    [line] = proc.stderr.splitlines()
    assert line.startswith("launcher: ") and "URL" in line, line


def test_the_warm_path_reads_list_variables_as_the_full_path_does(tmp_path: Path, env: dict[str, str],
                                                                 py311: str) -> None:
    """The warm path keys on the raw value: a second requirement added after a
    space is a new plan, not the remembered one."""
    show = "import importlib.util as u; print(sorted(n for n in ('six', 'markupsafe') if u.find_spec(n)))"
    args = ["run", "-v", "--find-links", str(WHEELHOUSE), "--offline", "--", py311, "-c", show]
    env["LAUNCHER_WITH"] = "six"
    for warm in (False, True):
        proc = launcher(*args, env=env, cwd=tmp_path, check=True)
        assert proc.stdout == "['six']\n" and ("warm start" in proc.stderr) == warm, proc.stderr
    env["LAUNCHER_WITH"] = "six markupsafe>=2,<4"
    for warm in (False, True):
        proc = launcher(*args, env=env, cwd=tmp_path, check=True)
        assert proc.stdout == "['markupsafe', 'six']\n" and ("warm start" in proc.stderr) == warm, proc.stderr
