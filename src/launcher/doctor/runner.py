"""`diagnose()`: run every check for a command and settings, and assemble the report.

The same inputs as `launcher run` (flags, the environment, the project
file, the command) go through the same pieces (`config.resolve`,
`spec.build_spec`, `command.analyse`, `probe.probe`), but nothing is built,
written or exec'd: doctor only reads (probes are cached like `run`'s).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from launcher import __version__
from launcher.cache import CacheLayout, writable_by_others
from launcher.config import Settings, cache_root, current_dir, resolve
from launcher.doctor.checks import (
    cache,
    environment,
    interpreters,
    preloads,
    records,
    startup,
    trees,
)
from launcher.doctor.checks.command import analyse_command
from launcher.doctor.context import Context, user_pythonpath
from launcher.doctor.models import Finding, Group, Report, fail, make_group, ok
from launcher.errors import UsageError
from launcher.spec import Spec, spec_for


def _guard(name: str, fn: Callable[[], list[Finding]]) -> list[Finding]:
    """A check that crashes becomes one failing finding, not a crashed doctor."""
    try:
        return fn()
    except Exception as exc:  # a bug in one check must not hide the others
        return [fail("launcher", f"doctor's {name} check failed unexpectedly: {type(exc).__name__}: {exc}",
                     "please report this with the output of `launcher doctor --json`",
                     details=traceback.format_exc().strip().splitlines()[-6:])]


def diagnose(command: Sequence[str] = (), flags: Mapping[str, Any] | None = None, *,
             environ: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None) -> Report:
    """What `launcher run [flags] COMMAND` would meet, as a report."""
    environ = dict(os.environ if environ is None else environ)
    workdir = Path(cwd) if cwd is not None else current_dir()
    launcher_f = [_identity()]
    ctx = _context(list(command), dict(flags or {}), environ, workdir, launcher_f)
    launcher_f.extend(_guard("installer", cache.installer_findings))

    pythonpath = user_pythonpath(ctx.environ, workdir)
    ctx.subjects = interpreters.collect(ctx.settings.python, ctx.sources.get("python", "command line"),
                                        ctx.command, workdir, ctx.environ.get("PATH"))
    with _probe_layout(ctx.layout) as probe_layout:
        for s in ctx.subjects:
            s.findings.extend(_guard("interpreter", partial(interpreters.identify, s, probe_layout)))
        python_exec = _guard("PYTHON_EXEC", partial(startup.python_exec_findings, ctx.environ, probe_layout))
    if ctx.spec is not None:
        ctx.spec = _job_spec(ctx)
    covered_trees: set[str] = set()
    covered_failures: set[Path] = set()
    for s in ctx.subjects:
        interp = s.interp
        if interp is None:
            continue
        s.findings.extend(_guard("start-up", partial(startup.interpreter_findings, interp, pythonpath)))
        s.findings.extend(_guard("environment", partial(environment.scan_environment, interp,
                                                        environment.environment_dirs(interp, pythonpath))))
        if ctx.spec is None:
            s.findings.append(ok("tree", "no runtime packages asked for (--with, --with-requirements or "
                                         "the project file): no runtime tree is needed"))
            continue
        covered_trees.add(ctx.layout.tree_name(interp.abi_key, ctx.spec.hash))
        covered_failures.add(ctx.layout.failure(interp.abi_key, ctx.spec.hash))
        s.findings.extend(_guard("runtime tree", partial(trees.tree_findings, ctx.layout, interp, ctx.spec,
                                                         ctx.settings.failure_ttl)))
        if ctx.settings.with_priority == "last":
            s.findings.extend(_guard("shadowed requirements", partial(trees.shadowed_findings, interp,
                                                                       ctx.spec)))

    cache_f = _guard("cache", lambda: cache.cache_findings(ctx.layout, ctx.settings.lock_timeout))
    if ctx.layout.trees.is_dir():
        cache_f += _guard("runtime trees", lambda: trees.cache_tree_findings(ctx.layout, covered_trees))
    if ctx.layout.failures.is_dir():
        cache_f += _guard("failures", lambda: trees.remembered_failures(ctx.layout, covered_failures,
                                                                         ctx.settings.failure_ttl, ctx.spec))
    cache_f += _guard("run records", lambda: records.record_findings(ctx.layout))

    groups: list[Group] = [
        make_group("launcher", f"launcher {__version__}", launcher_f),
        make_group("cache", f"cache and installer: {ctx.layout.root}", cache_f),
    ]
    if ctx.command is not None:
        groups.append(make_group("command", f"command: {shlex.join(ctx.command.argv)}", ctx.command.findings))
    groups.append(make_group("environment", "environment (PYTHONPATH and PYTHON* variables)",
                             _guard("environment", lambda: startup.environment_findings(ctx.environ, pythonpath))
                             + python_exec))
    pre = _guard("preloads", lambda: preloads.preload_findings(list(ctx.settings.preload), ctx.environ,
                                                               ctx.interpreters))
    if pre:
        groups.append(make_group("preloads", "preloads", pre))
    for s in ctx.subjects:
        title = s.path + (f" ({s.interp.label}, {s.interp.abi_key})" if s.interp else "")
        groups.append(make_group("interpreter", title, s.findings, interpreter=s.facts()))
    return Report.assemble(groups, launcher_version=__version__, cache_dir=str(ctx.layout.root),
                           command=ctx.command.facts() if ctx.command else None)


def _identity() -> Finding:
    import platform

    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or "unknown libc"
    except (ValueError, OSError, AttributeError):
        libc = "unknown libc"
    impl = platform.python_implementation()
    return ok("launcher", f"launcher {__version__} on {impl} {platform.python_version()} ({sys.executable}); "
                          f"{platform.system()} {os.uname().machine}, {libc}",
              version=__version__, python=sys.executable, machine=os.uname().machine, libc=libc)


def _context(command: list[str], flags: dict[str, Any], environ: dict[str, str], cwd: Path,
             out: list[Finding]) -> Context:
    try:
        resolved = resolve(flags, cwd=cwd, environ=environ)
        settings, sources, config_file = resolved.settings, resolved.sources, resolved.config_file
        where = f"the project file {config_file}" if config_file else "no project file"
        given = sorted(k for k, v in sources.items() if v != "default")
        out.append(ok("settings", f"settings: {where}; set: {', '.join(given) or 'nothing (defaults)'}",
                      config_file=str(config_file) if config_file else None,
                      sources={k: v for k, v in sources.items() if v != "default"}))
    except UsageError as exc:
        out.append(fail("settings", exc.message, exc.fix))
        try:
            settings = Settings.model_validate(flags)
        except Exception:
            raise exc from None
        sources, config_file = {k: "command line" for k in flags}, None
    layout = CacheLayout(cache_root(settings, environ))
    spec = None
    try:
        _, spec = spec_for(settings, cwd, environ)
    except UsageError as exc:
        out.append(fail("settings", exc.message, exc.fix))
    analysis = analyse_command(command, environ, cwd) if command else None
    return Context(environ=analysis.environ if analysis else environ, cwd=cwd, settings=settings,
                   sources=sources, config_file=config_file, layout=layout, spec=spec, command=analysis)


def _job_spec(ctx: Context) -> Spec | None:
    """The spec `launcher run` pinned for these interpreters (its lock's, or
    the resolution it remembered); doctor resolves nothing itself."""
    from launcher.resolve import remembered

    assert ctx.spec is not None
    abis = [s.interp.abi_key for s in ctx.subjects if s.interp is not None]
    if ctx.settings.lock is not None:
        from launcher.lockfile import read_lock

        try:
            return read_lock(Path(ctx.settings.lock)).answer_for(ctx.spec).apply(ctx.spec)
        except UsageError:
            return ctx.spec
    answer = remembered(ctx.layout, ctx.spec, abis, ctx.settings.build) if abis else None
    return answer.apply(ctx.spec) if answer is not None else ctx.spec


class _probe_layout:
    """The cache's probe store when the cache is usable; else a throwaway one
    (doctor must not create or write into a cache it is diagnosing)."""

    def __init__(self, layout: CacheLayout) -> None:
        self.layout = layout
        self.tmp: str | None = None

    def __enter__(self) -> CacheLayout:
        root = self.layout.root
        if root.is_dir() and os.access(root, os.W_OK | os.X_OK) and root.stat().st_uid == os.getuid() \
                and not writable_by_others(root):
            return self.layout
        self.tmp = tempfile.mkdtemp(prefix="launcher-doctor-")
        return CacheLayout(Path(self.tmp))

    def __exit__(self, *exc: object) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
