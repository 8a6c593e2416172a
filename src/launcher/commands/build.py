"""`launcher _build`: the gate's miss path calls this in a scrubbed subprocess."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TextIO

import click

from launcher.ui import reports_errors, say


@click.command("_build", hidden=True)
@click.option("--python", "python", required=True)
@click.option("--spec", "spec_hash", required=True)
@click.option("--expect-key", default=None)
@click.option("--cache-dir", required=True)
@click.option("--run-id", default="")
@click.option("--requested-by", default="")
@click.option("--failure-ttl", type=float, default=60.0)
@click.option("--build", "policy", type=click.Choice(["never", "fallback", "always"]), default="fallback")
@click.option("--report-fd", type=int, default=None,
              help="The requesting interpreter's stderr: progress and notes go there (absent: say nothing "
                   "unless the build fails).")
@reports_errors
def build(python: str, spec_hash: str, expect_key: str | None, cache_dir: str, run_id: str,
          requested_by: str, failure_ttl: float, policy: str, report_fd: int | None) -> None:
    """Build one runtime tree for PYTHON (internal)."""
    from launcher.cache import CacheLayout, safety
    from launcher.probe import probe
    from launcher.progress import activity_for, built_line, on_terminal
    from launcher.spec import Spec
    from launcher.tree import ensure_tree

    layout = CacheLayout(Path(cache_dir))
    # The gate's miss path: refuse (exit 2, the gate says why) to build into,
    # or hand out a tree from, a cache that is not safe to run code from.
    safety.check(layout)
    spec = Spec.load(layout, spec_hash)
    interp = probe(python, layout)
    if expect_key and interp.abi_key != expect_key:
        say(f"{python} probes as {interp.abi_key} but its gate computed {expect_key}; not building")
        sys.exit(1)
    report = _report_stream(report_fd)
    # Our own stderr is a pipe the gate reads a failure's reason from (and
    # says it once); progress and notes go to the interpreter's stderr,
    # by the rules `launcher run` follows in the foreground.
    with report or contextlib.nullcontext(), \
            contextlib.redirect_stderr(report) if report else contextlib.nullcontext():
        result = ensure_tree(layout, interp, spec, run_id=run_id, requested_by=requested_by,
                             failure_ttl=failure_ttl, build="always" if spec.source_builds else policy,
                             say=say, activity=activity_for(report, quiet=False, say=say) if report else None)
        if report is not None and on_terminal(report) and result.state != "present":
            say(built_line(result))  # the live line has vanished: what it built stays


def _report_stream(fd: int | None) -> TextIO | None:
    if fd is None:
        return None
    try:
        return open(fd, "w", encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115 - closed by `with`
    except OSError:
        return None  # not passed after all: build silently, as under -q
