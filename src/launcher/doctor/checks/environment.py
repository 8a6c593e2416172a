"""ABI scan of an interpreter's environment: the pydantic_core case.

Every extension module under the interpreter's site-packages (and the user's
PYTHONPATH entries) whose suffix that interpreter cannot import is reported,
grouped by the distribution that installed it (from `*.dist-info/RECORD`),
with the ABI it was built for and the command that reinstalls it.  abi3
modules under a free-threaded interpreter are reported too.  Only directories
Python can import through (identifier names) are walked, so a project dir on
PYTHONPATH with a `.venv` inside is not mistaken for packages.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass

from launcher.doctor.context import abi_tag
from launcher.doctor.models import Finding, fail, ok, warn
from launcher.probe import Interpreter
from launcher.tree import EXT_TAG, built_for
from launcher.words import plural

# Debian's version-less dir, on the path of every python3 (and PyPy) of the system.
_SHARED_DIR = re.compile(r"/lib/python3/dist-packages/?$")


@dataclass(frozen=True)
class BadExtension:
    rel: str
    suffix: str
    abi3_free_threaded: bool

    @property
    def built_for(self) -> str:
        return built_for(self.suffix)


def scan_dir(root: str, interp: Interpreter) -> tuple[int, list[BadExtension]]:
    """(extension modules seen, those `interp` cannot import) under `root`."""
    suffixes = set(interp.ext_suffixes)
    seen = 0
    bad: list[BadExtension] = []
    importable: set[tuple[str, str]] = set()
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d.isidentifier()]
        reldir = os.path.relpath(dirpath, root)
        for name in files:
            m = EXT_TAG.search(name)
            if not m:
                continue
            seen += 1
            suffix = m.group(0)
            module = (reldir, name.split(".", 1)[0])
            rel = os.path.normpath(os.path.join(reldir, name))
            if suffix not in suffixes:
                bad.append(BadExtension(rel, suffix, False))
            elif interp.gil_disabled and m.group(1) == ".abi3":
                bad.append(BadExtension(rel, suffix, True))
            else:
                importable.add(module)
    # A module with a build this interpreter imports (multi-ABI dirs) is fine.
    bad = [b for b in bad if (os.path.dirname(b.rel) or ".", os.path.basename(b.rel).split(".", 1)[0])
           not in importable]
    return seen, bad


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def record_index(root: str) -> dict[str, tuple[str, str]]:
    """file (relative to root) -> (distribution, version), from every *.dist-info/RECORD."""
    out: dict[str, tuple[str, str]] = {}
    try:
        entries = os.listdir(root)
    except OSError:
        return out
    for entry in entries:
        if not entry.endswith(".dist-info"):
            continue
        dist = os.path.join(root, entry)
        name, _, version = entry[: -len(".dist-info")].partition("-")
        try:
            with open(os.path.join(dist, "METADATA"), encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("Name:"):
                        name = line[5:].strip()
                    elif line.startswith("Version:"):
                        version = line[8:].strip()
                    elif not line.strip():
                        break
        except OSError:
            pass
        try:
            with open(os.path.join(dist, "RECORD"), encoding="utf-8", errors="replace", newline="") as f:
                for row in csv.reader(f):
                    if row:
                        out[os.path.normpath(row[0])] = (_canonical(name), version)
        except OSError:
            continue
    return out


def scan_environment(interp: Interpreter, dirs: list[tuple[str, str]]) -> list[Finding]:
    """Findings for `dirs` ((path, "site-packages" | "user site" | "PYTHONPATH"))."""
    tag = abi_tag(interp)
    findings: list[Finding] = []
    seen_total = 0
    scanned = []
    has_pip = any(os.path.isdir(os.path.join(d, "pip")) for d in interp.site_packages)
    for root, kind in dirs:
        if not os.path.isdir(root):
            continue
        scanned.append(root)
        seen, bad = scan_dir(root, interp)
        seen_total += seen
        if not bad:
            continue
        index = record_index(root)
        by_dist: dict[tuple[str, str | None], list[BadExtension]] = {}
        for b in bad:
            name, version = index.get(b.rel, (b.rel.split(os.sep, 1)[0].split(".", 1)[0], None))
            by_dist.setdefault((name, version), []).append(b)
        ordered = sorted(by_dist.items(), key=lambda kv: kv[0][0])
        if _SHARED_DIR.search(root):
            findings.append(_shared_finding(tag, root, ordered))
            continue
        for (name, version), exts in ordered:
            findings.append(_finding(interp, tag, root, kind, name, version, exts, has_pip))
    if not findings:
        if not scanned:
            message = "no site-packages directory exists yet: no installed extension modules to check"
        elif not seen_total:
            message = f"no compiled extension modules in {', '.join(scanned)}"
        else:
            message = f"all {plural(seen_total, 'extension module')} in {', '.join(scanned)} load in {tag}"
        findings.append(ok("environment", message, extensions=seen_total, dirs=list(scanned)))
    return findings


def _shared_finding(tag: str, root: str, dists: list[tuple[tuple[str, str | None], list[BadExtension]]]) -> Finding:
    """Debian's /usr/lib/python3/dist-packages serves every python3 of the system but holds
    extensions for its default one only: worth knowing, not an error of this environment."""
    names = ", ".join(f"{n} {v}" if v else n for (n, v), _ in dists)
    built = sorted({e.built_for.split(" (")[0] for _, exts in dists for e in exts})
    return warn("environment", f"{root} is shared by the system's python3 interpreters; {plural(len(dists), 'package')} "
                               f"there have extension modules built for {', '.join(built)} that {tag} cannot "
                               f"import: {names}",
                "if this interpreter needs one of them, install it into its own venv, or launch with "
                "launcher run --with <name>", location=root, location_kind="shared",
                distributions=[n for (n, _v), _ in dists], built_for=built, interpreter_abi=tag,
                files=[e.rel for _, exts in dists for e in exts])


def _finding(interp: Interpreter, tag: str, root: str, kind: str, name: str, version: str | None,
             exts: list[BadExtension], has_pip: bool) -> Finding:
    first = exts[0]
    who = f"{name} {version}" if version else f"{name} (no installer record)"
    more = f" (and {plural(len(exts) - 1, 'more file')})" if len(exts) > 1 else ""
    if first.abi3_free_threaded:
        why = (f"uses the stable ABI (abi3), which the free-threaded {tag} cannot use: it may refuse "
               "to import or crash")
        for_ = "abi3"
    else:
        for_ = first.built_for.split(" (")[0]
        why = f"was built for {first.built_for}; this interpreter is {tag} and cannot import it"
    message = f"{who} in {root}: {first.rel} {why}{more}"
    req = f"{name}=={version}" if version else name
    py = interp.executable
    if kind == "PYTHONPATH":
        fix = (f"remove {root} from PYTHONPATH for {py}, or give each interpreter its own build: "
               f"launcher run --with {req} -- ...")
    elif not version:
        fix = (f"reinstall the distribution that provides {name} for {tag}, e.g. "
               f"{py} -m pip install --force-reinstall <its name>")
    elif kind == "user site":
        fix = f"{py} -m pip install --user --force-reinstall {req}"
    elif has_pip:
        fix = f"{py} -m pip install --force-reinstall {req}"
    else:
        fix = f"uv pip install --python {py} --reinstall {req}"
    return fail("environment", message, fix, distribution=name, version=version, location=root,
                location_kind=kind, files=[e.rel for e in exts], built_for=for_,
                built_for_platform=first.built_for.partition(" (")[2].rstrip(")") or None,
                interpreter_abi=tag, free_threaded=interp.gil_disabled,
                details=[f"{e.rel}: built for {e.built_for}" for e in exts[:10]])


def environment_dirs(interp: Interpreter, pythonpath: list[str]) -> list[tuple[str, str]]:
    """Where this interpreter imports installed packages from: its site dirs, then PYTHONPATH."""
    out: dict[str, str] = {}
    for d in interp.site_packages:
        out.setdefault(os.path.normpath(d), "site-packages")
    if interp.user_site and not interp.is_venv and os.path.isdir(interp.user_site):
        out.setdefault(os.path.normpath(interp.user_site), "user site")
    for d in pythonpath:
        out.setdefault(os.path.normpath(d), "PYTHONPATH")
    return list(out.items())
