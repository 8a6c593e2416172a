"""How workers are started: `launcher.prepare()` of `python _worker.py`, with
cloudpickle added to the runtime, the environment policy applied, and the
project's own import paths (never the driver's stdlib or site-packages)."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.cache import safety
from launcher.executor._env import worker_environ

if TYPE_CHECKING:
    from launcher.config import Settings
    from launcher.plan import Prepared, PreparedInterpreter
    from launcher.probe import Interpreter

WORKER_SCRIPT = Path(__file__).with_name("_worker.py")
CLOUDPICKLE = "cloudpickle>=3"


@dataclass(frozen=True)
class WorkerCommand:
    """What every worker of one executor is started with."""

    argv: list[str]  # [python or its preload shim, _worker.py]; the mode and its args follow
    env: dict[str, str]
    cwd: str
    paths: list[str]  # the project's import paths, put first on the worker's sys.path
    interpreter: Interpreter
    prepared: Prepared

    @property
    def same_bytecode(self) -> bool:
        """Can code objects pickled here be loaded by the worker?"""
        mine = (sys.implementation.name, tuple(sys.version_info[:2]))
        theirs = (self.interpreter.implementation, tuple(self.interpreter.version_info[:2]))
        return mine == theirs


def with_cloudpickle(settings: Settings) -> Settings:
    """`settings` whose requirement set also holds cloudpickle (unless it already does)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    if any(canonicalize_name(Requirement(r).name) == "cloudpickle" for r in settings.with_):
        return settings
    return settings.model_copy(update={"with_": [*settings.with_, CLOUDPICKLE]})


def project_paths(cwd: str) -> list[str]:
    """The driver's script directory (when run as a script) and `cwd`: what a
    function of the user's project is importable from.  PYTHONPATH reaches the
    worker through its environment."""
    out = []
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main_file and getattr(main, "__spec__", None) is None:
        out.append(os.path.dirname(os.path.abspath(main_file)))
    out.append(os.path.abspath(cwd))
    return list(dict.fromkeys(out))


def worker_command(python: str | os.PathLike[str] | None, *, flags: Mapping[str, Any] | None,
                   settings: Settings | None, cwd: str | os.PathLike[str] | None,
                   environ: Mapping[str, str] | None, env_policy: str,
                   env_allow: Iterable[str]) -> WorkerCommand:
    from launcher.config import resolve
    from launcher.plan import prepare

    full = dict(os.environ if environ is None else environ)
    base = worker_environ(full, env_policy, env_allow)
    workdir = os.path.abspath(cwd if cwd is not None else os.getcwd())
    if settings is None:
        settings = resolve(dict(flags or {}), cwd=Path(workdir), environ=full).settings
    settings = with_cloudpickle(settings)
    exe = _interpreter(python, base.get("PATH"))
    prepared = prepare([exe, str(WORKER_SCRIPT)], settings=settings, cwd=workdir, environ=base)
    item = _find(prepared, exe)
    return WorkerCommand(argv=list(prepared.argv), env=dict(prepared.env), cwd=workdir,
                         paths=project_paths(workdir), interpreter=item.interpreter,
                         prepared=prepared)


def _interpreter(python: str | os.PathLike[str] | None, path: str | None) -> str:
    """`python` as an absolute path: a bare name (`python3.13`) is looked up on PATH."""
    if python is None:
        return sys.executable
    name = os.fspath(python)
    if os.sep in name:
        return os.path.abspath(name)
    import shutil

    from launcher.errors import CommandNotFound

    found = shutil.which(name, path=path)
    if found is None:
        raise CommandNotFound(f"command not found: {name}", fix="pass the interpreter's path")
    return os.path.abspath(found)


def _find(prepared: Prepared, exe: str) -> PreparedInterpreter:
    if not prepared.interpreters:
        from launcher.errors import UsageError

        raise UsageError(f"{exe} is not a Python interpreter", fix="pass the path or name of a python")
    for item in prepared.interpreters:
        if item.interpreter.executable == exe:
            return item
    real = os.path.realpath(exe)
    for item in prepared.interpreters:
        if item.interpreter.realpath == real:
            return item
    return prepared.interpreters[-1]


def private_dir(root: Path, name: str) -> Path:
    """A fresh 0700 directory under `root/name` (itself 0700, ours, not a
    symlink).  Anything else there is one LauncherError naming the path."""
    from launcher.errors import LauncherError

    parent = root / name
    fix = "remove it (the launcher recreates it, private to you)"
    try:
        try:
            parent.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            pass  # a directory (checked below) or something else (refused below)
        st = os.lstat(parent)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise LauncherError(f"{parent} is not a directory", fix=fix)
        if st.st_uid != os.getuid():
            raise LauncherError(f"{parent} belongs to another user (uid {st.st_uid})", fix=fix)
        if st.st_mode & 0o077:
            os.chmod(parent, 0o700, follow_symlinks=False)
        _sweep(parent)
        return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise LauncherError(f"{exc.filename or parent}: {exc.strerror or exc}", fix=fix) from None


def _sweep(parent: Path) -> None:
    """Remove what drivers that were killed left behind (`<pid>-*` of a pid
    that no longer runs); a pid that runs again is left alone."""
    import psutil

    for entry in os.scandir(parent):
        pid = entry.name.split("-", 1)[0]
        if pid.isdigit() and entry.is_dir(follow_symlinks=False) and not psutil.pid_exists(int(pid)):
            safety.remove(Path(entry.path))


def argv_for(cmd: WorkerCommand, mode: str, args: Sequence[object]) -> list[str]:
    return [*cmd.argv, mode, *map(str, args)]
