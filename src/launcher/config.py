"""Resolved settings: flags win, then LAUNCHER_* variables, then the project
file (`[tool.launcher]` in the nearest pyproject.toml, or launcher.toml),
then defaults.  Every value remembers where it came from, for
`launcher config`, and a bad value names its source, its key and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from launcher.errors import UsageError

LIST_KEYS = ("with", "with-requirements", "find-links", "python", "preload")


class Settings(BaseModel):
    """Everything `launcher run` takes that may also live in a file or the environment."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    with_: list[str] = Field(default_factory=list, alias="with")
    with_requirements: list[str] = Field(default_factory=list, alias="with-requirements")
    with_priority: Literal["last", "first"] = Field("last", alias="with-priority")
    find_links: list[str] = Field(default_factory=list, alias="find-links")
    index_url: str | None = Field(None, alias="index-url")
    offline: bool = False
    python: list[str] = Field(default_factory=list)
    preload: list[str] = Field(default_factory=list)
    preload_scope: Literal["python", "all"] = Field("python", alias="preload-scope")
    preload_missing: Literal["reexec", "warn", "ignore"] = Field("reexec", alias="preload-missing")
    cache_dir: str | None = Field(None, alias="cache-dir")
    lock_timeout: float = Field(900.0, alias="lock-timeout", gt=0)
    failure_ttl: float = Field(60.0, alias="failure-ttl", ge=0)
    record: bool = False
    # `launcher run` stays as a supervising parent instead of exec (see launcher.supervise).
    supervise: bool = False
    build: Literal["never", "fallback", "always"] = "fallback"
    # A lock file (`launcher lock`): install exactly its pins, resolve nothing.
    lock: str | None = None
    # Ignore uv's configuration files (uv.toml, [tool.uv]), as `uv --isolated` does.
    isolated: bool = False

    @field_validator("with_")
    @classmethod
    def _requirements_parse(cls, v: list[str]) -> list[str]:
        from packaging.requirements import InvalidRequirement, Requirement

        for r in v:
            try:
                req = Requirement(r)
            except InvalidRequirement as exc:
                raise ValueError(f"invalid requirement {r!r}: {str(exc).splitlines()[0]}") from None
            if req.url and (problem := _url_problem(req.url)):
                raise ValueError(f"invalid requirement {r!r}: its URL {problem}")
        return v

    @field_validator("index_url")
    @classmethod
    def _index_url_is_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme not in ("http", "https", "file") or not (parts.netloc or parts.path) \
                or (parts.scheme != "file" and not parts.netloc) or any(c.isspace() for c in v):
            raise ValueError(f"{v!r} is not an http(s):// or file:// URL")
        return v

    @field_validator("cache_dir")
    @classmethod
    def _cache_dir_fits_pythonpath(cls, v: str | None) -> str | None:
        if v is not None and os.pathsep in v:
            raise ValueError(f"it contains {os.pathsep!r}, which PYTHONPATH cannot carry")
        return v


def _url_problem(url: str) -> str | None:
    """Why a direct reference's URL cannot be fetched, caught here rather than
    by the installer after the command has started."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parses the port: 'http://host:x' raises here
    except ValueError as exc:
        return f"is malformed ({exc})"
    if not parts.scheme:
        return "has no scheme (https://, file://, git+https://, ...)"
    if parts.scheme != "file" and not parts.netloc:
        return "names no host"
    if any(c.isspace() for c in url):
        return "contains whitespace"
    return None


KEYS: dict[str, str] = {
    (f.alias or name): name for name, f in Settings.model_fields.items()
}


def current_dir() -> Path:
    """The working directory, or a UsageError when it was removed under us
    (`rm -rf` of the directory a shell is still in)."""
    try:
        return Path.cwd()
    except FileNotFoundError:
        raise UsageError("the current directory no longer exists",
                         fix="cd to an existing directory and run it again") from None


def cache_root(settings: Settings, environ: Mapping[str, str]) -> Path:
    """The cache-dir setting, else LAUNCHER_CACHE_DIR (for settings made
    without the environment), else the user cache dir; absolute."""
    from launcher.cache import default_cache_dir

    given = settings.cache_dir or environ.get("LAUNCHER_CACHE_DIR")
    return (Path(given).expanduser() if given else default_cache_dir()).absolute()


def env_name(key: str) -> str:
    return "LAUNCHER_" + key.upper().replace("-", "_")


@dataclass
class Resolved:
    settings: Settings
    sources: dict[str, str] = field(default_factory=dict)
    config_file: Path | None = None
    # Every file discovery looked at, found or not: one appearing (or
    # changing) changes the answer, so the warm path re-checks them all.
    examined: list[Path] = field(default_factory=list)


def find_config_file(start: Path) -> tuple[Path | None, list[Path]]:
    """The nearest launcher.toml or pyproject.toml with [tool.launcher], and
    every path looked at (the fast path re-checks them)."""
    looked: list[Path] = []
    d = start.resolve()
    while True:
        for name in ("launcher.toml", "pyproject.toml"):
            p = d / name
            looked.append(p)
            if p.is_file() and (name == "launcher.toml" or _has_tool_launcher(p)):
                return p, looked
        if d.parent == d:
            return None, looked
        d = d.parent


def _has_tool_launcher(p: Path) -> bool:
    try:
        return "[tool.launcher" in p.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _read_text(p: Path) -> str:
    """A config file's text: TOML is UTF-8, and anything else is the user's
    to fix (a Latin-1 comment included), not a traceback."""
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"{p}: cannot read: {exc.strerror or exc}", fix="check the file's permissions") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise UsageError(f"{p}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line})",
                         fix="save the file as UTF-8, as TOML requires") from None


def _read_file(p: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    text = _read_text(p)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{p}: cannot parse: {exc}", fix="fix the TOML syntax") from None
    if p.name == "pyproject.toml":
        # Picked by a "[tool.launcher" in its text, which a comment may hold:
        # `tool` or `tool.launcher` may be anything.
        tool = data.get("tool")
        data = tool.get("launcher", {}) if isinstance(tool, dict) else {}
        if not isinstance(data, dict):
            raise UsageError(f"{p}: tool.launcher must be a table",
                             fix="write the settings under a [tool.launcher] header")
    return data


def _from_env(environ: dict[str, str] | os._Environ[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in KEYS:
        raw = environ.get(env_name(key))
        if raw is None or key == "python":
            # LAUNCHER_PYTHON would be ambiguous with interpreters; --python only.
            continue
        if key in LIST_KEYS:
            # Whitespace or newlines, as pip's PIP_* lists: a comma belongs to
            # a requirement ('pydantic>=2,<3', 'pkg[a,b]'), never splits it.
            out[key] = raw.split()
        elif key in ("offline", "record", "isolated", "supervise"):
            # Empty means unset-ish (false); anything pydantic cannot read as a
            # boolean ("maybe") is reported rather than silently taken as false.
            out[key] = raw.strip().lower() or "false"
        else:
            out[key] = raw
    return out


def resolve(
    flags: dict[str, Any],
    *,
    cwd: Path | None = None,
    environ: dict[str, str] | os._Environ[str] | None = None,
    config_file: Path | None = None,
) -> Resolved:
    """Merge defaults < file < env < flags, validating each layer with its source named."""
    environ = os.environ if environ is None else environ
    cwd = cwd or current_dir()
    examined: list[Path] = []
    if config_file is None:
        config_file, examined = find_config_file(cwd)
    else:
        examined = [config_file]
    merged: dict[str, Any] = {}
    sources = {k: "default" for k in KEYS}
    layers: list[tuple[str, dict[str, Any]]] = []
    if config_file is not None:
        layers.append((str(config_file), _read_file(config_file)))
    layers.append(("environment", _from_env(environ)))
    layers.append(("command line", {k: v for k, v in flags.items() if v is not None}))
    for source, values in layers:
        for key, value in values.items():
            if key not in KEYS:
                raise UsageError(f"{source}: unknown key {key!r}", fix=_unknown_key_fix(key))
            if config_file is not None and source == str(config_file) \
                    and key in ("find-links", "with-requirements", "cache-dir", "lock"):
                value = _relative_to(config_file.parent, value)
            _check_one(source, key, value)
            merged[key] = value
            sources[key] = source
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:  # pragma: no cover - each layer was validated above
        raise UsageError(str(exc)) from None
    return Resolved(settings=settings, sources=sources, config_file=config_file, examined=examined)


def _relative_to(base: Path, value: Any) -> Any:
    if isinstance(value, list):
        return [str(base / v) if isinstance(v, str) and "://" not in v else v for v in value]
    if isinstance(value, str) and "://" not in value:
        return str(base / value)
    return value


def _unknown_key_fix(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key.replace("_", "-"), list(KEYS), n=1)
    allowed = "allowed keys: " + ", ".join(sorted(KEYS))
    return f"did you mean {close[0]!r}? {allowed}" if close else allowed


def _check_one(source: str, key: str, value: Any) -> None:
    try:
        Settings.model_validate({key: value})
    except ValidationError as exc:
        err = exc.errors()[0]
        # One line: packaging's messages carry a caret diagram on later lines.
        msg = str(err["msg"]).strip().splitlines()[0]
        msg = msg.removeprefix("Value error, ")
        where = f"{env_name(key)}" if source == "environment" else f"{source}: {key}"
        fix: str | None
        if key == "with" and err["type"] == "value_error":
            fix = "use PEP 508 requirements such as 'six>=1.16' or 'markupsafe==3.0.3'"
            if "its URL" in msg:
                fix = "write a direct reference as 'name @ https://host/path/name-1.0-py3-none-any.whl'"
            if source == "environment" and any(_comma_joined(r) for r in value):
                fix = (f"separate the requirements of {env_name(key)} with spaces or newlines, not commas "
                       f"(LAUNCHER_WITH='six markupsafe')")
        else:
            allowed = _allowed(key)
            fix = f"use {allowed}" if allowed else None
        raise UsageError(f"{where} = {value!r} is invalid: {msg}", fix=fix) from None


def _comma_joined(req: str) -> bool:
    """'six,markupsafe': names joined by commas, the old list syntax."""
    from packaging.requirements import InvalidRequirement, Requirement

    parts = req.split(",")
    if len(parts) < 2:
        return False
    try:
        return all(Requirement(p).name for p in parts)
    except InvalidRequirement:
        return False


def describe_source(key: str, source: str) -> str:
    """`environment` -> `env LAUNCHER_WITH`, `command line` -> `--with`: what to change."""
    if source == "environment":
        return f"env {env_name(key)}"
    if source == "command line":
        # lock-timeout and failure-ttl have no option: only the API's flags set them.
        return "flags" if key in ("lock-timeout", "failure-ttl") else f"--{key}"
    return source


def _allowed(key: str) -> str:
    name = KEYS[key]
    ann = Settings.model_fields[name].annotation
    args = getattr(ann, "__args__", ())
    if args and all(isinstance(a, str) for a in args):
        return " or ".join(repr(a) for a in args)
    if key in LIST_KEYS:
        return "a list of strings"
    return {"offline": "true or false", "record": "true or false", "isolated": "true or false", "supervise": "true or false",
            "lock": "a lock file written by 'launcher lock'",
            "lock-timeout": "a number of seconds > 0", "failure-ttl": "a number of seconds >= 0",
            "index-url": "a URL such as https://pypi.org/simple",
            "cache-dir": f"a directory path without {os.pathsep!r}"}.get(key, "")
