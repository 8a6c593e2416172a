"""Ray past one machine, the launcher way (the optional extra `launcher[ray]`).

- `runtime_env(flags)`: a Ray runtime_env under which every Ray worker (tasks
  and actors) on every node starts through that node's `launcher run`: its
  ABI's runtime tree from the node's own cache, the gate, the preloads.
- `RayReplicaExecutor`: the replica Protocol (`launcher.replicas`) on a Ray
  cluster.

Importing this package does not import Ray; `import launcher`, the CLI and
the gate never import it either.
"""

from __future__ import annotations

from launcher.ray._env import runtime_env
from launcher.ray._replicas import RayReplicaExecutor

__all__ = ["RayReplicaExecutor", "runtime_env"]
