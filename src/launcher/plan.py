"""From a command and settings to what will be exec'd: `prepare()`.

This is the one code path behind `launcher run`, `launcher prewarm` and the
Python API: resolve settings, validate input, probe the interpreters the
launcher can see, ensure their runtime trees, write the bootstrap dir and
shims, and compute the environment and argv.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher import execute
from launcher.bootstrap import ensure_bootstrap
from launcher.cache import CacheLayout, default_cache_dir
from launcher.command import CommandTarget, analyse
from launcher.config import Resolved, Settings, resolve
from launcher.errors import BuildError, CommandNotExecutable, CommandNotFound
from launcher.probe import Interpreter, probe
from launcher.spec import Spec, build_spec


@dataclass(frozen=True)
class PreparedInterpreter:
    interpreter: Interpreter
    tree: Path | None
    state: str  # "present" | "built" | "rebuilt" | "failed" | "no-spec"
    error: str | None = None
    shim: str | None = None


@dataclass
class Prepared:
    """What `launcher run` would exec: `argv` with `env`."""

    argv: list[str]
    env: dict[str, str]
    settings: Settings
    spec: Spec | None
    layout: CacheLayout
    bootstrap: Path
    target: CommandTarget | None
    interpreters: list[PreparedInterpreter] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    watch: list[str] = field(default_factory=list)
    ours: dict[str, str] = field(default_factory=dict)
    ld_preload: str | None = None

    @property
    def run_id(self) -> str:
        return self.env["LAUNCHER_RUN_ID"]

    def exec(self) -> int:
        """Replace this process with the command (returns only on failure: 126/127)."""
        return execute.exec_command(self.argv, self.env)

    def popen(self, **kwargs: Any) -> subprocess.Popen[Any]:
        """Start the command as a child, the launcher way."""
        return subprocess.Popen(self.argv, env=self.env, **kwargs)


def prepare(
    command: Sequence[str] = (),
    *,
    settings: Settings | None = None,
    flags: Mapping[str, Any] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    build: bool = True,
    say: Any = None,
    verbose: bool = False,
) -> Prepared:
    """Prepare `command` the way `launcher run` does.

    `flags` are settings given explicitly (keys as in config files, e.g.
    ``{"with": ["markupsafe"], "offline": True}``) and win over the
    environment and the project file; or pass a ready `settings`.
    """
    environ = dict(os.environ if environ is None else environ)
    workdir = Path(cwd) if cwd is not None else Path.cwd()
    resolved: Resolved
    if settings is None:
        resolved = resolve(dict(flags or {}), cwd=workdir, environ=environ)
        settings = resolved.settings
    else:
        resolved = Resolved(settings=settings)
    say = say or (lambda msg: None)

    cache_root = Path(settings.cache_dir).expanduser() if settings.cache_dir else (
        Path(environ["LAUNCHER_CACHE_DIR"]).expanduser() if environ.get("LAUNCHER_CACHE_DIR")
        else default_cache_dir())
    layout = CacheLayout(cache_root.absolute())
    spec = build_spec(settings.with_, [workdir / p for p in settings.with_requirements],
                      [str(workdir / p) if "://" not in p else p for p in settings.find_links],
                      settings.index_url, settings.offline)

    argv = list(command)
    target = None
    if argv:
        target = analyse(argv, environ.get("PATH"))
        if target.resolved is None:
            raise CommandNotFound(f"command not found: {argv[0]}")
        if os.path.isdir(target.resolved) or not os.access(target.resolved, os.X_OK):
            raise CommandNotExecutable(f"permission denied: {argv[0]} is not executable")

    # Preload libraries are checked before anything is built or run.
    libs = []
    if settings.preload:
        from launcher import preload

        libs = preload.resolve(settings.preload, bits=64 if sys.maxsize > 2**32 else 32,
                               machine=os.uname().machine)

    layout.ensure()
    boot = ensure_bootstrap(layout)
    gate = str(boot / "sitecustomize.py")
    # The launcher's own files too: after an upgrade (or an edit of an
    # editable install) the warm path must not reuse a plan from the old one.
    import launcher as _self
    from launcher.bootstrap import GATE_SOURCE

    watch = [gate, str(GATE_SOURCE), str(Path(_self.__file__)), str(Path(__file__))]
    watch.append(str(boot / "_launcher_preloads.py"))  # the gate's on-demand part (preloads)
    if resolved.config_file is not None:
        watch.append(str(resolved.config_file))
    if spec is not None:
        spec.save(layout)
        watch.append(str(layout.spec_file(spec.hash)))

    wanted: list[str] = [str(Path(p).expanduser().absolute()) for p in settings.python]
    if target is not None and target.interpreter:
        wanted.append(target.interpreter)
    prepared_interps: list[PreparedInterpreter] = []
    warnings: list[str] = []
    run_id = environ.get("LAUNCHER_RUN_ID") or execute.new_run_id()
    shim_dir = None
    if libs and settings.preload_scope == "python":
        shim_dir = layout.shims / _preload_digest([lib.path for lib in libs])
    for path in dict.fromkeys(wanted):
        interp = probe(path, layout, compile_gate=gate)
        watch.append(path)
        shim = None
        if shim_dir is not None:
            from launcher.gate._launcher_preloads import write_shim

            shim = write_shim(str(shim_dir), interp.executable, [lib.path for lib in libs])
            watch.append(shim)
        if spec is None:
            prepared_interps.append(PreparedInterpreter(interp, None, "no-spec", shim=shim))
            continue
        if not build:
            prepared_interps.append(PreparedInterpreter(interp, layout.tree(interp.abi_key, spec.hash),
                                                        "unbuilt", shim=shim))
            continue
        from launcher.tree import MANIFEST, ensure_tree

        try:
            result = ensure_tree(layout, interp, spec, run_id=run_id, requested_by="launcher",
                                 lock_timeout=settings.lock_timeout, failure_ttl=settings.failure_ttl)
        except BuildError as exc:
            msg = (f"could not build the runtime for {interp.abi_key} ({exc.message}); "
                   "the command runs without it. Run 'launcher doctor' for details.")
            warnings.append(msg)
            say(msg)
            prepared_interps.append(PreparedInterpreter(interp, None, "failed", exc.message, shim=shim))
            continue
        if result.state != "present" and verbose:
            say(f"{result.state} runtime {result.path.name} ({len(result.manifest.distributions)} "
                f"package(s)) in {result.manifest.build_seconds:.1f}s")
        watch.append(str(result.path / MANIFEST))
        watch.extend(str(result.path / f.path) for f in result.manifest.files)
        # `launcher cache` reports (and prunes by) this "last used" stamp.
        from launcher.cache.manage import mark_used

        mark_used(layout, result.path)
        prepared_interps.append(PreparedInterpreter(interp, result.path, result.state, shim=shim))

    ours = {
        "LAUNCHER_BOOTSTRAP": str(boot),
        "LAUNCHER_CACHE_DIR": str(layout.root),
        "LAUNCHER_SELF_PYTHON": sys.executable,
        "LAUNCHER_FAILURE_TTL": f"{settings.failure_ttl:g}",
    }
    if spec is not None:
        ours["LAUNCHER_SPEC"] = spec.hash
    if settings.with_priority != "last":
        ours["LAUNCHER_PRIORITY"] = settings.with_priority
    if settings.record:
        ours["LAUNCHER_RECORD"] = "1"
    ld_preload = None
    if libs:
        ours["LAUNCHER_PRELOAD_LIBS"] = ":".join(lib.path for lib in libs)
        ours["LAUNCHER_PRELOAD_SCOPE"] = settings.preload_scope
        if shim_dir is not None:
            ours["LAUNCHER_SHIM_DIR"] = str(shim_dir)
            ours["LAUNCHER_PRELOAD_MISSING"] = settings.preload_missing
        else:
            ld_preload = ":".join(lib.path for lib in libs)

    exec_argv = list(argv)
    if target is not None and argv:
        # Match by the path that was probed, not by the probe's sys.executable:
        # a wrapper (pyenv's `python3` shim) reports the python it execs.
        by_path = dict(zip(dict.fromkeys(wanted), prepared_interps, strict=True))
        top = by_path.get(target.interpreter or "")
        if top is not None and top.shim:
            # Start the top process through its shim too: a python, or a
            # Python entry-point script (torchrun's agent gets preloads).
            exec_argv = [top.shim, *argv[1:]] if target.kind == "python" else \
                [top.shim, *target.flags, target.resolved or argv[0], *argv[1:]]
    env = execute.child_env(environ, ours, ld_preload)
    env["LAUNCHER_RUN_ID"] = run_id
    return Prepared(argv=exec_argv, env=env, settings=settings, spec=spec, layout=layout,
                    bootstrap=boot, target=target, interpreters=prepared_interps,
                    warnings=warnings, watch=watch, ours=ours, ld_preload=ld_preload)


def _preload_digest(paths: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\0".join(paths).encode()).hexdigest()[:12]
