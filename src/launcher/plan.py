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
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher import execute
from launcher.bootstrap import ensure_bootstrap
from launcher.cache import CacheLayout
from launcher.command import CommandTarget, analyse, path_candidates
from launcher.config import Resolved, Settings, cache_root, resolve
from launcher.errors import BuildError, CommandNotExecutable, CommandNotFound, UsageError
from launcher.probe import Interpreter, interpreter_path, probe
from launcher.spec import RequirementFiles, Spec, spec_for

if TYPE_CHECKING:
    from launcher.preload import Library
    from launcher.resolve import JobPins


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
    notes: list[str] = field(default_factory=list)  # for -v: e.g. requirements the venv shadows
    watch: list[str] = field(default_factory=list)
    # Published trees the warm path re-checks by their directories' signature
    # (O(directories), not O(files)); `watch` holds plain files only.
    watch_trees: list[str] = field(default_factory=list)
    ours: dict[str, str] = field(default_factory=dict)
    ld_preload: str | None = None
    # False when the cache could not take a write (read-only, full): nothing
    # more is written for this run (no memo).
    cache_writable: bool = True

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
    say: Callable[[str], None] | None = None,
    verbose: bool = False,
    activity: Callable[[str], AbstractContextManager[object]] | None = None,
    note: Callable[[str], None] | None = None,
    refresh: bool = False,
    pins: JobPins | None = None,
    quiet: bool = False,
) -> Prepared:
    """Prepare `command` the way `launcher run` does.

    `flags` are settings given explicitly (keys as in config files, e.g.
    ``{"with": ["markupsafe"], "offline": True}``) and win over the
    environment and the project file; or pass a ready `settings`.

    A cache that cannot be written (read-only, full, over quota) never stops
    the command: what it holds is used, what is missing costs one line in
    `warnings` (also passed to `say`), and the command runs without it.
    `activity(text)` wraps each build (see `launcher.progress`); `note` gets
    one-line notes said while building (default: `say`), e.g. that no wheels
    fit and a package is compiled; `verbose` also says each runtime built and
    how long it took.

    The interpreters the launch knows are resolved together (launcher.resolve):
    one version per package wherever every ABI can have it; a requirement
    nothing answers raises ResolutionError before anything runs.  `refresh`
    resolves again and forgets remembered build failures; `pins` given
    (resolved for a larger set of interpreters: prewarm) are used as they are.
    `quiet` (run -q) is carried to the command's
    interpreters: a runtime their gate builds says nothing unless it fails.
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

    inputs = _read_inputs(list(command), settings, workdir, environ)
    store = _open_cache(inputs)
    boot = store.bootstrap()
    if boot is None:
        msg = (f"cannot write the launcher's cache {inputs.layout.root} ({store.problem}); the command runs "
               "without the launcher (no runtime packages, no preloads). Make it writable (free space), "
               "or set LAUNCHER_CACHE_DIR.")
        say(msg)
        return Prepared(argv=list(command), env=dict(environ), settings=settings, spec=inputs.spec,
                        layout=inputs.layout, bootstrap=inputs.layout.bootstrap, target=inputs.target,
                        warnings=[msg], cache_writable=False)
    watch = _watch_list(boot, resolved, inputs, store)
    run_id = environ.get("LAUNCHER_RUN_ID") or execute.new_run_id()
    wanted = _wanted_interpreters(settings, inputs, workdir, environ.get("PATH"), watch)
    out = _Outcome(say=say, watch=watch, note=note or say, activity=activity, built=say if verbose else None)
    probed = [_probe_interpreter(path, inputs, store, boot, out) for path in dict.fromkeys(wanted)]
    spec, unresolved = inputs.spec, dict[str, BuildError]()
    if spec is not None and (build or pins is not None) and probed:
        spec, unresolved = _pin(spec, [i for i, _ in probed], settings, store, out, refresh=refresh, given=pins)
        if spec.pins:
            # The pinned spec is the one the gate loads: watched instead of the unpinned one.
            store.write(spec.save, inputs.layout)
            base_file = str(inputs.layout.spec_file(spec.base.hash))
            out.watch[:] = [w for w in out.watch if w != base_file]
            out.watch.append(str(inputs.layout.spec_file(spec.hash)))
        inputs = replace(inputs, spec=spec)
    for interp, shim in probed:
        _prepare_interpreter(interp, shim, spec, settings, store, run_id, out, build=build,
                             unresolved=unresolved.get(interp.abi_key))
    libs, shim_dir = inputs.libs, inputs.shim_dir
    if out.shims_missing:
        # Without its shim an interpreter's gate would re-exec, fail to write
        # one too and say so again: this run has no preloads, said once.
        out.warn(f"cannot write the preload shims in {shim_dir} ({store.problem}); the command runs "
                 "without its preloads")
        libs, shim_dir = [], None
        out.interpreters = [replace(pi, shim=None) for pi in out.interpreters]
    ours = _our_variables(boot, inputs.layout, inputs.spec, settings, libs, shim_dir,
                          record=settings.record and store.writable, quiet=quiet)
    failed = [pi.interpreter.abi_key for pi in out.interpreters if pi.state == "failed"]
    if failed:
        # The gate of those interpreters stays quiet: one failure, one line.
        ours["LAUNCHER_REPORTED"] = ",".join(dict.fromkeys(failed))
    ld_preload = ":".join(lib.path for lib in libs) if libs and shim_dir is None else None

    exec_argv = _through_shim(list(command), inputs.target, wanted, out.interpreters)
    env = execute.child_env(environ, ours, ld_preload)
    env["LAUNCHER_RUN_ID"] = run_id
    return Prepared(argv=exec_argv, env=env, settings=settings, spec=inputs.spec, layout=inputs.layout,
                    bootstrap=boot, target=inputs.target, interpreters=out.interpreters,
                    warnings=out.warnings, notes=out.notes, watch=out.watch, watch_trees=out.watch_trees,
                    ours=ours, ld_preload=ld_preload, cache_writable=store.problem is None)


@dataclass(frozen=True)
class _Inputs:
    """What the settings and the command ask for, validated before anything runs."""

    layout: CacheLayout
    requirement_files: RequirementFiles
    spec: Spec | None
    target: CommandTarget | None
    libs: list[Library]
    shim_dir: Path | None
    uv_files: tuple[str, ...] = ()  # where uv looks for its configuration (found or not)


@dataclass
class _Outcome:
    """What preparing each interpreter adds up to, and who hears of it."""

    say: Callable[[str], None]
    watch: list[str]
    note: Callable[[str], None]  # a one-line note while building (e.g. compiling from source)
    activity: Callable[[str], AbstractContextManager[object]] | None  # wraps each build
    built: Callable[[str], None] | None  # "built runtime X in Ns", or None to stay quiet
    interpreters: list[PreparedInterpreter] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    watch_trees: list[str] = field(default_factory=list)
    shims_missing: bool = False

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)
        self.say(msg)


def _read_inputs(command: list[str], settings: Settings, workdir: Path, environ: Mapping[str, str]) -> _Inputs:
    layout = CacheLayout(_cache_root(settings, environ))
    req_files, spec = spec_for(settings, workdir, environ)
    target = _check_command(command, environ)
    # Preload libraries are checked before anything is built or run.
    libs = []
    if settings.preload:
        from launcher import preload

        libs = preload.resolve(settings.preload, bits=64 if sys.maxsize > 2**32 else 32,
                               machine=os.uname().machine)
    shim_dir = None
    if libs and settings.preload_scope == "python":
        shim_dir = layout.shims / _preload_digest([lib.path for lib in libs])
    uv_files: tuple[str, ...] = ()
    if spec is not None:
        from launcher.spec import uv_configuration

        uv_files = uv_configuration(settings, workdir, environ).files
    return _Inputs(layout, req_files, spec, target, libs, shim_dir, uv_files)


def _open_cache(inputs: _Inputs) -> _Store:
    """Refuse (exit 2) before anything runs unless the cache is safe to run
    code from -- a read-only one included, which is then never written."""
    from launcher import bootstrap
    from launcher.cache import safety

    layout = inputs.layout
    code_dirs = bootstrap.code_dirs(layout) + ((inputs.shim_dir,) if inputs.shim_dir is not None else ())
    safety.check(layout, extra=code_dirs)
    return _Store(layout, code_dirs)


def _watch_list(boot: Path, resolved: Resolved, inputs: _Inputs, store: _Store) -> list[str]:
    """Every file whose change (or appearance) would change the plan: what the
    warm path re-checks before it reuses it."""
    # The launcher's own files too: after an upgrade (or an edit of an
    # editable install) the warm path must not reuse a plan from the old one.
    import launcher as _self
    from launcher.bootstrap import GATE_FILES, GATE_SOURCE

    watch = [str(boot / "sitecustomize.py"), str(GATE_SOURCE), str(Path(_self.__file__)), str(Path(__file__))]
    # The code directories themselves (owner, mode, inode, mtime): a chmod,
    # a planted or swapped file sends the next run down the full path, which
    # holds them to the trust rule again.  The shim dir is added with its shims.
    watch.extend(str(d) for d in store.code_dirs if d.parent != inputs.layout.shims)
    watch.extend(str(boot / f.name) for f in GATE_FILES[1:])  # the gate's on-demand parts
    # Every place config discovery looked (found or not) and every
    # requirements file read: an edit, or a file appearing, changes the plan.
    watch.extend(str(p) for p in resolved.examined)
    if resolved.config_file is not None and resolved.config_file not in resolved.examined:
        watch.append(str(resolved.config_file))
    watch.extend(str(p) for p in inputs.requirement_files.files)
    # A uv.toml appearing or edited: another index, another tree.
    watch.extend(p for p in inputs.uv_files if p not in watch)
    if inputs.target is not None:
        watch.extend(inputs.target.looked)  # a `python3` appearing earlier on PATH
    watch.extend(lib.path for lib in inputs.libs)  # a preload library removed or replaced
    if inputs.spec is not None:
        store.write(inputs.spec.save, inputs.layout)
        watch.append(str(inputs.layout.spec_file(inputs.spec.hash)))
    return watch


def _wanted_interpreters(settings: Settings, inputs: _Inputs, workdir: Path, search_path: str | None,
                         watch: list[str]) -> list[str]:
    """Every --python, then the command's own interpreter (when it names one)."""
    wanted = []
    for given in settings.python:
        exe = interpreter_path(given, cwd=workdir, search_path=search_path)
        if os.path.basename(exe) == given:
            # Looked up on PATH (`--python python3.13`), as argv[0] is: one
            # appearing earlier on PATH changes the plan.
            watch.extend(path_candidates(given, search_path, exe))
        wanted.append(exe)
    if inputs.target is not None and inputs.target.interpreter:
        wanted.append(inputs.target.interpreter)
    return wanted


def _probe_interpreter(path: str, inputs: _Inputs, store: _Store, boot: Path,
                       out: _Outcome) -> tuple[Interpreter, str | None]:
    """Probe one interpreter and write its shim."""
    interp = probe(path, inputs.layout, compile_gate=str(boot / "sitecustomize.py") if store.writable else None,
                   save=store.writable)
    out.watch.append(path)
    shim = None
    if inputs.shim_dir is not None:
        shim = store.write(_write_shim, inputs.layout, inputs.shim_dir, interp.executable,
                           [lib.path for lib in inputs.libs])
        if shim is None:
            out.shims_missing = True
        else:
            out.watch.extend((str(inputs.shim_dir), shim))
    return interp, shim


def _prepare_interpreter(interp: Interpreter, shim: str | None, spec: Spec | None, settings: Settings,
                         store: _Store, run_id: str, out: _Outcome, *, build: bool,
                         unresolved: BuildError | None = None) -> None:
    """Ensure one interpreter's runtime tree (`unresolved`: why it has no pins, so none is built)."""
    layout = store.layout
    if spec is None:
        out.interpreters.append(PreparedInterpreter(interp, None, "no-spec", shim=shim))
        return
    if settings.with_priority == "last":
        from launcher.shadow import shadowed

        out.notes.extend(s.line(interp) for s in shadowed(interp, spec.requirements))
    if not build:
        out.interpreters.append(PreparedInterpreter(interp, layout.tree(interp.abi_key, spec.hash), "unbuilt",
                                                    shim=shim))
        return
    if unresolved is not None:
        from launcher.tree import remember_failed

        store.write(partial(remember_failed, run_id=run_id), layout, interp, spec, unresolved)
        pi = PreparedInterpreter(interp, None, "failed", unresolved.message, shim=shim)
    else:
        pi = _ensure_tree(store, interp, spec, settings, run_id, shim, out)
    if pi.error is not None and unresolved is None:
        out.warn(f"could not build the runtime for {interp.abi_key} ({pi.error}); "
                 "the command runs without it. Run 'launcher doctor' for details.")
    elif pi.tree is not None:
        from launcher.tree import MANIFEST

        out.watch.append(str(pi.tree / MANIFEST))
        out.watch_trees.append(str(pi.tree))
    out.interpreters.append(pi)


def job_pins(spec: Spec, interps: Sequence[Interpreter], settings: Settings, layout: CacheLayout, *,
             refresh: bool = False, writable: bool = True) -> JobPins:
    """The job's pins for every known interpreter: the lock's when the
    settings name one, else the remembered resolution, else one made now
    (remembered when the cache is `writable`).  A requirement nothing
    answers raises ResolutionError (exit 2); a stale lock, LockMismatch."""
    from launcher import resolve

    abis = [i.abi_key for i in interps]
    if refresh:
        resolve.forget(layout, spec, abis, settings.build)
        _forget_failures(layout)
    if settings.lock is not None:
        from launcher.lockfile import read_lock

        return read_lock(Path(settings.lock)).answer_for(spec)
    answer = None if refresh else resolve.remembered(layout, spec, abis, settings.build)
    if answer is None:
        from launcher.uvbin import find_uv

        try:
            uv = find_uv()
        except BuildError as exc:
            return resolve.JobPins(failed={a: exc for a in abis})
        answer = resolve.resolve_job(uv, interps, spec, settings.build)
        if writable:
            resolve.remember(layout, spec, abis, settings.build, answer)
    return answer


def _pin(spec: Spec, interps: list[Interpreter], settings: Settings, store: _Store, out: _Outcome,
         *, refresh: bool, given: JobPins | None) -> tuple[Spec, dict[str, BuildError]]:
    """The pinned spec, and the ABIs that got no pins, with why; each line
    said once (`given` pins were said by whoever resolved them)."""
    answer = given if given is not None else \
        job_pins(spec, interps, settings, store.layout, refresh=refresh, writable=store.writable)
    if settings.lock is not None:
        out.watch.append(settings.lock)
    if given is None:
        for line in answer.lines:
            out.warn(line)
    failed = {abi: exc for abi, exc in answer.failed.items() if abi in {i.abi_key for i in interps}}
    by_reason: dict[str, list[str]] = {}
    for abi, exc in failed.items():
        by_reason.setdefault(exc.message, []).append(abi)
    for why, abis in by_reason.items():  # an unreachable index fails every ABI alike: one line
        out.warn(f"could not build the runtime for {', '.join(abis)} ({why}); the command runs without it. "
                 "Run 'launcher doctor' for details.")
    return answer.apply(spec), failed


def _forget_failures(layout: CacheLayout) -> None:
    """`--refresh`: every remembered build failure is tried again."""
    from launcher.cache import safety

    try:
        with safety.opened(layout.root, "failures") as failures:
            for name in os.listdir(failures):
                if name.endswith(".json"):
                    try:
                        os.unlink(name, dir_fd=failures)
                    except OSError:
                        pass
    except (OSError, safety.UntrustedCache):
        return  # none yet, or not ours to clear: nothing is forgotten through a link


def _cache_root(settings: Settings, environ: Mapping[str, str]) -> Path:
    from launcher.cache import safety

    root = cache_root(settings, environ)
    odd = safety.name_problem(root)
    if odd is not None:
        raise UsageError(f"cache dir {odd.path} {odd.what}", fix=odd.fix)
    return root


def _write_shim(layout: CacheLayout, shim_dir: Path, real: str, preloads: list[str]) -> str:
    """The shim for `real` in `shim_dir`, which is made here (0755 whatever the
    umask, through checked components) before the gate's writer fills it."""
    from launcher.cache import safety
    from launcher.gate._launcher_preloads import write_shim

    if not safety.real_dir(shim_dir):
        os.close(safety.open_dir(layout.root, "shims", shim_dir.name, create=True, mode=safety.SHARED_MODE))
    path: str = write_shim(str(shim_dir), real, preloads)
    return path


def _check_command(argv: list[str], environ: Mapping[str, str]) -> CommandTarget | None:
    """127/126 are decided before anything is prepared."""
    if not argv:
        return None
    target = analyse(argv, environ.get("PATH"))
    if target.resolved is None:
        raise CommandNotFound(f"command not found: {argv[0]}")
    if os.path.isdir(target.resolved):
        raise CommandNotExecutable(f"{argv[0]} is a directory, not a command")
    if not os.access(target.resolved, os.X_OK):
        raise CommandNotExecutable(f"permission denied: {argv[0]} is not executable")
    return target


class _Store:
    """Writes into the cache, each best effort: a read-only, full or
    over-quota cache degrades the plan, it never stops the command."""

    def __init__(self, layout: CacheLayout, code_dirs: tuple[Path, ...]) -> None:
        from launcher.cache.layout import read_only

        self.layout = layout
        self.code_dirs = code_dirs
        self.writable = not read_only(layout.root)
        self.problem: str | None = None if self.writable else "read-only"

    def write(self, fn: Any, *args: Any) -> Any:
        """fn(*args), or None when the cache cannot take it.  Tried even on a
        read-only cache: these writers first read, and write nothing when the
        cache already holds what they would write (a prewarmed spec or shim)."""
        try:
            return fn(*args)
        except OSError as exc:
            self.problem = self.problem or (exc.strerror or str(exc))
            return None

    def bootstrap(self) -> Path | None:
        """The gate's dir: written when it can be, else the one already there."""
        from launcher.bootstrap import bootstrap_dir

        if self.writable:
            try:
                self.layout.ensure(extra=self.code_dirs)
            except OSError as exc:  # full, over quota, read-only (any other reason is a UsageError)
                self.writable, self.problem = False, exc.strerror or str(exc)
        if self.writable:
            boot: Path | None = self.write(ensure_bootstrap, self.layout)
            if boot is not None:
                return boot
        existing = bootstrap_dir(self.layout)
        return existing if (existing / "sitecustomize.py").is_file() else None


def _ensure_tree(store: _Store, interp: Interpreter, spec: Spec, settings: Settings, run_id: str,
                 shim: str | None, out: _Outcome) -> PreparedInterpreter:
    from launcher.tree import ensure_tree, present_tree

    layout = store.layout
    if not store.writable:
        present = present_tree(layout, interp, spec)
        if present is None:
            return PreparedInterpreter(interp, None, "failed", "it is not in the read-only cache "
                                       f"{layout.root}; prewarm it where the cache is writable", shim=shim)
        return PreparedInterpreter(interp, present.path, "present", shim=shim)
    try:
        result = ensure_tree(layout, interp, spec, run_id=run_id, requested_by="launcher",
                             lock_timeout=settings.lock_timeout, failure_ttl=settings.failure_ttl,
                             build=settings.build, say=out.note, activity=out.activity)
    except BuildError as exc:
        return PreparedInterpreter(interp, None, "failed", exc.message, shim=shim)
    if result.state != "present" and out.built is not None:
        from launcher.progress import built_line

        out.built(built_line(result))
    # `launcher cache` reports (and prunes by) this "last used" stamp.
    from launcher.cache.manage import mark_used

    mark_used(layout, result.path)
    return PreparedInterpreter(interp, result.path, result.state, shim=shim)


def _our_variables(boot: Path, layout: CacheLayout, spec: Spec | None, settings: Settings,
                   libs: list[Library], shim_dir: Path | None, *, record: bool,
                   quiet: bool = False) -> dict[str, str]:
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
    if record:  # not into a read-only cache
        ours["LAUNCHER_RECORD"] = "1"
    if quiet:  # the gate's builds show no progress either
        ours["LAUNCHER_QUIET"] = "1"
    if settings.build != "fallback":
        ours["LAUNCHER_BUILD"] = settings.build  # for the gate's in-process builds
    if libs:
        ours["LAUNCHER_PRELOAD_LIBS"] = ":".join(lib.path for lib in libs)
        ours["LAUNCHER_PRELOAD_SCOPE"] = settings.preload_scope
        if shim_dir is not None:
            ours["LAUNCHER_SHIM_DIR"] = str(shim_dir)
            ours["LAUNCHER_PRELOAD_MISSING"] = settings.preload_missing
    return ours


def _through_shim(argv: list[str], target: CommandTarget | None, wanted: list[str],
                  prepared: list[PreparedInterpreter]) -> list[str]:
    if target is None or not argv:
        return argv
    # Match by the path that was probed, not by the probe's sys.executable:
    # a wrapper (pyenv's `python3` shim) reports the python it execs.
    by_path = dict(zip(dict.fromkeys(wanted), prepared, strict=True))
    top = by_path.get(target.interpreter or "")
    if top is None or not top.shim:
        return argv
    # Start the top process through its shim too: a python, or a Python
    # entry-point script (torchrun's agent gets preloads).
    return [top.shim, *argv[1:]] if target.kind == "python" else \
        [top.shim, *target.flags, target.resolved or argv[0], *argv[1:]]


def _preload_digest(paths: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\0".join(paths).encode()).hexdigest()[:12]
