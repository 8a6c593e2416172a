"""Replicas: N processes running one entrypoint, each with its rank.

`ServerlessExecutor` is the backend-neutral contract a scheduler programs
against, exactly as the seed's Protocol spells it (`launcher.ray` implements
it on a Ray cluster); `LocalReplicaExecutor` implements it with processes
started the launcher way (`launcher.prepare()`: runtime tree, gate, preloads)
on any interpreter.

Each replica is the leader of its own process group, so `cancel` (and the
end of a replica) ends everything it started; its stdout and stderr go to a
log file per rank, which `stream_logs` reads while it runs and after.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from launcher.cache import safety
from launcher.executor import _protocol as P
from launcher.executor._driver import exit_status
from launcher.executor._pickling import dumps_for
from launcher.executor._start import WorkerCommand, argv_for, private_dir, worker_command

if TYPE_CHECKING:
    from launcher.config import Settings

Status = Literal["pending", "running", "succeeded", "failed", "cancelled"]


@dataclass
class ReplicaHandle:
    """One launched replica.  `metadata` is the backend's own (here the launch
    it belongs to and the replica's pid once started); do not rely on its shape."""

    rank: int
    backend_name: str
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ServerlessExecutor(Protocol):
    """Start N replicas of an entrypoint and follow them: the seed's Protocol."""

    backend_name: str
    supports_inter_replica_network: bool

    def launch_replicas(self, n_replicas: int, entrypoint: str | Callable[..., Any],
                        entrypoint_args: Mapping[str, Any], *, gpu: str | None = None,
                        timeout: int = 3600) -> list[ReplicaHandle]:
        """Start the replicas; handles in rank order.  `entrypoint` is a
        callable or a dotted path ``"pkg.mod.func"``; `entrypoint_args` are its
        keyword arguments, except ``rank_env``, which names the variable that
        holds each replica's rank (default ``REPLICA_RANK``)."""
        ...

    def poll(self, handle: ReplicaHandle) -> str:
        """"pending" | "running" | "succeeded" | "failed" | "cancelled"."""
        ...

    def stream_logs(self, handle: ReplicaHandle, *, n_lines: int = 200) -> str:
        """The last `n_lines` lines the replica printed (stdout and stderr)."""
        ...

    def cancel(self, handle: ReplicaHandle) -> None:
        """Best effort; nothing happens (and nothing is raised) for a finished replica."""
        ...

    def collect(self, handles: list[ReplicaHandle], *,
                timeout: int | None = None) -> list[dict[str, Any]]:
        """Wait for the replicas; one dict per rank with at least `rank`,
        `status`, `exit_code`, `error` and `result`."""
        ...


# The name this module used before it followed the seed's spelling.
ReplicaExecutor = ServerlessExecutor


def keyword_args(entrypoint_args: object, rank_env: str) -> tuple[dict[str, Any], str]:
    """The entrypoint's keyword arguments and the rank variable's name, out of
    `entrypoint_args` (a Mapping whose ``rank_env`` key, if any, is ours)."""
    if not isinstance(entrypoint_args, Mapping):
        raise TypeError(
            f"entrypoint_args must be a Mapping of keyword arguments for the entrypoint, not "
            f"{type(entrypoint_args).__name__} {entrypoint_args!r}: pass {{'name': value, ...}}")
    kwargs = dict(entrypoint_args)
    name = kwargs.pop("rank_env", rank_env)
    if not isinstance(name, str) or not name or "=" in name:
        raise ValueError(f"entrypoint_args['rank_env'] must name an environment variable, not {name!r}")
    if not all(isinstance(k, str) for k in kwargs):
        raise TypeError("entrypoint_args must have str keys (they are the entrypoint's keyword arguments)")
    return kwargs, name


# ------------------------------------------------------------------ local


@dataclass
class _Replica:
    rank: int
    run_dir: Path
    timeout: float
    rank_env: str
    proc: subprocess.Popen[bytes] | None = None
    status: Status = "pending"
    exit_code: int | None = None
    error: str | None = None
    traceback: str | None = None
    result: Any = None
    cancelled: bool = False
    timed_out: bool = False
    exited: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)
    lifeline: int | None = None  # our write end of the replica's lifeline pipe

    @property
    def log(self) -> Path:
        return self.run_dir / f"rank-{self.rank}.log"

    def signal_group(self, sig: int) -> None:
        signal_leader_group(self, sig)


class LeadsAGroup(Protocol):
    """A replica, here or on a Ray node: the leader of its own process group."""

    lock: threading.Lock
    proc: subprocess.Popen[bytes] | None
    exited: bool  # set, under `lock`, once the leader is reaped


def signal_leader_group(replica: LeadsAGroup, sig: int) -> None:
    """Send `sig` to the replica's process group: only while its leader is
    not reaped, when its pid is still the group's id (never someone else's)."""
    with replica.lock:
        if replica.proc is not None and not replica.exited:
            try:
                os.killpg(replica.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


class LocalReplicaExecutor:
    """`ServerlessExecutor` with local processes started by `launcher.prepare()`.

    ``LocalReplicaExecutor(python=None, *, flags=None, settings=None, cwd=None,
    environ=None, env_policy="inherit", env_allow=(), rank_env="REPLICA_RANK",
    world_env="REPLICA_WORLD_SIZE", log_dir=None, grace=3.0)``.  Logs and
    results live in a private directory (under `log_dir`, default the
    launcher's cache) that `close()` removes.
    """

    backend_name = "local_process"
    supports_inter_replica_network = True  # the replicas share this machine's loopback

    def __init__(self, python: str | os.PathLike[str] | None = None, *,
                 flags: Mapping[str, Any] | None = None, settings: Settings | None = None,
                 cwd: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None,
                 env_policy: str = "inherit", env_allow: Iterable[str] = (),
                 rank_env: str = "REPLICA_RANK", world_env: str = "REPLICA_WORLD_SIZE",
                 log_dir: str | os.PathLike[str] | None = None, grace: float = 3.0) -> None:
        self.command: WorkerCommand = worker_command(
            python, flags=flags, settings=settings, cwd=cwd, environ=environ, env_policy=env_policy,
            env_allow=tuple(env_allow))
        self.rank_env = rank_env
        self.world_env = world_env
        self.grace = grace
        self._root = Path(log_dir) if log_dir is not None else self.command.prepared.layout.root
        self._launches: dict[str, list[_Replica]] = {}

    def __enter__(self) -> LocalReplicaExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- launch

    def launch_replicas(self, n_replicas: int, entrypoint: str | Callable[..., Any],
                        entrypoint_args: Mapping[str, Any], *, gpu: str | None = None,
                        timeout: int = 3600) -> list[ReplicaHandle]:
        kwargs, rank_env = keyword_args(entrypoint_args, self.rank_env)
        if n_replicas < 1:
            raise ValueError("n_replicas must be at least 1")
        if gpu is not None:
            sys.stderr.write(f"launcher: LocalReplicaExecutor ignores gpu={gpu!r}: local replicas "
                             "share whatever GPUs this machine shows them\n")
        entry = entry_file(self.command.paths, dumps_for(self.command, {"entrypoint": entrypoint,
                                                                        "kwargs": kwargs}))
        run_dir = private_dir(self._root, "replicas")
        P.write_private(str(run_dir / "entry.pkl"), entry)
        launch = run_dir.name
        replicas = [_Replica(rank, run_dir, timeout, rank_env) for rank in range(n_replicas)]
        self._launches[launch] = replicas
        for rep in replicas:
            threading.Thread(target=self._watch, args=(rep, n_replicas),
                             name=f"launcher-replica-{launch}-{rep.rank}", daemon=True).start()
        return [ReplicaHandle(rep.rank, self.backend_name, {"launch": launch}) for rep in replicas]

    def _start(self, rep: _Replica, world: int) -> subprocess.Popen[bytes]:
        env = dict(self.command.env)
        env[rep.rank_env] = str(rep.rank)
        env[self.world_env] = str(world)
        log = P.open_private(str(rep.log))
        # The lifeline: we keep the write end until the replica is gone; if we
        # die first the replica sees EOF and kills its whole group.
        life_r, rep.lifeline = os.pipe()
        try:
            return subprocess.Popen(
                argv_for(self.command, "replica", [os.getpid(), rep.run_dir, rep.rank, life_r]), env=env,
                cwd=self.command.cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(life_r,), start_new_session=True)
        finally:
            os.close(log)
            os.close(life_r)

    def _watch(self, rep: _Replica, world: int) -> None:
        """Start the replica from this thread (its PR_SET_PDEATHSIG is tied to
        the thread that forks it), wait for it, then end what it left behind."""
        try:
            with rep.lock:
                if rep.cancelled:
                    rep.status = "cancelled"
                    return
                rep.proc = self._start(rep, world)
                rep.status = "running"
            timer = threading.Timer(rep.timeout, self._expire, args=(rep,))
            timer.daemon = True
            timer.start()
            # Wait without reaping, so the group id cannot be reused before the killpg.
            os.waitid(os.P_PID, rep.proc.pid, os.WEXITED | os.WNOWAIT)
            timer.cancel()
            rep.signal_group(signal.SIGKILL)
            with rep.lock:
                rep.exit_code = rep.proc.wait()
                rep.exited = True
            self._settle(rep)
        except Exception as exc:
            rep.status = "failed"
            rep.error = f"{type(exc).__name__}: {exc}"
        finally:
            if rep.lifeline is not None:
                os.close(rep.lifeline)
                rep.lifeline = None
            rep.done.set()

    def _expire(self, rep: _Replica) -> None:
        rep.timed_out = True
        self._stop(rep)

    def _stop(self, rep: _Replica) -> None:
        rep.signal_group(signal.SIGTERM)
        if not rep.done.wait(self.grace):
            rep.signal_group(signal.SIGKILL)

    def _settle(self, rep: _Replica) -> None:
        base = rep.run_dir / f"rank-{rep.rank}"
        result = base.with_suffix(".result")
        if rep.cancelled:
            rep.status = "cancelled"
            rep.error = "cancelled"
        elif rep.exit_code == 0 and result.exists():
            rep.result = P.load_spill(str(result), pickle.load)
            rep.status = "succeeded"
            return
        else:
            rep.status = "failed"
        err = base.with_suffix(".error")
        if err.exists():
            info = P.load_spill(str(err), pickle.load)
            rep.error = f"{info['qualname']}: {info['message']}"
            rep.traceback = info["traceback"]
        elif rep.timed_out:
            rep.error = f"timed out after {rep.timeout:g}s"
        elif rep.error is None:
            # exit 0 with no result: the entrypoint ended the process itself (os._exit(0)).
            rep.error = exit_status(rep.exit_code or 0) + (" before returning" if not rep.exit_code else "")

    # ---------------------------------------------------------------- follow

    def _get(self, handle: ReplicaHandle) -> _Replica:
        try:
            return self._launches[handle.metadata["launch"]][handle.rank]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"unknown replica {handle}") from None

    def poll(self, handle: ReplicaHandle) -> Status:
        return self._get(handle).status

    def stream_logs(self, handle: ReplicaHandle, *, n_lines: int = 200) -> str:
        return "\n".join(_tail(self._get(handle).log, n_lines))

    def cancel(self, handle: ReplicaHandle) -> None:
        """End the replica and every process in its group; returns when they are gone."""
        rep = self._get(handle)
        with rep.lock:
            if rep.exited or rep.done.is_set():
                return
            rep.cancelled = True
        self._stop(rep)
        rep.done.wait(self.grace + 5)

    def collect(self, handles: Sequence[ReplicaHandle], *,
                timeout: float | None = None) -> list[dict[str, Any]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        out = []
        for handle in handles:
            rep = self._get(handle)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not rep.done.wait(left):
                raise TimeoutError(f"replica rank {rep.rank} is still {rep.status} after {timeout:g}s")
            out.append({"rank": rep.rank, "status": rep.status, "exit_code": rep.exit_code,
                        "error": rep.error, "traceback": rep.traceback, "result": rep.result,
                        "log": str(rep.log), "pid": rep.proc.pid if rep.proc else None})
        return out

    def close(self) -> None:
        """Cancel what still runs and remove the logs and results."""
        for launch, replicas in list(self._launches.items()):
            for rep in replicas:
                self.cancel(ReplicaHandle(rep.rank, self.backend_name, {"launch": launch}))
            safety.remove(replicas[0].run_dir)
        self._launches.clear()


def entry_file(paths: Sequence[str], entry: bytes) -> bytes:
    """What a replica loads: the project's import paths as a plain pickle the
    worker reads first, then the pickled entrypoint, which may name a module
    only those paths make importable (a function of the driver's project)."""
    return pickle.dumps(list(paths), protocol=4) + entry


def _tail(path: Path, n_lines: int) -> list[str]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        size = 0
        data = b""
        while end - size > 0 and data.count(b"\n") <= n_lines:
            size = min(end, size + 65536)
            f.seek(end - size)
            data = f.read(size)
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-n_lines:] if n_lines > 0 else []
