"""Building runtime trees ahead of time (`launcher prewarm`), e.g. in a CI image.

Through `plan.prepare`, the code path `launcher run` takes: a first pass
with ``build=False`` probes every interpreter and names its tree; then one
job per distinct tree calls `prepare` for that tree's interpreters.  Jobs run
serially unless `--jobs`/`LAUNCHER_PREWARM_JOBS` asks for more; the tree's
own lock still guarantees one build per tree across processes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from launcher.config import Settings, current_dir, resolve
from launcher.errors import UsageError

if TYPE_CHECKING:
    from launcher.resolve import JobPins

MAX_JOBS = 8
JOBS_ENV = "LAUNCHER_PREWARM_JOBS"


def effective_jobs(flag: str | None, env_value: str | None, trees: int) -> tuple[int, str | None]:
    """(jobs, warning): the flag wins over the variable; the result is clamped
    to [1, min(trees, 8)]; 0, negatives and non-numbers fall back to 1."""
    if flag is not None:
        raw, where = flag, "--jobs"
    elif env_value is not None and env_value.strip():
        raw, where = env_value, JOBS_ENV
    else:
        return 1, None
    try:
        n = int(raw.strip())
    except ValueError:
        n = 0
    if n < 1:
        return 1, f"{where}={raw!r} is not a positive whole number; building one tree at a time"
    return max(1, min(n, trees, MAX_JOBS)), None


@dataclass
class Job:
    tree: str  # the tree's directory name
    abi_key: str
    interpreters: list[str]
    state: str = "pending"  # then "present" | "built" | "rebuilt" | "failed"
    seconds: float = 0.0
    packages: int = 0
    error: str | None = None


@dataclass
class Plan:
    settings: Settings
    jobs: list[Job] = field(default_factory=list)
    cache_root: Path | None = None
    pins: JobPins | None = None  # the job's, resolved over every --python


class Reporter(Protocol):
    def started(self, job: Job) -> None: ...
    def finished(self, job: Job) -> None: ...


def plan_jobs(flags: Mapping[str, Any], *, cwd: Path, environ: Mapping[str, str], refresh: bool = False,
              say: Callable[[str], None] = lambda m: None) -> Plan:
    """Resolve settings and name every tree to build (probing each interpreter once)."""
    from launcher.plan import prepare

    settings = resolve(dict(flags), cwd=cwd, environ=dict(environ)).settings
    if not settings.python:
        raise UsageError("nothing to prewarm: no interpreter given",
                         fix="pass --python PATH (repeatable) or set python = [...] in [tool.launcher]")
    if not settings.with_ and not settings.with_requirements:
        raise UsageError("nothing to prewarm: no requirements given",
                         fix="pass --with REQ or --with-requirements FILE, or set them in [tool.launcher]")
    dry = prepare((), settings=settings, cwd=cwd, environ=environ, build=False)
    answer = None
    if dry.spec is not None and dry.interpreters:
        # Every --python is one job: resolved together, as `launcher run`
        # resolves the interpreters it knows (a requirement nothing answers
        # stops here, exit 2, before anything is built).
        from launcher.plan import job_pins

        answer = job_pins(dry.spec, [pi.interpreter for pi in dry.interpreters], settings, dry.layout,
                          refresh=refresh)
        for line in answer.lines:
            say(line)
        dry = prepare((), settings=settings, cwd=cwd, environ=environ, build=False, pins=answer)
    by_tree: dict[str, Job] = {}
    for pi in dry.interpreters:
        if pi.tree is None:
            raise UsageError("nothing to prewarm: the requirements files list no requirement",
                             fix="add requirements to them or pass --with REQ")
        job = by_tree.setdefault(pi.tree.name, Job(pi.tree.name, pi.interpreter.abi_key, []))
        job.interpreters.append(pi.interpreter.executable)
    return Plan(settings, list(by_tree.values()), dry.layout.root, answer)


def run_jobs(p: Plan, jobs: int, reporter: Reporter, *, cwd: Path,
             environ: Mapping[str, str], say: Callable[[str], None] | None = None) -> list[Job]:
    def one(job: Job) -> Job:
        from launcher.plan import prepare

        reporter.started(job)
        start = time.monotonic()
        try:
            prepared = prepare((), settings=p.settings.model_copy(update={"python": job.interpreters}),
                               cwd=cwd, environ=environ, note=say, pins=p.pins)
        except Exception as exc:  # one bad interpreter must not hide the others' results
            job.state, job.error = "failed", getattr(exc, "message", None) or str(exc)
        else:
            failed = [pi for pi in prepared.interpreters if pi.state == "failed"]
            if failed:
                job.state, job.error = "failed", failed[0].error
            else:
                states = {pi.state for pi in prepared.interpreters}
                job.state = next((s for s in ("rebuilt", "built") if s in states), "present")
                tree = prepared.interpreters[0].tree if prepared.interpreters else None
                job.packages = _count_packages(tree)
        job.seconds = time.monotonic() - start
        reporter.finished(job)
        return job

    if jobs <= 1:
        return [one(j) for j in p.jobs]
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="prewarm") as pool:
        return list(pool.map(one, p.jobs))


def _count_packages(tree: Path | None) -> int:
    from launcher.tree import read_manifest

    m = read_manifest(tree) if tree is not None else None
    return len(m.distributions) if m is not None else 0


# ------------------------------------------------------------------ progress


def describe(job: Job, *, seconds: bool = True) -> str:
    if job.state == "failed":
        return f"{job.tree}: failed: {job.error}"
    what = {"present": "already present", "built": "built", "rebuilt": "rebuilt"}.get(job.state, job.state)
    pkgs = f" ({job.packages} package{'s' if job.packages != 1 else ''})" if job.packages else ""
    return f"{job.tree}: {what}{pkgs}" + (f" in {job.seconds:.1f}s" if seconds else "")


class PlainReporter:
    """One line per finished tree, for logs and CI (no terminal control codes)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say

    def started(self, job: Job) -> None:
        pass

    def finished(self, job: Job) -> None:
        self.say(f"prewarm: {describe(job)}")

    def __enter__(self) -> PlainReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class RichReporter:
    """One live line per tree: spinner, what is happening, elapsed time."""

    def __init__(self, jobs: list[Job]) -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Column

        # The description gives way (ellipsis) so the elapsed time always shows.
        described = TextColumn("{task.description}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis"))
        # The real stderr, captured now: while the display runs, sys.stderr is
        # rich's proxy, and a console writing to the proxy loses the display.
        self.progress = Progress(SpinnerColumn(finished_text=" "), described,
                                 TimeElapsedColumn(), console=Console(file=sys.stderr),
                                 redirect_stdout=False, expand=True)
        self.tasks = {j.tree: self.progress.add_task(f"{j.tree}: waiting", total=1, start=False)
                      for j in jobs}

    def started(self, job: Job) -> None:
        task = self.tasks[job.tree]
        self.progress.update(task, description=f"{job.tree}: preparing for {', '.join(job.interpreters)}")
        self.progress.start_task(task)

    def finished(self, job: Job) -> None:
        from rich.markup import escape

        mark = "[red]✗[/red]" if job.state == "failed" else "[green]✓[/green]"
        self.progress.update(self.tasks[job.tree], completed=1,
                             description=f"{mark} {escape(describe(job, seconds=False))}")

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def prewarm(flags: Mapping[str, Any], jobs_flag: str | None, *, say: Callable[[str], None],
            tty: bool, cwd: Path | None = None, environ: Mapping[str, str] | None = None,
            refresh: bool = False) -> list[Job]:
    """Plan, report the job count, build; returns every job with its outcome.
    Live lines when `tty`, else one `say` line per tree (-q: a `say` that
    says nothing)."""
    cwd = cwd or current_dir()
    environ = dict(os.environ if environ is None else environ)
    p = plan_jobs(flags, cwd=cwd, environ=environ, refresh=refresh, say=say)
    jobs, warning = effective_jobs(jobs_flag, environ.get(JOBS_ENV), len(p.jobs))
    if warning:
        say(warning)
    n = len(p.jobs)
    say(f"prewarming {n} runtime tree{'s' if n != 1 else ''} in {p.cache_root}, "
        f"{jobs} at a time")
    reporter: PlainReporter | RichReporter = RichReporter(p.jobs) if tty else PlainReporter(say)
    with reporter:
        return run_jobs(p, jobs, reporter, cwd=cwd, environ=environ, say=say)
