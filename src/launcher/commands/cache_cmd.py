"""`launcher cache list|info|prune|clear|verify`: inspect, check and clean the cache."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from launcher.ui import reports_errors, say

if TYPE_CHECKING:
    from launcher.cache import CacheLayout
    from launcher.config import Settings


def _cache_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(fn)
    fn = click.option("--cache-dir", metavar="DIR",
                      help="Cache root (default: the cache-dir setting, LAUNCHER_CACHE_DIR or the "
                           "user cache dir).")(fn)
    return fn


def _layout(cache_dir: str | None) -> CacheLayout:
    return _resolved(cache_dir)[0]


def _resolved(cache_dir: str | None) -> tuple[CacheLayout, Settings]:
    """The cache to work on (and the settings it came from); refused (one line,
    exit 2) unless it is safe: nothing here follows a link out of it or cleans
    up after another user."""
    from launcher.cache import safety
    from launcher.cache.manage import layout_for
    from launcher.config import resolve

    settings = resolve({"cache-dir": cache_dir} if cache_dir else {}).settings
    layout = layout_for(settings.cache_dir)
    safety.check(layout)
    return layout, settings


@click.group("cache", short_help="Inspect and clean the cache.")
def command() -> None:
    """Inspect and clean the runtime trees and records in the cache."""


@command.command("list", short_help="List runtime trees and their status.")
@_cache_options
@reports_errors
def list_(cache_dir: str | None, as_json: bool) -> None:
    """Each tree: ABI, interpreter it was built for, requirements, size, last used, status."""
    from launcher.cache.manage import ago, human_size, list_trees

    layout = _layout(cache_dir)
    trees = list_trees(layout)
    if as_json:
        click.echo(json.dumps({"root": str(layout.root), "trees": [t.to_dict() for t in trees]},
                              indent=2))
        return
    if not trees:
        say(f"no runtime trees in {layout.trees}")
        return
    now = time.time()
    rows = [("ABI", "SPEC", "PYTHON", "REQUIREMENTS", "SIZE", "LAST USED", "STATUS")]
    for t in trees:
        python = " ".join(x for x in (t.interpreter_version, t.interpreter) if x) or "-"
        status = t.status if t.problem is None else f"{t.status}: {t.problem}"
        rows.append((t.abi_key or "-", t.spec_hash or "-", python, " ".join(t.requirements) or "-",
                     human_size(t.size), ago(t.last_used, now), status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])


@command.command("info", short_help="Show where the cache is and its size.")
@_cache_options
@reports_errors
def info(cache_dir: str | None, as_json: bool) -> None:
    """Where the cache is, how big, and what it holds."""
    from launcher.cache import manage
    from launcher.cache.manage import ago, human_size

    data = manage.info(_layout(cache_dir))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"cache dir:        {data['root']}{'' if data['exists'] else ' (does not exist yet)'}")
    click.echo(f"total size:       {human_size(data['total_bytes'])}")
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(data["trees_by_status"].items())) or "none"
    click.echo(f"runtime trees:    {data['trees']} ({statuses}), {human_size(data['tree_bytes'])}")
    if data["least_recently_used"] is not None:
        click.echo(f"last used:        {ago(data['most_recently_used'])} "
                   f"(least recently: {ago(data['least_recently_used'])})")
    click.echo(f"stale build dirs: {data['stale_build_dirs']}")
    click.echo(f"run records:      {data['run_records']}")
    areas = ", ".join(f"{k} {human_size(v)}" for k, v in data["areas"].items() if v)
    click.echo(f"by area:          {areas or '-'}")


def _print_report(report: Any, as_json: bool) -> None:
    from launcher.cache.manage import human_size

    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    verb = "would remove" if report.dry_run else "removed"
    counts: dict[str, int] = {}
    for r in report.removed:
        counts[r.kind] = counts.get(r.kind, 0) + 1
        if r.kind in ("tree", "build-dir"):
            click.echo(f"{verb} {r.kind} {r.path} ({human_size(r.size)}; {r.reason})")
    for s in report.skipped:
        say(f"skipped {s.path}: {s.reason}")
    summary = ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in counts.items()) or "nothing"
    click.echo(f"{'would free' if report.dry_run else 'freed'} {human_size(report.freed)}: {summary}")


@command.command("prune", short_help="Remove unused and broken trees.")
@click.option("--older-than", default="30d", show_default=True, metavar="AGE",
              help="Remove trees not used for this long (s, m, h, d, w units).")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@_cache_options
@reports_errors
def prune(older_than: str, dry_run: bool, cache_dir: str | None, as_json: bool) -> None:
    """Remove trees not used lately, invalid ones, leftovers of killed builds,
    old run records and expired failure records (older than the failure-ttl
    setting).  Trees a running process holds are skipped."""
    from launcher.cache import manage

    age = manage.parse_age(older_than)
    layout, settings = _resolved(cache_dir)
    _print_report(manage.prune(layout, age, dry_run=dry_run, failure_ttl=settings.failure_ttl), as_json)


@command.command("clear", short_help="Remove every tree not in use.")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@_cache_options
@reports_errors
def clear(dry_run: bool, cache_dir: str | None, as_json: bool) -> None:
    """Remove every tree no running process holds, and all records and probes."""
    from launcher.cache import manage

    _print_report(manage.clear(_layout(cache_dir), dry_run=dry_run), as_json)


@command.command("verify", short_help="Check runtime trees file by file; --repair rebuilds damaged ones.")
@click.argument("trees", nargs=-1, metavar="[TREE]...")
@click.option("--repair", is_flag=True, help="Rebuild every damaged tree (atomically) from its requirement set.")
@_cache_options
@reports_errors
def verify(trees: tuple[str, ...], repair: bool, cache_dir: str | None, as_json: bool) -> None:
    """Hash every file of each TREE (default: all) against its manifest; find
    files changed, added or missing and extension modules the tree's
    interpreter cannot import.  Exit 1 when a tree is (still) damaged."""
    from launcher.cache import safety
    from launcher.cache import verify as deep

    layout = _layout(cache_dir)
    checks = deep.verify(layout, trees, fix=repair)
    bad = [c for c in checks if c.status in ("damaged", "unrepaired")]
    # The gate and the shims run in every process too: the same rule, reported
    # (never repaired behind the user's back: the fix is theirs to apply).
    loose = safety.code_dir_problems(layout)
    if as_json:
        click.echo(json.dumps({"trees": [c.to_dict() for c in checks], "damaged": len(bad),
                               "untrusted": [{"path": str(p.path), "problem": p.what, "fix": p.fix}
                                             for p in loose]}, indent=2))
    else:
        for p in loose:
            click.echo(f"untrusted {p.path} {p.what} (fix: {p.fix})")
        for c in checks:
            if c.status == "ok":
                click.echo(f"ok        {c.name} ({c.files} files)" + (f"; {c.note}" if c.note else ""))
            elif c.status == "repaired":
                click.echo(f"repaired  {c.name} (was: {c.first()})")
            else:
                click.echo(f"{c.status:<9} {c.name}: {c.first()}" + (f" ({c.note})" if c.note else ""))
        if not checks:
            say("no runtime trees to verify")
        elif bad:
            say(f"{len(bad)} of {len(checks)} runtime tree(s) damaged: {', '.join(c.name for c in bad)}"
                + ("" if repair else " (launcher cache verify --repair rebuilds them)"))
        if loose:
            say(f"{len(loose)} code dir(s) of the cache break the trust rule; launcher run refuses them: "
                f"{loose[0].fix}")
    if bad or loose:
        sys.exit(1)
