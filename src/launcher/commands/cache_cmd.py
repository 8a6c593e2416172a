"""`launcher cache list|info|prune|clear|verify`: inspect, check and clean the cache."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from launcher.ui import reports_errors, say
from launcher.words import plural

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


@click.group("cache", short_help="Inspect and clean the cache.", invoke_without_command=True)
@click.pass_context
def command(ctx: click.Context) -> None:
    """Inspect and clean the runtime trees (the --with packages, installed
    once per interpreter ABI) and records in the cache."""
    if ctx.invoked_subcommand is None:
        # Not an error: someone looking for what there is.
        lines = ["Usage: launcher cache COMMAND [ARGS]...", "", "Commands:"]
        names = command.list_commands(ctx)
        width = max(map(len, names))
        for name in names:
            lines.append(f"  {name:<{width}}  {command.commands[name].get_short_help_str(limit=70)}")
        lines += ["", "More: launcher cache --help, launcher cache COMMAND --help"]
        click.echo("\n".join(lines))
        ctx.exit(0)


@command.command("list", short_help="List runtime trees and their status.")
@_cache_options
@reports_errors
def list_(cache_dir: str | None, as_json: bool) -> None:
    """Each tree: its name (what verify, info and prune take; a unique prefix
    will do), the Python it was built for, requirements, size, last used,
    status.  --json adds the interpreter, distributions and times."""
    from launcher.cache.manage import list_trees

    layout = _layout(cache_dir)
    trees = list_trees(layout)
    if as_json:
        click.echo(json.dumps({"root": str(layout.root), "trees": [t.to_dict() for t in trees]},
                              indent=2))
        return
    if not trees:
        say(f"no runtime trees in {layout.trees}")
        return
    _table(trees)


def _table(trees: list[Any]) -> None:
    """A table that fits the terminal: the name never wraps (it is what the
    other commands take), requirements and status fold."""
    from rich.console import Console
    from rich.table import Table

    from launcher.cache.manage import ago, human_size

    now = time.time()
    table = Table(box=None, pad_edge=False, collapse_padding=True, header_style="bold")
    table.add_column("TREE", overflow="fold")  # folds only when nothing else can give
    table.add_column("PYTHON", no_wrap=True)
    table.add_column("REQUIREMENTS", overflow="fold", min_width=12, ratio=2)
    table.add_column("SIZE", justify="right", no_wrap=True)
    table.add_column("USED", no_wrap=True)
    table.add_column("STATUS", overflow="fold", min_width=7, ratio=1)
    for t in trees:
        status = t.status if t.problem is None else f"{t.status}: {t.problem}"
        table.add_row(t.name, t.interpreter_version or "-", " ".join(t.requirements) or "-",
                      human_size(t.size), ago(t.last_used, now).replace(" ago", ""), status)
    # On a terminal (or with COLUMNS) as wide as it is; into a pipe, unbounded:
    # no fold where nobody reads on a screen.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 1000
    Console(width=width, soft_wrap=False, highlight=False).print(table)


@command.command("dir", short_help="Print the cache directory.")
@click.option("--cache-dir", metavar="DIR",
              help="Cache root (default: the cache-dir setting, LAUNCHER_CACHE_DIR or the user cache dir).")
@reports_errors
def dir_(cache_dir: str | None) -> None:
    """Print the cache directory (as `uv cache dir`), whether or not it exists yet."""
    from launcher.cache.manage import layout_for
    from launcher.config import resolve

    click.echo(layout_for(resolve({"cache-dir": cache_dir} if cache_dir else {}).settings.cache_dir).root)


@command.command("info", short_help="Show where the cache is and its size, or one tree.")
@click.argument("tree", required=False, metavar="[TREE]")
@_cache_options
@reports_errors
def info(tree: str | None, cache_dir: str | None, as_json: bool) -> None:
    """Where the cache is, how big, and what it holds; or everything about
    one TREE (a name from 'launcher cache list', or a unique prefix)."""
    from launcher.cache import manage
    from launcher.cache.manage import ago, human_size

    layout = _layout(cache_dir)
    if tree is not None:
        _tree_info(layout, tree, as_json)
        return
    data = manage.info(layout)
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


def _tree_info(layout: CacheLayout, given: str, as_json: bool) -> None:
    from launcher.cache.manage import ago, human_size, tree_info
    from launcher.cache.verify import select

    [name] = select(layout, [given])
    t = tree_info(layout, name)
    if t is None:
        say(f"runtime tree {name} is gone")
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(t.to_dict(), indent=2))
        return
    built = ago(t.built_at) if t.built_at else "-"
    for label, value in (("tree", t.name), ("path", t.path), ("status", t.status + (f": {t.problem}" if t.problem else "")),
                         ("abi", t.abi_key or "-"), ("spec hash", t.spec_hash or "-"),
                         ("python", " ".join(x for x in (t.interpreter_version, t.interpreter) if x) or "-"),
                         ("requirements", " ".join(t.requirements) or "-"),
                         ("distributions", " ".join(t.distributions) or "-"), ("size", human_size(t.size)),
                         ("built", built), ("last used", f"{ago(t.last_used)} ({t.last_used_from})")):
        click.echo(f"{label + ':':<15} {value}")


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


@command.command("prune", short_help="Remove unused and broken trees, or the trees named.")
@click.argument("trees", nargs=-1, metavar="[TREE]...")
@click.option("--older-than", default="30d", show_default=True, metavar="AGE",
              help="Remove trees not used for this long (s, m, h, d, w units).")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@_cache_options
@reports_errors
def prune(trees: tuple[str, ...], older_than: str, dry_run: bool, cache_dir: str | None, as_json: bool) -> None:
    """Remove trees not used lately, invalid ones, leftovers of killed builds,
    old run records and expired failure records (older than the failure-ttl
    setting); or, given TREEs (names or unique prefixes), just those trees.
    Trees a running process holds are skipped."""
    from launcher.cache import manage

    age = manage.parse_age(older_than)
    layout, settings = _resolved(cache_dir)
    if trees:
        from launcher.cache.verify import select

        _print_report(manage.remove(layout, select(layout, trees), dry_run=dry_run), as_json)
        return
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
            say(f"{len(bad)} of {plural(len(checks), 'runtime tree')} damaged: {', '.join(c.name for c in bad)}"
                + ("" if repair else " (launcher cache verify --repair rebuilds them)"))
        if loose:
            say(f"{plural(len(loose), 'code dir')} of the cache {'breaks' if len(loose) == 1 else 'break'} the trust rule; launcher run refuses them: "
                f"{loose[0].fix}")
    if bad or loose:
        sys.exit(1)
