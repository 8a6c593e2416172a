"""The benchmarks: one function per row of the table.

Each row first checks that side A really does what the row claims (the tree
is imported, the gate's bytecode is used, the warm fast path is taken,
jemalloc is mapped, exactly one install ran) and only then times it: a fast
number for the wrong thing would be worse than no number.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _measure import TIME, Cmd, CommandFailed, paired, paired_rss, run_once
from _workspace import (
    EXECUTOR_BENCH,
    EXECUTOR_STARTUP,
    LAUNCHER,
    WHEELHOUSE,
    WITH_ARGS,
    Missing,
    Workspace,
)

from support import imported_modules, installs


@dataclass
class Row:
    id: str
    title: str
    a: str
    b: str
    budget: float
    unit: str = "ratio"  # "ratio": median A/B time; "kib": median peak-RSS delta; "mib": median peak RSS of A
    status: str = "skip"  # "pass" | "fail" | "skip"
    summary: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def judge(self) -> Row:
        value = self.summary["median"]
        self.status = "pass" if value <= self.budget else "fail"
        return self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Scale:
    """How many pairs each kind of row gets (`--quick` shrinks them all)."""

    start: int = 150  # one interpreter start per sample (~20-50 ms)
    fanout: int = 30  # 16 spawn workers per sample (~1 s)
    herd: int = 5  # a cold build per sample (~2-4 s)
    memory: int = 30
    executor: int = 300  # 20 round-trips or 64 tasks per sample (a few ms: many pairs for a steady median)


PASS = "pass"
CHECK_TREE = "import sys, markupsafe; print(markupsafe.__file__)"


def _output(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def _check_matched(py: str, prepared: Any, module: str = "markupsafe") -> str:
    """The tree is imported, the gate says nothing and runs from its own bytecode."""
    proc = _output([py, "-c", f"import {module} as m; print(m.__file__)"], prepared.env)
    tree = str(prepared.interpreters[0].tree)
    if proc.returncode != 0 or not proc.stdout.startswith(tree + "/") or proc.stderr:
        raise CommandFailed(f"gated {py} did not import {module} from {tree}: "
                            f"{proc.stdout.strip()} {proc.stderr.strip()}")
    verbose = _output([py, "-v", "-c", "pass"], prepared.env).stderr
    pyc = f"code object from '{prepared.bootstrap}/__pycache__/sitecustomize."
    if pyc not in verbose:
        raise CommandFailed(f"gated {py} compiled the gate from source instead of using its .pyc")
    return "tree imported; gate from .pyc"


# ------------------------------------------------------------------ gate rows


def gate_matched(ws: Workspace, scale: Scale, row: Row, which: str) -> Row:
    try:
        py = ws.venv("bare311") if which == "3.11" else ws.foreign(which)
    except Missing as exc:
        row.note = str(exc)
        return row
    if which == "3.11":
        row.title = row.title.replace("3.11", ws.version(py), 1)
    prepared = ws.prepare(py)
    row.note = _check_matched(py, prepared)
    pairs = paired(Cmd([py, "-c", PASS], prepared.env), Cmd([py, "-c", PASS], ws.base_env()),
                   pairs=scale.start)
    row.summary = pairs.summary()
    return row.judge()


def gate_chaining(ws: Workspace, scale: Scale, row: Row) -> Row:
    py = ws.venv("chain311", sitecustomize="import os\nos.environ['BENCH_CHAINED'] = '1'\n")
    prepared = ws.prepare(py)
    _check_matched(py, prepared)
    code = ("import os, sys; print(os.environ.get('BENCH_CHAINED'), "
            "'/bootstrap/' not in sys.modules['sitecustomize'].__file__)")
    got = _output([py, "-c", code], prepared.env).stdout.split()
    if got != ["1", "True"]:
        raise CommandFailed(f"the venv's own sitecustomize did not run under the gate: {got}")
    row.note = "tree imported; gate from .pyc; venv sitecustomize chained"
    pairs = paired(Cmd([py, "-c", PASS], prepared.env), Cmd([py, "-c", PASS], ws.base_env()),
                   pairs=scale.start)
    row.summary = pairs.summary()
    return row.judge()


MAPPED = ("import os\nm = open('/proc/self/maps').read()\n"
          "print('libjemalloc' in m, os.environ.get('LD_PRELOAD', '<unset>'))")


def gate_preload(ws: Workspace, scale: Scale, row: Row) -> Row:
    from launcher.errors import LauncherError

    py = ws.venv("bare311")
    try:
        prepared = ws.prepare(py, preload=["jemalloc"])
    except LauncherError as exc:
        row.note = exc.line()
        return row
    bare = dict(ws.base_env(), LD_PRELOAD="libjemalloc.so.2")
    a = Cmd(prepared.argv, prepared.env)  # [shim, "-c", "pass"]
    b = Cmd([py, "-c", PASS], bare)
    # A preload bug is recorded as such (and the row fails), not timed.
    got_a = _output([*prepared.argv[:-1], MAPPED], prepared.env)
    got_b = _output([py, "-c", MAPPED], bare)
    if got_b.stdout.split()[:1] != ["True"]:
        row.note = f"LD_PRELOAD=libjemalloc.so.2 does not load here ({got_b.stderr.strip()[:200]})"
        return row
    a_mapped, _, a_ld = got_a.stdout.strip().partition(" ")
    if got_a.returncode != 0 or a_mapped != "True" or "jemalloc" in a_ld:
        row.status = "fail"
        row.note = (f"preload bug (not speed): through the shim jemalloc mapped={a_mapped or '?'}, "
                    f"LD_PRELOAD seen by the program={a_ld or '?'} {got_a.stderr.strip()[:200]}")
        return row
    row.note = "jemalloc mapped via the shim; caller's LD_PRELOAD restored for children"
    row.summary = paired(a, b, pairs=scale.start).summary()
    return row.judge()


def memory(ws: Workspace, scale: Scale, row: Row) -> Row:
    if not os.access(TIME, os.X_OK):
        row.note = f"{TIME} is absent (apt-get install time)"
        return row
    py = ws.venv("bare311")
    prepared = ws.prepare(py)
    checked = _check_matched(py, prepared)
    # GNU time must report the interpreter itself, with and without the gate:
    # the same command under it prints what only that interpreter can.
    for env, gated in ((prepared.env, True), (ws.base_env(), False)):
        code = "import sys; print(sys.executable, 'sitecustomize' in sys.modules and '/bootstrap/' in " \
               "(sys.modules['sitecustomize'].__file__ or ''))"
        got = _output([TIME, "-f", "%M", py, "-c", code], env)
        kib = got.stderr.strip().splitlines()[-1:] if got.returncode == 0 else []
        if got.stdout.split() != [py, str(gated)] or not kib or not kib[0].isdigit():
            raise CommandFailed(f"GNU time did not measure the {'gated' if gated else 'bare'} {py}: "
                                f"{got.stdout.strip()} {got.stderr.strip()[-200:]}")
    ra, rb = paired_rss(Cmd([py, "-c", PASS], prepared.env), Cmd([py, "-c", PASS], ws.base_env()),
                        pairs=scale.memory)
    deltas = [x - y for x, y in zip(ra, rb, strict=True)]
    row.summary = {"pairs": len(deltas), "median": statistics.median(deltas), "min": min(deltas),
                   "max": max(deltas), "a_kib": statistics.median(ra), "b_kib": statistics.median(rb)}
    row.note = (f"{checked}; GNU time checked to measure the gated (A) and the bare (B) interpreter; "
                "peak RSS (ru_maxrss) of the python process itself")
    return row.judge()


# ------------------------------------------------------------- launcher rows


HEAVY = ("click", "pydantic", "rich", "packaging", "platformdirs", "json", "filelock", "launcher.cli",
         "launcher.plan")


def launch(ws: Workspace, scale: Scale, row: Row) -> Row:
    py = ws.venv("bare311")
    a = Cmd(ws.run_args(py, "-c", PASS), ws.launcher_env())
    b = Cmd([py, "-c", PASS], ws.base_env())
    # The first run takes the full path and remembers it; check the next one is the fast path.
    subprocess.run(a.argv, env=a.env, check=True, capture_output=True, timeout=300)
    probe = _output([sys.executable, "-X", "importtime", *a.argv], a.env)
    mods = imported_modules(probe.stderr)
    heavy = sorted(m for m in mods if m.split(".")[0] in HEAVY or m in HEAVY)
    if probe.returncode != 0 or "_launcher_warm" not in mods or heavy:
        raise CommandFailed(f"the warm run did not take the fast path (imported {heavy[:5]})")
    row.note = "fast path taken: no click/pydantic/json imported"
    row.summary = paired(a, b, pairs=scale.start).summary()
    return row.judge()


def fanout(ws: Workspace, scale: Scale, row: Row) -> Row:
    bare = ws.venv("bare311")
    installed = ws.venv("markupsafe311", packages=("markupsafe",))
    script = str(ws.work / "fanout.py")
    a = Cmd(ws.run_args(bare, script), ws.launcher_env())
    b = Cmd([installed, script], ws.base_env())
    files_a = _output([*a.argv, "--print"], a.env).stdout.split()
    files_b = _output([*b.argv, "--print"], b.env).stdout.split()
    if len(files_a) != 16 or not all("/trees/" in f for f in files_a):
        raise CommandFailed(f"spawn workers under the launcher did not import from the tree: {files_a[:2]}")
    if len(files_b) != 16 or not all("site-packages" in f for f in files_b):
        raise CommandFailed(f"spawn workers in the venv did not import its markupsafe: {files_b[:2]}")
    row.note = "all 16 workers import markupsafe from the runtime tree (A) / site-packages (B)"
    row.summary = paired(a, b, pairs=scale.fanout, warmup=1).summary()
    return row.judge()


def cold_herd(ws: Workspace, scale: Scale, row: Row) -> Row:
    try:
        py = ws.foreign("3.13")
    except Missing as exc:
        row.note = str(exc)
        return row
    herd = str(ws.work / "herd.sh")
    counter = itertools.count()
    built_counts: list[int] = []

    def fresh(n: int) -> Callable[[], Cmd]:
        def make() -> Cmd:
            cache = ws.root / "herd" / f"{next(counter)}-{n}"
            return Cmd([str(LAUNCHER), "run", *WITH_ARGS, "--", herd, str(n), py],
                       ws.launcher_env(cache))
        return make

    def after(side: str, cmd: Cmd) -> None:
        cache = Path(cmd.env["LAUNCHER_CACHE_DIR"])
        built = len(installs(cache))
        shutil.rmtree(cache, ignore_errors=True)
        if built != 1:
            raise CommandFailed(f"{'16 workers' if side == 'a' else '1 worker'} on a cold cache ran "
                                f"{built} installs, not exactly 1")
        if side == "a":
            built_counts.append(built)

    # The floor: the same herd with no launcher at all (the same bash parent,
    # a 3.13 venv that has markupsafe installed), timed in the same round as
    # both launcher runs so the machine's load hits all three alike.
    installed = ws.venv("markupsafe313", packages=("markupsafe",), base=py)
    floor = Cmd([herd, "16", installed, "bare"], ws.base_env())
    herds, floors, singles = [], [], []
    for i in range(1 + scale.herd):  # one discarded warm-up round
        sides = []
        for side, src in (("a", fresh(16)), ("floor", lambda: floor), ("b", fresh(1))):
            cmd = src()
            sides.append(run_once(cmd).seconds * 1e3)
            if side != "floor":
                after(side, cmd)
        if i:
            herds.append(sides[0])
            floors.append(sides[1])
            singles.append(sides[2])
    # The row's value: what the launcher adds to the herd, in cold builds:
    # (herd under the launcher - the same herd without it) / one cold build.
    values = [(a - f) / b for a, f, b in zip(herds, floors, singles, strict=True)]
    row.summary = {"pairs": len(values), "median": statistics.median(values), "min": min(values),
                   "max": max(values), "a_ms": statistics.median(herds), "b_ms": statistics.median(singles),
                   "floor_ms": statistics.median(floors), "installs": built_counts}
    floor_ms = row.summary["floor_ms"]
    row.note = (f"{scale.herd} rounds (each a full cold build); exactly 1 install "
                f"(installs.jsonl, result \"built\") in every run.  Value: (herd of 16 under the launcher "
                f"- the same herd without it, {floor_ms:.0f} ms: herd.sh 16 in a 3.13 venv with markupsafe, "
                "timed in the same round) / one cold build (1 worker under the launcher)")
    return row.judge()


# ------------------------------------------------------------- executor rows


def _executor_bench(ws: Workspace, mode: str, pairs: int) -> dict[str, Any]:
    """Run bench/_executor_bench.py (launcher.Executor vs loky, same interpreter)."""
    env = dict(ws.base_env(), PYTHONPATH=str(ws.loky()))
    proc = _output([sys.executable, str(EXECUTOR_BENCH), mode, str(pairs), str(ws.cache), str(WHEELHOUSE)],
                   env)
    if proc.returncode != 0:
        raise CommandFailed(f"{EXECUTOR_BENCH.name} {mode}: {proc.stderr.strip()[-400:]}")
    return json.loads(proc.stdout)


def _executor_startup(ws: Workspace, mode: str, pairs: int) -> dict[str, Any]:
    """Run bench/_executor_startup.py (start-up vs ProcessPoolExecutor(spawn), or map chunking)."""
    proc = _output([sys.executable, str(EXECUTOR_STARTUP), mode, str(pairs), str(ws.cache), str(WHEELHOUSE)],
                   ws.base_env())
    if proc.returncode != 0:
        raise CommandFailed(f"{EXECUTOR_STARTUP.name} {mode}: {proc.stderr.strip()[-400:]}")
    return dict(json.loads(proc.stdout))


def executor_timed(ws: Workspace, scale: Scale, row: Row, mode: str) -> Row:
    try:
        if mode in ("startup", "chunks"):  # a sample is ~0.5 s (startup) or several s (chunksize 1)
            got = _executor_startup(ws, mode, max(3, scale.executor // (5 if mode == "startup" else 20)))
        else:
            got = _executor_bench(ws, mode, scale.executor)
    except Missing as exc:
        row.note = str(exc)
        return row
    ratios = [x / y for x, y in zip(got["a"], got["b"], strict=True)]
    row.summary = {"pairs": len(ratios), "median": statistics.median(ratios), "min": min(ratios),
                   "max": max(ratios), "a_ms": statistics.median(got["a"]) * 1e3,
                   "b_ms": statistics.median(got["b"]) * 1e3}
    row.note = f"checked first: {got['note']}"
    return row.judge()


def executor_rss(ws: Workspace, scale: Scale, row: Row) -> Row:
    try:
        got = _executor_bench(ws, "rss", max(3, scale.executor // 20))
    except Missing as exc:
        row.note = str(exc)
        return row
    a = [k / 1024 for k in got["a_peak"]]
    row.summary = {"pairs": len(a), "median": statistics.median(a), "min": min(a), "max": max(a),
                   "a_mib": statistics.median(a), "b_mib": statistics.median(k / 1024 for k in got["b_peak"]),
                   "before_mib": statistics.median(k / 1024 for k in got["a_before"])}
    row.note = (f"VmHWM of the driver, reset just before each result; it held "
                f"{row.summary['before_mib']:.0f} MiB before receiving (Python, launcher, pydantic); "
                "B is loky receiving the same result, for reference (not judged)")
    return row.judge()


RowFn = Callable[[Workspace, Scale, Row], Row]
GATE_A = "`python -c pass` with the launcher's env, `--with markupsafe` tree present"
BARE = "bare `python -c pass`"


def _gate(which: str) -> RowFn:
    return lambda ws, scale, row: gate_matched(ws, scale, row, which)


def _executor(mode: str) -> RowFn:
    return lambda ws, scale, row: executor_timed(ws, scale, row, mode)


def supervised(ws: Workspace, scale: Scale, row: Row) -> Row:
    py = ws.venv("bare311")
    plain = ws.run_args(py, "-c", PASS)
    a = Cmd([*plain[:2], "--supervise", *plain[2:]], ws.launcher_env())
    b = Cmd(plain, ws.launcher_env())
    for cmd in (a, b):  # the first run of each takes the full path and remembers it
        subprocess.run(cmd.argv, env=cmd.env, check=True, capture_output=True, timeout=300)
    probe = _output([sys.executable, "-X", "importtime", *a.argv], a.env)
    mods = imported_modules(probe.stderr)
    heavy = sorted(m for m in mods if m.split(".")[0] in HEAVY or m in HEAVY)
    if probe.returncode != 0 or "launcher.supervise" not in mods or heavy:
        raise CommandFailed(f"the supervised warm run did not take the fast path (imported {heavy[:5]})")
    row.note = "both warm (fast path, no click/pydantic); A supervised (launcher.supervise loaded)"
    row.summary = paired(a, b, pairs=scale.start).summary()
    return row.judge()


def rows() -> list[tuple[Row, RowFn]]:
    """Every row, in the order of the table (cheap rows first, the cold herd last)."""
    import rows_cache
    import rows_ray
    from rows_firsthour import launch_installed_row, launch_vs_uv_run_row

    return [
        (Row("gate-3.11", "gate, matched path (3.11, venv of the machine's python3)", GATE_A, BARE, 1.10),
         _gate("3.11")),
        (Row("gate-3.13", "gate, matched path (3.13)", GATE_A, BARE, 1.10), _gate("3.13")),
        (Row("gate-3.13t", "gate, matched path (3.13t, free-threaded)", GATE_A, BARE, 1.10),
         _gate("3.13t")),
        (Row("gate-big-tree", "gate, matched path with a 5,000-module tree (3.11)",
             "`python -c pass` with the launcher's env, `--with bigtree` tree present (5,000 modules)", BARE,
             1.10), rows_cache.gate_big_tree),
        (Row("gate-chain", "gate with chaining (3.11 venv with its own sitecustomize.py)",
             "the venv's `python -c pass` with the launcher's env: the gate chains the venv's "
             "sitecustomize", "that venv bare (its sitecustomize runs directly)", 1.10), gate_chaining),
        (Row("gate-preload", "gate with preloads (3.11, `--preload jemalloc`)",
             "`python -c pass` started through the launcher's shim, tree present",
             "bare `python -c pass` with `LD_PRELOAD=libjemalloc.so.2`", 1.20), gate_preload),
        *__import__("rows_trace").rows(),
        (Row("launch", "launch: warm `launcher run` (3.11)",
             "`launcher run --with markupsafe ... -- python -c pass` (warm cache: fast path)", BARE, 2.0),
         launch),
        (Row("warm-big-tree", "warm `launcher run` with a 5,000-module runtime tree (3.11)",
             "`launcher run --with bigtree ... -- python -c pass` (warm; ~10,000 files in the tree)",
             "the same with `--with markupsafe` (warm; a small tree)", 1.10), rows_cache.warm_big_tree),
        launch_installed_row("uv"),
        launch_installed_row("pip"),
        launch_vs_uv_run_row(),
        (Row("memory", "memory: peak RSS of a gated start (3.11)", GATE_A, BARE, 1024, unit="kib"),
         memory),
        (Row("fan-out", "fan-out: 16 spawn workers importing markupsafe (3.11)",
             "the parent under `launcher run --with markupsafe` (bare venv)",
             "the same parent in a venv with markupsafe installed", 1.10), fanout),
        (Row("cold-herd", "cold herd: 16 concurrent 3.13 workers on a cold cache",
             "`launcher run --with markupsafe ... -- herd.sh 16 python3.13`: a bash parent, so every "
             "worker's gate takes the miss path; value: (A - the same herd without the launcher) / B",
             "the same with 1 worker: one cold build", 1.1),
         cold_herd),
        *__import__("rows_jobs").rows(),
        (Row("executor-latency", "executor: round-trip of `submit(noop)` (3.11, 1 worker)",
             "`launcher.Executor`: 20 sequential `submit(noop).result()`",
             "loky's reusable executor, the same", 1.0), _executor("latency")),
        (Row("executor-fanout", "executor: fan-out of 64 tiny tasks (3.11, 2 workers)",
             "`launcher.Executor`: submit 64 `noop(i)`, wait for all", "loky's reusable executor, the same",
             1.0), _executor("fanout")),
        (Row("executor-rss", "executor: driver peak RSS receiving a 200 MB result (3.11)",
             "`launcher.Executor`: `submit(big).result()` (spilled, mapped)",
             "loky's reusable executor, the same", 264, unit="mib"), executor_rss),
        (Row("ray-tasks", "Ray: 8 SPREAD tasks on 2 nodes importing markupsafe, warm (3.11, ray 2.60)",
             "tasks under `launcher.ray.runtime_env(--with markupsafe)`: the node's launcher tree",
             "plain Ray, markupsafe preinstalled (on PYTHONPATH)", 1.10), rows_ray.ray_tasks),
        (Row("executor-startup", "executor: constructor + first result + shutdown (3.11, 2 workers, warm)",
             "`launcher.Executor(max_workers=2)`, `submit(pid).result()`, `shutdown()`",
             "`ProcessPoolExecutor(2, mp_context=spawn)`, the same", 1.3), _executor("startup")),
        (Row("executor-chunks", "executor: `map` over 10,000 tiny items (3.11, 2 workers)",
             "`launcher.Executor`: `map(noop, range(10000), chunksize=100)`",
             "the same with `chunksize=1`", 0.5), _executor("chunks")),
        (Row("supervise", "launch: warm `launcher run --supervise` (3.11)",
             "`launcher run --supervise --with markupsafe ... -- python -c pass` (warm)",
             "`launcher run --with markupsafe ... -- python -c pass` (warm)", 1.15), supervised),
    ]


def run_row(row: Row, fn: RowFn, ws: Workspace, scale: Scale) -> Row:
    """A row whose check or set-up fails is a failed row with the reason, not a crash."""
    try:
        return fn(ws, scale, row)
    except (CommandFailed, subprocess.SubprocessError, OSError) as exc:
        row.status = "fail"
        row.note = f"error: {exc}"
        return row
