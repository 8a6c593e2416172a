"""Requirements a runtime tree cannot meet because the interpreter's own
packages come first (priority "last", the default): `six>=1.17` asked for,
six 1.16 in the venv's site-packages, and the venv's copy wins.

Read straight from the `*.dist-info` / `*.egg-info` directory names in the
interpreter's site-packages (a directory listing each, no subprocess, no
cache that could go stale when the venv changes).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from launcher.probe import Interpreter


@dataclass(frozen=True)
class Shadowed:
    requirement: str
    name: str
    version: str
    where: str

    def line(self, interp: Interpreter) -> str:
        return (f"--with {self.requirement!r} is shadowed for {interp.executable}: {self.name} "
                f"{self.version} in {self.where} comes first and does not satisfy it; "
                "use --with-priority first to put the runtime tree ahead")


def installed(dirs: Iterable[str]) -> dict[str, tuple[str, str, str]]:
    """canonical name -> (name, version, directory); the first directory wins, as on sys.path."""
    from packaging.utils import canonicalize_name

    out: dict[str, tuple[str, str, str]] = {}
    for d in dirs:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for entry in names:
            stem, dot, kind = entry.rpartition(".")
            if not dot or kind not in ("dist-info", "egg-info"):
                continue
            name, sep, version = stem.partition("-")
            if sep and version:
                out.setdefault(canonicalize_name(name), (name, version.split("-")[0], d))
    return out


def shadowed(interp: Interpreter, requirements: Iterable[str]) -> list[Shadowed]:
    """Each requirement an installed distribution of `interp` shadows without satisfying it."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion

    dirs = list(interp.site_packages) + ([interp.user_site] if interp.user_site else [])
    have = installed(dirs)
    out = []
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        found = have.get(canonicalize_name(req.name))
        if found is None or req.url or not req.specifier:
            continue
        try:
            ok = req.specifier.contains(found[1], prereleases=True)
        except InvalidVersion:
            continue
        if not ok:
            out.append(Shadowed(text, found[0], found[1], found[2]))
    return out
