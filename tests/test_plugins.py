"""Plugins from the `launcher.plugins` entry-point group load in every
interpreter; one whose import raises is skipped and recorded, the rest load."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

from conftest import WHEELHOUSE, launcher


def make_wheel(dest: Path, name: str, files: dict[str, str], entry_points: str) -> Path:
    """A minimal, valid pure-Python wheel (RECORD hashes included)."""
    dist = f"{name}-1.0"
    content = dict(files)
    content[f"{dist}.dist-info/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    content[f"{dist}.dist-info/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                          "Tag: py3-none-any\n")
    content[f"{dist}.dist-info/entry_points.txt"] = entry_points
    record = []
    for path, text in content.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    content[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = dest / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in content.items():
            z.writestr(path, text)
    return wheel


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
