"""`runtime_env()`: Ray workers started through `launcher run` on their own node.

Ray starts a Python worker as ``bash -c "exec <py_executable> default_worker.py
ARGS"``, where `py_executable` (a runtime_env field, Ray's supported way to
wrap workers) defaults to the node's own interpreter.  We set it to
``<launcher> run <options> -- <python>``: the launcher command and the
interpreter of its installation, which every node has at the same place
(install ``launcher[ray]`` into the environment Ray runs from, like Ray
itself).  Nothing else of the driver's machine goes in: no cache path, no
tree, no bootstrap dir.  Each node's `launcher run` resolves its own cache
(its LAUNCHER_CACHE_DIR or the user cache dir) and builds or reuses the trees
there, and the gate prepares every Python the worker starts in turn.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launcher.config import Settings

# Settings that are `launcher run` options; the others travel as LAUNCHER_* variables.
RUN_OPTIONS = frozenset({
    "with", "with-requirements", "with-priority", "find-links", "index-url", "offline", "python",
    "preload", "preload-scope", "preload-missing", "cache-dir", "build", "record"})


def runtime_env(flags: Mapping[str, Any] | None = None, *, settings: Settings | None = None,
                base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A Ray runtime_env whose workers start through `launcher run`.

    `flags` are `launcher run`'s settings by name, as for `launcher.prepare()`
    (``{"with": ["numpy"], "preload": ["jemalloc"]}``), or pass a `Settings`.
    Paths in them are the nodes' paths.  `base` is a runtime_env of your own
    (``env_vars``, ``working_dir``, ``pip``, ...), merged in: its env_vars are
    kept beside ours; its own `py_executable`, if any, is what the launcher
    runs the worker with."""
    if flags is not None and settings is not None:
        raise TypeError("runtime_env() takes flags or settings, not both")
    options, variables = run_options(settings if settings is not None else _validated(flags or {}))
    merged: dict[str, Any] = dict(base or {})
    command = launcher_command()
    python = merged.pop("py_executable", None) or worker_python(command)
    merged["py_executable"] = " ".join([shlex.join([command, "run", *options, "--"]), python])
    if variables:
        env_vars = dict(merged.get("env_vars") or {})
        clash = sorted(k for k in variables if k in env_vars and env_vars[k] != variables[k])
        if clash:
            raise ValueError(f"base['env_vars'] sets {', '.join(clash)}, which the flags set differently")
        merged["env_vars"] = {**env_vars, **variables}
    return merged


def _validated(flags: Mapping[str, Any]) -> Settings:
    from pydantic import ValidationError

    from launcher.config import KEYS, Settings
    from launcher.errors import UsageError

    unknown = sorted(k for k in flags if k not in KEYS)
    if unknown:
        raise UsageError(f"runtime_env(): unknown flag {unknown[0]!r}",
                         fix="use `launcher run` option names: " + ", ".join(sorted(KEYS)))
    try:
        return Settings.model_validate({k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        raise UsageError(f"runtime_env(): {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from None


def run_options(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """`launcher run` options for what `settings` sets (defaults are left to
    each node), and LAUNCHER_* variables for settings that have no option."""
    from launcher.config import Settings, env_name

    defaults = Settings.model_validate({})
    argv: list[str] = []
    env: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        key = field.alias or name
        value = getattr(settings, name)
        if value == getattr(defaults, name):
            continue
        if key not in RUN_OPTIONS:
            env[env_name(key)] = str(value)
        elif isinstance(value, bool):
            argv.append(f"--{key}")
        elif isinstance(value, list):
            for item in value:
                argv += [f"--{key}", str(item)]
        else:
            argv += [f"--{key}", str(value)]
    return argv, env


def launcher_command() -> str:
    """The `launcher` command of this installation (beside this interpreter),
    else the one on PATH."""
    here = Path(sysconfig.get_path("scripts")) / "launcher"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("launcher")
    if found:
        return os.path.abspath(found)
    from launcher.errors import UsageError

    raise UsageError(f"the `launcher` command is not installed beside {sys.executable} nor on PATH",
                     fix="pip install 'launcher[ray]' into the environment Ray runs from, on every node")


def worker_python(command: str) -> str:
    """The interpreter of the launcher command's installation: the Python Ray
    runs from when ``launcher[ray]`` is installed beside it."""
    d = os.path.dirname(command)
    for name in ("python", "python3"):
        if os.path.exists(os.path.join(d, name)):
            return shlex.quote(os.path.join(d, name))
    return shlex.quote(os.path.join(d, "python3"))
