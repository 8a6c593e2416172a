"""Tasks the executor tests send to workers by name: a module of the project,
importable in every worker (tests put this directory on PYTHONPATH)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time


def markupsafe_where(text: str) -> dict[str, object]:
    import markupsafe
    from markupsafe import _speedups  # the C extension: its file names the ABI it was built for

    return {"escaped": str(markupsafe.escape(text)), "speedups": _speedups.__file__,
            "pid": os.getpid(), "gil": getattr(sys, "_is_gil_enabled", lambda: True)()}


def boom(message: str) -> None:
    raise ValueError(message)


def unpicklable() -> object:
    return threading.Lock()


def half_spilled(size: int) -> list[object]:
    return [bytes(size), threading.Lock()]


def big(size: int) -> bytes:
    return b"\x01" * size


def environment() -> dict[str, str]:
    return dict(os.environ)


def state() -> dict[str, object]:
    return {"cwd": os.getcwd(), "path": list(sys.path), "pid": os.getpid()}


def wander(where: str) -> str:
    os.chdir(where)
    sys.path.insert(0, where)
    sys.path.append("/nowhere")
    return os.getcwd()


def signals() -> dict[str, object]:
    return {
        "int": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
        "term": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
        "hup": signal.getsignal(signal.SIGHUP) == signal.SIG_DFL,
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    }


def interrupt_me() -> str:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
    return "not interrupted"


def mark_and_sleep(marker: str, seconds: float) -> int:
    with open(marker, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return os.getpid()


def pid() -> int:
    return os.getpid()


# ------------------------------------------------------------------ replicas


def rank_work(scale: int) -> int:
    rank = int(os.environ["REPLICA_RANK"])
    print(f"rank {rank} of {os.environ['REPLICA_WORLD_SIZE']} on "
          f"{sys.version_info[0]}.{sys.version_info[1]}")
    if rank == 1:
        raise ValueError(f"rank {rank} refuses")
    return rank * scale


def parent_of_sleeper() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(f"child {child.pid}")
    time.sleep(600)


def leave_a_sleeper() -> int:
    """Start a child in our process group and return at once, leaving it behind."""
    return subprocess.Popen(["sleep", "600"]).pid


def preloads() -> dict[str, object]:
    with open("/proc/self/maps") as f:
        maps = f.read()
    return {"jemalloc": "libjemalloc" in maps, "LD_PRELOAD": os.environ.get("LD_PRELOAD")}


FLAG: list[str] = []


def remember(value: str) -> None:
    FLAG.append(value)


def remembered() -> list[str]:
    return FLAG


class SlowToPickle:
    """Pickling this takes a minute: a result caught half-way into its spill file."""

    def __reduce__(self) -> tuple[object, ...]:
        time.sleep(60)
        return (SlowToPickle, ())


def half_written(size: int) -> list[object]:
    return [bytes(size), SlowToPickle()]


def rank_seen(**kwargs: object) -> dict[str, object]:
    """What a replica got: its keyword arguments and the rank variables."""
    return {"kwargs": kwargs, "REPLICA_RANK": os.environ.get("REPLICA_RANK"),
            "MY_RANK": os.environ.get("MY_RANK")}


def hard_exit(code: int) -> None:
    os._exit(code)


def kill_self(sig: int) -> None:
    os.kill(os.getpid(), sig)


class ExitAtUnpickle:
    """A result whose loading (in the driver) raises SystemExit."""

    def __reduce__(self) -> tuple[object, ...]:
        return sys.exit, (5,)


def exit_at_unpickle() -> ExitAtUnpickle:
    return ExitAtUnpickle()


def put(queue: object, value: object) -> None:
    queue.put(value)  # type: ignore[attr-defined]


def pid_and(value: int) -> tuple[int, int]:
    return os.getpid(), value


def sleep_and_print(seconds: float, text: str) -> None:
    time.sleep(seconds)
    print(text, flush=True)


def leave_sleepers(tag: str) -> list[int]:
    """Children that try to outlive the task: one in a process group of its
    own, one in a session of its own, and one daemonised (double fork)."""
    group = subprocess.Popen(["sleep", tag], process_group=0)
    session = subprocess.Popen(["sleep", tag], start_new_session=True)
    daemon = subprocess.run(["sh", "-c", f"(sleep {tag} >/dev/null 2>&1 & echo $!) &"],
                            capture_output=True, text=True, check=True)
    return [group.pid, session.pid, int(daemon.stdout.split()[0])]


def multiprocessing_loaded() -> bool:
    return "multiprocessing" in sys.modules


def leave_sleepers_and_wait(tag: str) -> None:
    print(" ".join(map(str, leave_sleepers(tag))), flush=True)
    time.sleep(120)
