"""`launcher config [--json] [OPTIONS]`: the resolved settings and where each came from."""

from __future__ import annotations

import json
from typing import Any

import click

from launcher.commands.options import explicit_flags, runtime_options_saying
from launcher.ui import reports_errors


def _layer(source: str) -> str:
    return {"default": "default", "environment": "env", "command line": "flag"}.get(source, "file")


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(value) if value else "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return "(none)" if value is None else str(value)


@click.command("config", short_help="Show settings and where they came from.")
@runtime_options_saying("An interpreter, as `launcher run` would take it (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
@reports_errors
def command(ctx: click.Context, as_json: bool, **params: Any) -> None:
    """Show the resolved settings and where each one came from.

    Flags win, then LAUNCHER_* variables, then [tool.launcher] in the nearest
    pyproject.toml (or launcher.toml), then defaults.  Options given here are
    resolved exactly as `launcher run` would resolve them.
    """
    from launcher.cache.manage import layout_for
    from launcher.config import KEYS, describe_source, resolve

    resolved = resolve(explicit_flags(ctx, params))
    data = resolved.settings.model_dump(by_alias=True)
    cache_root = str(layout_for(resolved.settings.cache_dir).root)
    if as_json:
        click.echo(json.dumps({
            "config_file": str(resolved.config_file) if resolved.config_file else None,
            "cache_dir": cache_root,
            "settings": {k: {"value": data[k], "layer": _layer(resolved.sources[k]),
                             "source": describe_source(k, resolved.sources[k])} for k in KEYS},
        }, indent=2))
        return
    click.echo(f"config file: {resolved.config_file or '(none found)'}")
    width = max(len(k) for k in KEYS)
    rows = []
    for k in KEYS:
        value = cache_root if k == "cache-dir" else _show(data[k])
        rows.append((k, value, describe_source(k, resolved.sources[k])))
    vwidth = min(48, max(len(v) for _, v, _ in rows))
    for k, v, src in rows:
        click.echo(f"{k:<{width}} = {v:<{vwidth}}  ({src})")
