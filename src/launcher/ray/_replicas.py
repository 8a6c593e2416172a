"""`RayReplicaExecutor`: the replica Protocol (`launcher.replicas`) on Ray.

Each replica is an actor (`_host.ReplicaHost`) in one bundle of a SPREAD
placement group, started through `launcher run` on its node by
`runtime_env()`; the actor runs the entrypoint in a process group of its own
with its output in a log on that node.  Results come back through Ray's
object store (large ones never through a pipe), as the still-pickled bytes
the replica wrote.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from launcher.replicas import ReplicaHandle, Status, keyword_args

if TYPE_CHECKING:
    from launcher.config import Settings


@dataclass
class _Replica:
    rank: int
    actor: Any
    timeout: float
    started: Any = None  # ref of the actor's `where()`: done once the actor runs
    run: Any = None  # ref of `run()`: the outcome
    outcome: dict[str, Any] | None = None
    cancelled: bool = False
    last_log: str = ""
    where: dict[str, Any] = field(default_factory=dict)


def gpu_resources(gpu: str | None) -> dict[str, float]:
    """``"A100"`` → one GPU of that type, ``"H100:8"`` → eight, ``"2"`` → two of any type."""
    if gpu is None:
        return {}
    kind, _, count = str(gpu).partition(":")
    if kind.isdigit() and not count:
        kind, count = "", kind
    try:
        n = float(count) if count else 1.0
    except ValueError:
        raise ValueError(f"gpu={gpu!r}: expected 'TYPE', 'TYPE:COUNT' or 'COUNT'") from None
    if n <= 0:
        raise ValueError(f"gpu={gpu!r}: the count must be positive")
    out = {"GPU": n}
    if kind:
        out[f"accelerator_type:{kind}"] = 0.001  # how Ray asks for a GPU type
    return out


class RayReplicaExecutor:
    """`ServerlessExecutor` on a Ray cluster: replicas spread over its nodes,
    each a launcher-prepared interpreter of its node.

    ``RayReplicaExecutor(*, flags=None, address=None, runtime_env=None,
    rank_env="REPLICA_RANK", resources_per_replica=None)``: `flags` are the
    launcher's settings for the replicas (see `launcher.ray.runtime_env`),
    `runtime_env` a Ray runtime_env of yours merged under them, `address` the
    cluster to connect to (when Ray is not initialised yet; default: Ray's own
    choice, RAY_ADDRESS or a local instance), `resources_per_replica` a Ray
    resource bundle (default ``{"CPU": 1}``).  Actors stay up, holding their
    logs, until `close()`.
    """

    backend_name = "ray"
    supports_inter_replica_network = True  # Ray nodes reach each other

    def __init__(self, *, flags: Mapping[str, Any] | None = None, address: str | None = None,
                 runtime_env: Mapping[str, Any] | None = None, rank_env: str = "REPLICA_RANK",
                 resources_per_replica: Mapping[str, float] | None = None,
                 settings: Settings | None = None, grace: float = 3.0) -> None:
        import ray

        from launcher.ray._env import runtime_env as make_env

        self._ray = ray
        self.runtime_env = make_env(flags, settings=settings, base=runtime_env)
        self.rank_env = rank_env
        self.resources = dict(resources_per_replica or {"CPU": 1})
        self.grace = grace
        if not ray.is_initialized():
            ray.init(address=address)
        self._launches: dict[str, tuple[Any, list[_Replica]]] = {}

    def __enter__(self) -> RayReplicaExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- launch

    def launch_replicas(self, n_replicas: int, entrypoint: str | Callable[..., Any],
                        entrypoint_args: Mapping[str, Any], *, gpu: str | None = None,
                        timeout: int = 3600) -> list[ReplicaHandle]:
        import cloudpickle
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from launcher.executor._protocol import PROTOCOL
        from launcher.ray._host import ReplicaHost

        kwargs, rank_env = keyword_args(entrypoint_args, self.rank_env)
        if n_replicas < 1:
            raise ValueError("n_replicas must be at least 1")
        # The cluster runs one Python minor version, so functions of __main__ travel too.
        entry = cloudpickle.dumps({"entrypoint": entrypoint, "kwargs": kwargs}, protocol=PROTOCOL)
        bundle = {**self.resources, **gpu_resources(gpu)}
        pg = placement_group([dict(bundle)] * n_replicas, strategy="SPREAD")
        host = self._ray.remote(ReplicaHost)
        custom = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU")}
        launch = uuid.uuid4().hex[:12]
        replicas = []
        for rank in range(n_replicas):
            actor = host.options(
                num_cpus=bundle.get("CPU", 0), num_gpus=bundle.get("GPU", 0), resources=custom or None,
                runtime_env=self.runtime_env, max_concurrency=4, max_restarts=0,
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=rank),
            ).remote(rank, n_replicas, rank_env, self.grace)
            rep = _Replica(rank, actor, float(timeout))
            rep.started = actor.where.remote()
            rep.run = actor.run.remote(entry, float(timeout))
            replicas.append(rep)
        self._launches[launch] = (pg, replicas)
        return [ReplicaHandle(rank, self.backend_name, {"launch": launch, "placement_group": pg.id.hex()})
                for rank in range(n_replicas)]

    # ---------------------------------------------------------------- follow

    def _get(self, handle: ReplicaHandle) -> _Replica:
        try:
            return self._launches[handle.metadata["launch"]][1][handle.rank]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"unknown replica {handle}") from None

    def _settle(self, rep: _Replica, timeout: float | None) -> bool:
        """Fetch the outcome if it is there within `timeout`; True once settled."""
        if rep.outcome is not None:
            return True
        ready, _ = self._ray.wait([rep.run], timeout=timeout)
        if not ready:
            return False
        try:
            rep.outcome = self._ray.get(rep.run)
        except Exception as exc:  # the actor died (killed, its node lost) or never started
            status = "cancelled" if rep.cancelled else "failed"
            rep.outcome = {"status": status, "exit_code": None, "result": None, "traceback": None,
                           "error": "cancelled" if rep.cancelled else _actor_error(exc), "pid": None}
        return True

    def poll(self, handle: ReplicaHandle) -> Status:
        rep = self._get(handle)
        if self._settle(rep, 0):
            assert rep.outcome is not None
            status: Status = rep.outcome["status"]
            return status
        if rep.cancelled:
            return "cancelled"
        ready, _ = self._ray.wait([rep.started], timeout=0)
        return "running" if ready else "pending"

    def stream_logs(self, handle: ReplicaHandle, *, n_lines: int = 200) -> str:
        rep = self._get(handle)
        try:
            rep.last_log = self._ray.get(rep.actor.tail.remote(n_lines), timeout=30)
        except Exception:
            pass  # the actor is gone (cancelled before it started, or closed): what we last read
        return rep.last_log if n_lines > 0 else ""

    def cancel(self, handle: ReplicaHandle) -> None:
        rep = self._get(handle)
        if self._settle(rep, 0):
            return
        rep.cancelled = True
        ready, _ = self._ray.wait([rep.started], timeout=0)
        if ready:
            try:
                self._ray.get(rep.actor.stop.remote(), timeout=self.grace + 30)
                self._settle(rep, self.grace + 30)
                return
            except Exception:
                pass
        # Not started yet (or unreachable): the actor goes, and with it the
        # replica's lifeline, which kills its process group.
        self._ray.kill(rep.actor, no_restart=True)
        self._settle(rep, self.grace + 30)

    def collect(self, handles: Sequence[ReplicaHandle], *,
                timeout: float | None = None) -> list[dict[str, Any]]:
        import cloudpickle

        deadline = None if timeout is None else time.monotonic() + timeout
        out = []
        for handle in handles:
            rep = self._get(handle)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._settle(rep, left):
                raise TimeoutError(f"replica rank {rep.rank} is still {self.poll(handle)} after {timeout:g}s")
            assert rep.outcome is not None
            row = dict(rep.outcome)
            if isinstance(row.get("result"), bytes) and row["status"] == "succeeded":
                row["result"] = cloudpickle.loads(row["result"])
                rep.outcome["result"] = row["result"]
            out.append({"rank": rep.rank, "status": row["status"], "exit_code": row["exit_code"],
                        "error": row["error"], "traceback": row.get("traceback"), "result": row["result"],
                        "log": self.stream_logs(handle, n_lines=200), "pid": row.get("pid"),
                        "node_id": row.get("node_id"), "host": row.get("host")})
        return out

    def close(self) -> None:
        """Cancel what still runs, remove the replicas' logs, free their resources."""
        from ray.util.placement_group import remove_placement_group

        for pg, replicas in self._launches.values():
            for rep in replicas:
                if not self._settle(rep, 0):
                    rep.cancelled = True
                try:
                    self._ray.get(rep.actor.cleanup.remote(), timeout=self.grace + 30)
                except Exception:
                    pass
                self._ray.kill(rep.actor, no_restart=True)
            remove_placement_group(pg)
        self._launches.clear()


def _actor_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


__all__ = ["RayReplicaExecutor", "gpu_resources"]
