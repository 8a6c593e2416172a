"""Run two commands side by side and summarise the pairs.

Every sample is one process start, spawned with `posix_spawn` and reaped with
`wait4`, so the clock covers exactly the child's life.  A and B alternate (A, B, A, B, ...): drift in the
machine's load (other jobs on a shared 2-core box) hits both sides of a pair
alike, and the median of the per-pair ratios shrugs off the odd spike.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Cmd:
    """One command: an absolute argv[0] (posix_spawn does not search PATH) and its env."""

    argv: list[str]
    env: dict[str, str]


@dataclass(frozen=True)
class Sample:
    seconds: float


class CommandFailed(Exception):
    pass


def run_once(cmd: Cmd) -> Sample:
    """Start `cmd` with stdin/stdout on /dev/null and stderr kept for errors."""
    with tempfile.TemporaryFile() as err:
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                       (os.POSIX_SPAWN_DUP2, err.fileno(), 2)]
            start = time.perf_counter()
            pid = os.posix_spawn(cmd.argv[0], cmd.argv, cmd.env, file_actions=actions)
            _, status = os.waitpid(pid, 0)
            seconds = time.perf_counter() - start
        finally:
            os.close(devnull)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            tail = err.read().decode("utf-8", "replace").strip().splitlines()[-5:]
            raise CommandFailed(f"{' '.join(cmd.argv)} exited {code}: " + " | ".join(tail))
    return Sample(seconds)


CmdSource = Cmd | Callable[[], Cmd]


@dataclass
class Pairs:
    a: list[Sample] = field(default_factory=list)
    b: list[Sample] = field(default_factory=list)

    def ratios(self) -> list[float]:
        return [x.seconds / y.seconds for x, y in zip(self.a, self.b, strict=True)]

    def summary(self) -> dict[str, float | int]:
        r = self.ratios()
        return {
            "pairs": len(r),
            "median": statistics.median(r),
            "min": min(r),
            "max": max(r),
            "a_ms": statistics.median(s.seconds for s in self.a) * 1e3,
            "b_ms": statistics.median(s.seconds for s in self.b) * 1e3,
        }


TIME = "/usr/bin/time"


def peak_rss_kib(cmd: Cmd) -> int:
    """The child's own peak RSS, via GNU time (`%M`).

    Not `wait4` from here: a child spawned by this (big) Python process
    inherits its address space until exec, and ru_maxrss keeps that high-water
    mark.  `time` is tiny, so what it reports is the program's own peak.
    """
    with tempfile.NamedTemporaryFile("r") as out:
        run_once(Cmd([TIME, "-f", "%M", "-o", out.name, *cmd.argv], cmd.env))
        return int(out.read().split()[-1])


def paired_rss(a: Cmd, b: Cmd, *, pairs: int, warmup: int = 2) -> tuple[list[int], list[int]]:
    """Peak RSS (KiB) of A and B, alternating like `paired`."""
    ra: list[int] = []
    rb: list[int] = []
    for i in range(warmup + pairs):
        x, y = peak_rss_kib(a), peak_rss_kib(b)
        if i >= warmup:
            ra.append(x)
            rb.append(y)
    return ra, rb


def paired(a: CmdSource, b: CmdSource, *, pairs: int, warmup: int = 3,
           after: Callable[[str, Cmd], None] | None = None) -> Pairs:
    """`warmup` discarded pairs, then `pairs` measured ones, strictly alternating.

    `a`/`b` may be factories (a fresh cold cache per run); `after(side, cmd)`
    checks each run's side effects and raises to fail the row.
    """
    out = Pairs()
    for i in range(warmup + pairs):
        for side, src, dest in (("a", a, out.a), ("b", b, out.b)):
            cmd = src() if callable(src) else src
            sample = run_once(cmd)
            if after is not None:
                after(side, cmd)
            if i >= warmup:
                dest.append(sample)
    return out
