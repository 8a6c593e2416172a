"""Run records, read: what `launcher runs` and doctor show of a job.

The gate appends one JSON line per event to `runs/<run id>.jsonl` (see
gate/_launcher_miss.record): a "gate" line per interpreter start (ABI, tree,
its state, preloads mapped; under --record / `record = true` every start,
with its command line and time, else only the gate's misses), "built" when
it built a runtime, "exit" when a recorded interpreter ended through
Python.  Here those lines become one `Run`: its interpreters as a process
tree (parent by ppid), each with the versions its runtime tree gave it of
the requirements the job asked for.  Read only; a line that does not parse
is skipped (a record is appended by many processes, and a full disk may cut
one short).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, Field

from launcher.cache import CacheLayout, safety
from launcher.errors import UsageError


class Process(BaseModel):
    """One interpreter of a recorded job."""

    pid: int
    parent: int = Field(description="The parent's pid (a recorded interpreter or not).")
    executable: str | None = None
    abi_key: str | None = None
    state: str | None = Field(default=None, description="What its gate found: hit, built, waited, failed, ...")
    tree: str | None = Field(default=None, description="Its runtime tree (absent: none for this job).")
    tree_present: bool = False
    packages: dict[str, str | None] = Field(
        default_factory=dict, description="Each requirement's name -> the version its tree holds (None: not in it).")
    preloads_mapped: list[str] | None = Field(default=None, description="None: not recorded or no preloads.")
    via_shim: bool | None = None
    argv: list[str] | None = None
    started: float | None = None
    built_seconds: int | None = Field(default=None, description="Set when its gate built the runtime.")
    exit_status: int | None = Field(
        default=None, description="The exit code, or minus the signal that killed it; None: not seen.")
    exit_how: str | None = Field(
        default=None, description="Who saw it: 'reaped' (its parent waited for it: exact), 'sys.exit', "
                                  "'uncaught <Exception>', 'end' (ended through Python, code not seen).")
    children: list[int] = Field(default_factory=list)


class Run(BaseModel):
    """A recorded job: every interpreter it started that the record saw."""

    id: str
    path: str
    started: float | None = None
    every_start: bool = Field(description="Recorded with --record (every start), not only the gate's misses.")
    requirements: list[str] = Field(default_factory=list)
    processes: list[Process] = Field(default_factory=list)
    roots: list[int] = Field(default_factory=list, description="Pids whose parent is not a recorded interpreter.")

    @property
    def command(self) -> list[str] | None:
        """The outermost recorded interpreter's command line."""
        by_pid = {p.pid: p for p in self.processes}
        for pid in self.roots:
            if by_pid[pid].argv:
                return by_pid[pid].argv
        return None

    def summary(self) -> dict[str, object]:
        failed = [p.pid for p in self.processes if p.state in ("failed", "failed-recently", "untrusted",
                                                                "read-only", "no-launcher")]
        return {"id": self.id, "started": self.started, "every_start": self.every_start,
                "interpreters": len(self.processes),
                "abis": sorted({p.abi_key for p in self.processes if p.abi_key}),
                "requirements": self.requirements, "command": self.command,
                "without_runtime": failed,
                "exit_statuses": {str(p.pid): p.exit_status for p in self.processes if p.exit_status is not None}}


def run_paths(layout: CacheLayout) -> list[Path]:
    """Every run record, oldest first.  Never read through a link."""
    if not safety.real_dir(layout.runs):
        return []
    try:
        names = [n for n in os.listdir(layout.runs) if n.endswith(".jsonl") and not n.startswith(".")]
    except OSError:
        return []
    paths = [layout.runs / n for n in names]
    return sorted(paths, key=_started_key)


def _started_key(path: Path) -> tuple[int, str]:
    # Run ids start with the launch time in hex nanoseconds.
    head = path.stem.split("-", 1)[0]
    try:
        return int(head, 16), path.stem
    except ValueError:
        return 0, path.stem


def find(layout: CacheLayout, given: str) -> Path:
    """The record a user named: its id, a unique prefix of it, or "latest"."""
    paths = run_paths(layout)
    if not paths:
        raise UsageError(f"no recorded runs in {layout.runs}",
                         fix="record one with 'launcher run --record ...' (or record = true in the config)")
    if given in ("latest", "last"):
        return paths[-1]
    exact = [p for p in paths if p.stem == given]
    matches = exact or [p for p in paths if p.stem.startswith(given)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(f"no recorded run {given!r} in {layout.runs}",
                         fix="'launcher runs list' shows the recorded runs")
    shown = ", ".join(p.stem for p in matches[:5]) + (" ..." if len(matches) > 5 else "")
    raise UsageError(f"{given!r} matches {len(matches)} recorded runs ({shown})",
                     fix="type more of the run id")


def load(layout: CacheLayout, path: Path) -> Run:
    """The run recorded in `path` (as `find` gives it)."""
    procs: dict[int, Process] = {}
    reaped: dict[int, int] = {}
    every = False
    for ev in _events(path):
        pid = ev.get("pid")
        if not isinstance(pid, int):
            continue
        proc = procs.get(pid)
        kind = ev.get("event")
        if kind == "gate":
            # A pid that exec'd another interpreter starts again: the later start describes it.
            proc = Process(pid=pid, parent=_int(ev.get("ppid")), executable=ev.get("executable"),
                           abi_key=ev.get("key"), state=ev.get("state"), tree=ev.get("tree"),
                           preloads_mapped=ev.get("preloads_mapped"), via_shim=ev.get("via_shim"),
                           argv=ev.get("argv"), started=ev.get("at"),
                           built_seconds=proc.built_seconds if proc else None)
            procs[pid] = proc
            every = every or bool(ev.get("recording"))
        elif kind == "built":
            proc = procs.setdefault(pid, Process(pid=pid, parent=_int(ev.get("ppid"))))
            proc.built_seconds = _int(ev.get("seconds"))
        elif kind == "exit" and proc is not None and proc.exit_how != "reaped":
            status = ev.get("status")
            proc.exit_status, proc.exit_how = status if isinstance(status, int) else None, ev.get("how")
        elif kind == "reaped" and isinstance(ev.get("child"), int):
            reaped[ev["child"]] = _int(ev.get("status"))
    for pid, status in reaped.items():
        if pid in procs:  # the parent's view is exact (and covers a kill by a signal)
            procs[pid].exit_status, procs[pid].exit_how = status, "reaped"
    requirements: list[str] = []
    for proc in procs.values():
        asked = _fill_packages(layout, proc)
        requirements = requirements or asked
    for proc in procs.values():
        if proc.parent in procs:
            procs[proc.parent].children.append(proc.pid)
    roots = [p.pid for p in procs.values() if p.parent not in procs]
    started = [p.started for p in procs.values() if p.started is not None]
    return Run(id=path.stem, path=str(path), started=min(started) if started else _id_time(path.stem),
               every_start=every, requirements=requirements, processes=list(procs.values()), roots=roots)


def _events(path: Path) -> Iterator[dict]:
    try:
        with open(path, "rb", opener=_no_follow) as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict):
            yield ev


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _id_time(run_id: str) -> float | None:
    try:
        return int(run_id.split("-", 1)[0], 16) / 1e9
    except ValueError:
        return None


def _fill_packages(layout: CacheLayout, proc: Process) -> list[str]:
    """Set the versions `proc`'s tree gives it of the job's requirements; return those requirements."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    from launcher.spec import Spec
    from launcher.tree import read_manifest

    if not proc.tree:
        return []
    tree = Path(proc.tree)
    try:
        spec = Spec.load(layout, tree.name.rsplit("-", 1)[-1])
    except UsageError:
        return []
    manifest = read_manifest(tree) if safety.real_dir(tree) else None
    proc.tree_present = manifest is not None
    have = {canonicalize_name(d.name): d.version for d in manifest.distributions} if manifest else {}
    for text in spec.requirements:
        try:
            name = Requirement(text).name
        except InvalidRequirement:
            name = text
        proc.packages[name] = have.get(canonicalize_name(name))
    return list(spec.requirements)
