"""`launcher _build`: the gate's miss path calls this in a scrubbed subprocess."""

from __future__ import annotations

import sys
from pathlib import Path

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
@reports_errors
def build(python: str, spec_hash: str, expect_key: str | None, cache_dir: str, run_id: str,
          requested_by: str, failure_ttl: float, policy: str) -> None:
    """Build one runtime tree for PYTHON (internal)."""
    from launcher.cache import CacheLayout, safety
    from launcher.probe import probe
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
    ensure_tree(layout, interp, spec, run_id=run_id, requested_by=requested_by, failure_ttl=failure_ttl,
                build="always" if spec.source_builds else policy, say=say)
