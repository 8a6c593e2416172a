"""Options shared by `run`, `doctor -- CMD` and `prewarm`: one definition each."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource
from click.shell_completion import CompletionItem


def _complete_preload(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The short names first; anything path-like completes as a file."""
    from launcher.preload import SHORT_NAMES

    if "/" in incomplete:
        return [CompletionItem(incomplete, type="file")]
    return [CompletionItem(n) for n in SHORT_NAMES if n.startswith(incomplete)]


def complete_command(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The command after `--`: its name from PATH (then files, where the
    shell falls back to them), its arguments as files."""
    words = ctx.params.get(param.name or "") or ()
    # The file item first: bash's script resets its replies at a file item,
    # then falls back to file names only when no command matched.
    items = [CompletionItem(incomplete, type="file")]
    if words or "/" in incomplete:
        return items
    names: set[str] = set()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        try:
            with os.scandir(d or ".") as it:
                for e in it:
                    if e.name.startswith(incomplete) and e.name not in names and \
                            e.is_file() and os.access(e.path, os.X_OK):
                        names.add(e.name)
        except OSError:
            continue
    return items + [CompletionItem(n) for n in sorted(names)]


BUILD_POLICIES = ("never", "fallback", "always")

# (click declaration, config key)
RUNTIME_OPTIONS: list[tuple[Callable[[Any], Any], str]] = [
    (click.option("--with", "with_", multiple=True, metavar="REQ",
                  help="A requirement every descendant interpreter (any Python the command starts, however "
                       "deep) must be able to import (repeatable)."), "with"),
    (click.option("--with-requirements", multiple=True, metavar="FILE", type=click.Path(),
                  help="A requirements file (repeatable)."), "with-requirements"),
    (click.option("--with-priority", type=click.Choice(["last", "first"]),
                  help="Put the runtime tree (the --with packages, installed once per interpreter ABI) "
                       "after (default) or before the interpreter's site-packages."),
     "with-priority"),
    (click.option("--find-links", multiple=True, metavar="DIR|URL", help="Passed to the installer."),
     "find-links"),
    (click.option("--index-url", metavar="URL", help="Passed to the installer."), "index-url"),
    (click.option("--offline", is_flag=True, default=None,
                  help="Passed to uv: no network, only its cache and local files."), "offline"),
    (click.option("--isolated", is_flag=True, default=None,
                  help="Ignore uv's configuration files (uv.toml, [tool.uv]), as 'uv --isolated' does."),
     "isolated"),
    (click.option("--lock", metavar="FILE", help="Install exactly the pins of this lock file "
                                                  "('launcher lock'); resolve nothing."), "lock"),
    (click.option("-p", "--python", "python", multiple=True, metavar="PYTHON",
                  help="An interpreter to prepare before launch: a path, a name on PATH or a venv "
                       "dir (repeatable)."), "python"),
    (click.option("--preload", multiple=True, metavar="LIB", shell_complete=_complete_preload,
                  help="A library to preload into every Python descendant: path, soname or "
                       "jemalloc/tcmalloc/asan (repeatable)."), "preload"),
    (click.option("--preload-scope", type=click.Choice(["python", "all"]),
                  help="Preload into Python descendants only (default) or into every process."),
     "preload-scope"),
    (click.option("--preload-missing", type=click.Choice(["reexec", "warn", "ignore"]),
                  help="What an interpreter not started through the shim (the wrapper that sets the "
                       "preloads) does (default reexec)."),
     "preload-missing"),
    (click.option("--cache-dir", metavar="DIR", help="Cache root (default: LAUNCHER_CACHE_DIR or the "
                                                       "user cache dir)."), "cache-dir"),
    (click.option("--build", type=click.Choice(BUILD_POLICIES),
                  help="Source builds of runtime packages: never, fallback (default: only when no "
                       "wheels satisfy the requirements) or always (let the installer choose)."),
     "build"),
    (click.option("--record", is_flag=True, default=None,
                  help="Record every interpreter start (ABI, tree, preloads mapped) for doctor."),
     "record"),
]
# click's parameter name -> config key ("with" is a keyword: click names it with_).
PARAM_TO_KEY = {("with_" if key == "with" else key.replace("-", "_")): key for _, key in RUNTIME_OPTIONS}


def runtime_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for decorator, _key in reversed(RUNTIME_OPTIONS):
        fn = decorator(fn)
    return fn


def runtime_options_saying(python_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`runtime_options` with --python described for this command (doctor checks
    interpreters, prewarm builds for them: run's wording would mislead)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = runtime_options(fn)
        for p in getattr(fn, "__click_params__", []):
            if p.name == "python":
                p.help = python_help
        return fn

    return decorate


def explicit_flags(ctx: click.Context, params: dict[str, Any]) -> dict[str, Any]:
    """Only the options the user actually gave (so env and file can fill the rest)."""
    out: dict[str, Any] = {}
    for name, key in PARAM_TO_KEY.items():
        if name not in params:
            continue
        if ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
            continue
        value = params[name]
        out[key] = list(value) if isinstance(value, tuple) else value
    return out
