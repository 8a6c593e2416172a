"""Run records: where to read what a recorded job's interpreters got (`launcher runs show`)."""

from __future__ import annotations

from launcher.cache import CacheLayout
from launcher.doctor.models import Finding, ok
from launcher.records import load, run_paths
from launcher.words import plural


def record_findings(layout: CacheLayout) -> list[Finding]:
    """One line: the latest recorded run (only that one is read) and the command that shows it."""
    paths = run_paths(layout)
    if not paths:
        return [ok("record", "no recorded runs: 'launcher run --record ...' (or record = true in the config) "
                             "records every interpreter of a job for 'launcher runs show'", runs=0)]
    run = load(layout, paths[-1])
    abis = sorted({p.abi_key.split("-")[0] for p in run.processes if p.abi_key})
    missing = [p.pid for p in run.processes if p.tree and not p.tree_present]
    failed = {p.pid: p.exit_status for p in run.processes if p.exit_status}
    notes = []
    if missing:
        notes.append(f"{len(missing)} without their runtime")
    if failed:
        notes.append("exit " + ", ".join(f"{s} (pid {pid})" for pid, s in failed.items()))
    what = f"{plural(len(run.processes), 'interpreter')}, {', '.join(abis) or 'no ABI recorded'}"
    return [ok("record", f"{plural(len(paths), 'recorded run')}; the latest, {run.id}, had {what}"
                         + (f"; {'; '.join(notes)}" if notes else "")
                         + f": see 'launcher runs show {run.id}'",
               runs=len(paths), latest=run.id, latest_path=run.path, without_runtime=missing)]
