"""Rows of the job-wide resolution: resolving the interpreters of a job
together must cost little more than resolving them one by one.

`splitpkg` is made here (no network): 2.0 has a cp311 wheel only, 1.0 is
universal, so the two ABIs disagree at first and the joint resolution takes
its second round -- the case that costs most.
"""

from __future__ import annotations

import itertools
import json
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

from _measure import Cmd, CommandFailed, paired
from _rows import Row, Scale
from _workspace import LAUNCHER, WHEELHOUSE, Missing, Workspace

from support import installs, make_wheel


def _wheels(root: Path) -> Path:
    d = root / "split-wheels"
    if not d.is_dir():
        make_wheel(d, "splitpkg", {"splitpkg.py": "V = '1.0'\n"}, version="1.0")
        make_wheel(d, "splitpkg", {"splitpkg.py": "V = '2.0'\n"}, version="2.0", tag="cp311-cp311-linux_x86_64")
    return d


def _splitpkg_versions(cache: Path) -> dict[str, str]:
    """The splitpkg version of each tree in `cache`, by ABI tag."""
    out = {}
    for tree in (cache / "trees").iterdir():
        if tree.name.startswith("."):
            continue
        manifest = json.loads((tree / ".launcher-manifest.json").read_text())
        out[tree.name.split("-", 1)[0]] = next(d["version"] for d in manifest["distributions"]
                                               if d["name"] == "splitpkg")
    return out


def cold_joint(ws: Workspace, scale: Scale, row: Row) -> Row:
    try:
        py313t = ws.foreign("3.13t")
    except Missing as exc:
        row.note = str(exc)
        return row
    py311 = ws.venv("bare311")
    args = ["--with", "markupsafe", "--with", "splitpkg", "--find-links", str(WHEELHOUSE),
            "--find-links", str(_wheels(ws.root)), "--offline"]
    counter = itertools.count()

    def fresh(side: str) -> Callable[[], Cmd]:
        def make() -> Cmd:
            cache = ws.root / "joint" / f"{next(counter)}-{side}"
            env = dict(ws.launcher_env(cache), UV_NO_INDEX="1")
            if side == "a":
                return Cmd([str(LAUNCHER), "run", *args, "--python", py313t, "--", py311, "-c", "pass"], env)
            one = " ".join(shlex.quote(a) for a in [str(LAUNCHER), "run", *args, "--"])
            return Cmd(["/bin/sh", "-c", f"{one} {shlex.quote(py311)} -c pass && {one} {shlex.quote(py313t)} -c pass"],
                       env)
        return make

    want = {"a": {"cp311": "1.0", "cp313t": "1.0"}, "b": {"cp311": "2.0", "cp313t": "1.0"}}

    def after(side: str, cmd: Cmd) -> None:
        cache = Path(cmd.env["LAUNCHER_CACHE_DIR"])
        built = len(installs(cache))
        got = _splitpkg_versions(cache) if built == 2 else {}
        shutil.rmtree(cache, ignore_errors=True)
        if built != 2 or got != want[side]:
            raise CommandFailed(f"side {side} on a cold cache: {built} installs, splitpkg {got} "
                                f"(want 2 installs, {want[side]})")

    row.summary = paired(fresh("a"), fresh("b"), pairs=scale.herd, warmup=1, after=after).summary()
    row.note = (f"{scale.herd} pairs, each on a cold launcher cache (uv's own cache warm on both sides); checked: "
                "A runs splitpkg 1.0 in both trees, B 2.0 in cp311 and 1.0 in cp313t, 2 installs each")
    return row.judge()


def rows() -> list[tuple[Row, Callable[[Workspace, Scale, Row], Row]]]:
    return [
        (Row("cold-joint", "cold launch resolving two ABIs together (3.11 + 3.13t)",
             "`launcher run --with markupsafe --with splitpkg --python python3.13t -- python3.11 -c pass` "
             "(cold cache: both resolved together, then both built)",
             "the same requirements in two cold launches, one per ABI (each resolved alone)", 1.15),
         cold_joint),
    ]
