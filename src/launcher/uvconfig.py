"""The user's uv configuration, as uv itself would find it: its identity and where it was looked for.

The launcher passes no `--no-config`: a `uv.toml` or `[tool.uv]` that points
at a private index applies under the launcher as under uv (`--isolated`
passes `--no-config`, which ignores the files as `uv --isolated` does;
`UV_*` variables apply in both cases, as under uv).  What uv reads changes
what a tree holds (another index may serve other files for one version),
so its identity is part of the tree's name: two configurations never share
a tree.  Every path looked at, found or not, is watched by the warm path: a
`uv.toml` appearing or changing re-plans the run.

Discovery follows uv's documented order: `UV_CONFIG_FILE` alone when set;
else the nearest `uv.toml`, or `pyproject.toml` with a `[tool.uv]` table,
from the working directory up; then the user's
(`$XDG_CONFIG_HOME/uv/uv.toml`) and the system's (`$XDG_CONFIG_DIRS/uv/uv.toml`,
`/etc/uv/uv.toml`).  `UV_NO_CONFIG` turns the files off.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# UV_* variables that change where packages come from or which versions are
# chosen (credentials are left out: they pick no file).
_INDEX_VARS = ("UV_INDEX", "UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_INDEX_STRATEGY",
               "UV_FIND_LINKS", "UV_NO_INDEX", "UV_PRERELEASE", "UV_RESOLUTION", "UV_EXCLUDE_NEWER",
               "UV_NO_BINARY", "UV_NO_BINARY_PACKAGE", "UV_NO_BUILD", "UV_NO_BUILD_PACKAGE",
               "UV_ONLY_BINARY", "UV_CONSTRAINT", "UV_OVERRIDE", "UV_BUILD_CONSTRAINT", "UV_TORCH_BACKEND",
               "UV_NO_SOURCES", "UV_CONFIG_FILE", "UV_NO_CONFIG")


@dataclass(frozen=True)
class UvConfig:
    identity: str  # 12 hex digits over what uv reads
    files: tuple[str, ...]  # every configuration path uv would look at (found or not)
    used: tuple[str, ...]  # the ones found and read


def discover(cwd: Path, environ: Mapping[str, str], *, isolated: bool) -> UvConfig:
    looked: list[Path] = []
    used: list[tuple[str, Any]] = []
    if not isolated and not _truthy(environ.get("UV_NO_CONFIG")):
        given = environ.get("UV_CONFIG_FILE")
        if given:
            looked.append(Path(given))
            used.append((given, _table(Path(given), None)))
        else:
            project = _project(cwd, looked)
            if project is not None:
                used.append(project)
            for p in _user_and_system(environ):
                looked.append(p)
                if p.is_file():
                    used.append((str(p), _table(p, None)))
    env = {k: environ[k] for k in _INDEX_VARS if environ.get(k)}
    doc = {"isolated": isolated, "files": [t for _, t in used], "env": env}
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()
    return UvConfig(hashlib.sha256(raw).hexdigest()[:12], tuple(str(p) for p in looked),
                    tuple(name for name, _ in used))


def _project(cwd: Path, looked: list[Path]) -> tuple[str, Any] | None:
    d = cwd.absolute()
    while True:
        for name in ("uv.toml", "pyproject.toml"):
            p = d / name
            looked.append(p)
            if not p.is_file():
                continue
            table = _table(p, ("tool", "uv") if name == "pyproject.toml" else None)
            if table is not None:
                return str(p), table
        if d.parent == d:
            return None
        d = d.parent


def _user_and_system(environ: Mapping[str, str]) -> list[Path]:
    xdg = environ.get("XDG_CONFIG_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".config")
    out = [Path(xdg) / "uv" / "uv.toml"]
    for d in (environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(os.pathsep):
        if d:
            out.append(Path(d) / "uv" / "uv.toml")
    out.append(Path("/etc/uv/uv.toml"))
    return out


def _table(p: Path, key: tuple[str, ...] | None) -> Any:
    """The file's settings (the `[tool.uv]` table of a pyproject.toml; None
    when it has none); an unreadable file counts by its bytes, which uv
    will then complain about itself."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        raw = p.read_bytes()
    except OSError:
        return None
    try:
        data: Any = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {"unparsed": hashlib.sha256(raw).hexdigest()}
    for k in key or ():
        data = data.get(k) if isinstance(data, dict) else None
    return data


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")
