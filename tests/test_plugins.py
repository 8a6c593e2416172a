"""Plugins from the `launcher.plugins` entry-point group load in every
interpreter; one whose import raises is skipped and recorded, the rest load."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import WHEELHOUSE, launcher
from support import make_wheel


def test_broken_plugin_is_skipped_and_recorded(tmp_path: Path, env: dict[str, str], cache_dir: Path,
                                               py313: str) -> None:
    links = tmp_path / "links"
    links.mkdir()
    make_wheel(links, "goodplugin", {
        "goodplugin.py": "import os\ndef activate():\n    os.environ['GOOD_PLUGIN'] = 'loaded'\n",
    }, "[launcher.plugins]\ngood = goodplugin:activate\n")
    make_wheel(links, "badplugin", {
        # What a wrong-ABI extension looks like at import time.
        "badplugin.py": "raise ImportError(\"No module named 'badplugin._native'\")\n",
    }, "[launcher.plugins]\nbad = badplugin:activate\n")
    proc = launcher("run", "-q", "--record", "--with", "goodplugin", "--with", "badplugin", "--find-links", str(links),
                    "--find-links", str(WHEELHOUSE), "--offline", "--", py313, "-c",
                    "import os; print(os.environ.get('GOOD_PLUGIN'))", env=env, check=True)
    assert proc.stdout == "loaded\n"
    assert proc.stderr == ""  # a skipped plugin is recorded, not shouted
    (record,) = (cache_dir / "runs").glob("*.jsonl")
    events = [json.loads(x) for x in record.read_text().splitlines()]
    skipped = [e for e in events if e["event"] == "plugin-skipped"]
    loaded = [e for e in events if e["event"] == "plugin-loaded"]
    assert [e["plugin"] for e in skipped] == ["bad"]
    assert "ImportError" in skipped[0]["error"] and "badplugin._native" in skipped[0]["error"]
    assert [e["plugin"] for e in loaded] == ["good"]
