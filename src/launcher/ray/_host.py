"""The Ray actor that hosts one replica on its node (made remote by
`RayReplicaExecutor`; this module does not import Ray).

The actor is a Ray worker started through `launcher run` (see `_env`), so the
replica it starts — the launcher's replica worker script, in a process group
of its own — is a prepared interpreter too: the gate, the node's tree, the
preloads.  Its stdout and stderr go to a log file on the node that `tail`
reads while it runs and after; `stop` ends the whole group; if the actor
itself dies, the replica's lifeline pipe closes and its group is killed.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from launcher.executor import _protocol as P
from launcher.executor._driver import exit_status
from launcher.executor._start import WORKER_SCRIPT
from launcher.replicas import _tail, entry_file, signal_leader_group


class ReplicaHost:
    """One replica: `run` it (blocks until it ends), `tail` its log, `stop` it."""

    def __init__(self, rank: int, world: int, rank_env: str, grace: float = 3.0) -> None:
        self.rank = rank
        self.world = world
        self.rank_env = rank_env
        self.grace = grace
        self.dir = tempfile.mkdtemp(prefix="launcher-replica-")  # 0700
        self.log = os.path.join(self.dir, f"rank-{rank}.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.stopped = False
        self.timed_out = False
        self.timeout = 0.0
        self.exited = False

    def where(self) -> dict[str, Any]:
        import ray  # this actor is a Ray worker

        return {"host": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id(),
                "actor_pid": os.getpid(), "dir": self.dir}

    def run(self, entry: bytes, timeout: float) -> dict[str, Any]:
        """Start the replica, wait for it, and say how it ended."""
        self.timeout = timeout
        # The project's paths on this node: the actor's working directory
        # (Ray's working_dir, when the runtime_env has one).
        P.write_private(os.path.join(self.dir, "entry.pkl"), entry_file([os.getcwd()], entry))
        env = dict(os.environ)
        env[self.rank_env] = str(self.rank)
        env["REPLICA_WORLD_SIZE"] = str(self.world)
        with self.lock:
            if self.stopped:
                return self._outcome(None)
            log = P.open_private(self.log)
            life_r, life_w = os.pipe()
            try:
                self.proc = subprocess.Popen(
                    [sys.executable, str(WORKER_SCRIPT), "replica", str(os.getpid()), self.dir,
                     str(self.rank), str(life_r)],
                    env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    pass_fds=(life_r,), start_new_session=True)
            finally:
                os.close(log)
                os.close(life_r)
        try:
            if not self._exited_by(time.monotonic() + timeout):
                self.timed_out = True
                self._end_group()
            # Not reaped yet, so its pid is still the group's id: what the
            # replica left running in its group goes with it.
            self._kill_group(signal.SIGKILL)
            with self.lock:
                code = self.proc.wait()
                self.exited = True
            return self._outcome(code)
        finally:
            os.close(life_w)
            self.done.set()

    def _outcome(self, code: int | None) -> dict[str, Any]:
        base = os.path.join(self.dir, f"rank-{self.rank}")
        out: dict[str, Any] = {"exit_code": code, "error": None, "traceback": None, "result": None,
                               "pid": self.proc.pid if self.proc else None, **self.where()}
        if self.stopped:
            out.update(status="cancelled", error="cancelled")
            return out
        if code == 0 and os.path.exists(base + ".result"):
            with open(base + ".result", "rb") as f:
                out["result"] = f.read()  # still pickled: the driver loads it
            out["status"] = "succeeded"
            return out
        out["status"] = "failed"
        if os.path.exists(base + ".error"):
            info = P.load_spill(base + ".error", pickle.load)
            out["error"] = f"{info['qualname']}: {info['message']}"
            out["traceback"] = info["traceback"]
        elif self.timed_out:
            out["error"] = f"timed out after {self.timeout:g}s"
        else:
            out["error"] = exit_status(code or 0) + ("" if code else " before returning")
        return out

    def _exited_by(self, deadline: float) -> bool:
        """Wait (without reaping) until the replica exits or `deadline` passes."""
        assert self.proc is not None
        while True:
            if os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.05, left))

    def tail(self, n_lines: int) -> str:
        return "\n".join(_tail(Path(self.log), n_lines))

    def stop(self) -> None:
        """End the replica and everything in its process group; returns when it is gone."""
        with self.lock:
            if self.exited:
                return
            self.stopped = True
            if self.proc is None:
                return
        self._end_group()
        self.done.wait(self.grace + 10)

    def _end_group(self) -> None:
        self._kill_group(signal.SIGTERM)
        if self.proc is not None and not self._exited_by(time.monotonic() + self.grace):
            self._kill_group(signal.SIGKILL)

    def _kill_group(self, sig: int) -> None:
        signal_leader_group(self, sig)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
