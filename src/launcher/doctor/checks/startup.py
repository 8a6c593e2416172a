"""Start-up injection: will the gate run, and what does it shadow?

The gate is a `sitecustomize` first on PYTHONPATH: it shadows the
interpreter's own (a venv's, Debian's, a user's on PYTHONPATH) and chains
it.  PYTHON* variables that change every interpreter at once, and PYTHONPATH
entries that are missing or belong to another interpreter, are reported here;
-E/-I/-S on the command line are named by the command check.
"""

from __future__ import annotations

import os
import re

from launcher.cache import CacheLayout
from launcher.doctor.context import abi_tag
from launcher.doctor.models import Finding, ok, warn
from launcher.errors import LauncherError
from launcher.probe import Interpreter, probe

_SITE_DIR = re.compile(r"/lib/(python|pypy)(\d+)\.(\d+)(t?)/(?:site|dist)-packages$")


def environment_findings(environ: dict[str, str], pythonpath: list[str]) -> list[Finding]:
    """Settings that apply to every interpreter the command starts."""
    out: list[Finding] = []
    for entry in pythonpath:
        if not os.path.exists(entry):
            out.append(warn("startup", f"PYTHONPATH entry {entry} does not exist",
                            f"remove {entry} from PYTHONPATH (or create it)", entry=entry))
    home = environ.get("PYTHONHOME")
    if home:
        out.append(warn(
            "environment", f"PYTHONHOME={home} applies to every interpreter the command starts; one of "
            "another version or location will not find its standard library",
            "unset PYTHONHOME (venvs and the launcher do not need it)", PYTHONHOME=home))
    if environ.get("PYTHONEXECUTABLE"):
        out.append(warn(
            "environment", f"PYTHONEXECUTABLE={environ['PYTHONEXECUTABLE']} overrides sys.executable and "
            "breaks venv detection in every interpreter the command starts",
            "unset PYTHONEXECUTABLE", PYTHONEXECUTABLE=environ["PYTHONEXECUTABLE"]))
    if environ.get("PYTHONSAFEPATH"):
        out.append(ok("environment", "PYTHONSAFEPATH is set: it only keeps the script's directory off "
                                     "sys.path; PYTHONPATH and site still run, so the gate does too"))
    if not out:
        n = len(pythonpath)
        out.append(ok("environment", f"PYTHONPATH: {n} entr{'y' if n == 1 else 'ies'} of yours, all present"
                      if n else "no PYTHONPATH of yours and no PYTHON* variable that changes start-up",
                      pythonpath=list(pythonpath)))
    return out


def interpreter_findings(interp: Interpreter, pythonpath: list[str]) -> list[Finding]:
    out = [_sitecustomize(interp, pythonpath)]
    own = {os.path.normpath(d) for d in interp.site_packages}
    mine = ("pypy" if interp.implementation == "pypy" else "python",
            *[str(x) for x in (interp.version_info or [])[:2]], "t" if interp.gil_disabled else "")
    for entry in pythonpath:
        norm = os.path.normpath(entry)
        m = _SITE_DIR.search(norm)
        if m is None or norm in own or m.groups() == mine:
            continue
        theirs = f"{m.group(1)}{m.group(2)}.{m.group(3)}{m.group(4)}"
        out.append(warn(
            "startup", f"PYTHONPATH entry {entry} is the site-packages of {theirs}, not of this "
            f"{abi_tag(interp)} interpreter: its compiled packages cannot load here and its pure-Python "
            "ones were resolved for another version",
            f"remove {entry} from PYTHONPATH, or give each interpreter its own packages with "
            "launcher run --with ...", entry=entry, belongs_to=theirs))
    return out


def _sitecustomize(interp: Interpreter, pythonpath: list[str]) -> Finding:
    """The sitecustomize the gate will chain: the first on PYTHONPATH, else the interpreter's own."""
    found = None
    for entry in pythonpath:
        for name in ("sitecustomize.py", os.path.join("sitecustomize", "__init__.py")):
            if os.path.isfile(os.path.join(entry, name)):
                found = os.path.join(entry, name)
                break
        if found:
            break
    found = found or interp.sitecustomize
    if found:
        return ok("startup", f"{found} is shadowed by the launcher's gate, which runs it right after "
                             "itself: it will be chained", sitecustomize=found, chained=True)
    return ok("startup", "no sitecustomize of its own: the launcher's gate runs at start-up "
                         "(PYTHONPATH and site are honoured)", sitecustomize=None, chained=False)


def python_exec_findings(environ: dict[str, str], layout: CacheLayout) -> list[Finding]:
    """A PYTHON_EXEC the user set: torchrun starts every worker with it instead of its own python."""
    value = environ.get("PYTHON_EXEC")
    if not value:
        return []
    if "/shims/" in value and os.path.basename(os.path.dirname(os.path.dirname(value))) == "shims":
        return [warn("environment", f"PYTHON_EXEC={value} names a launcher preload shim, not an interpreter: "
                     "it was copied out of a job and breaks when the cache is cleared",
                     "unset PYTHON_EXEC, or set it to the python your workers should run on",
                     PYTHON_EXEC=value)]
    from launcher.execute import which

    path = which(value, environ.get("PATH"))  # as torchrun's exec of it will look it up
    if path is None or not os.path.isfile(path):
        return [warn("environment", f"PYTHON_EXEC={value} names no existing interpreter: torchrun's workers "
                     "will fail to start", "set PYTHON_EXEC to the path of an existing python, or unset it "
                     "(workers then run on torchrun's own python)", PYTHON_EXEC=value, interpreter=None)]
    try:
        interp = probe(path, layout)
    except LauncherError as exc:
        return [warn("environment", f"PYTHON_EXEC={value} is not a python the launcher can run: {exc.message}",
                     "set PYTHON_EXEC to the path of a python, or unset it", PYTHON_EXEC=value,
                     interpreter=path)]
    return [ok("environment", f"PYTHON_EXEC={value} is set: torchrun starts its workers on it, "
                              f"{interp.label} ({interp.abi_key}) at {interp.executable}, not on torchrun's "
                              "own python; they get that interpreter's runtime tree, and the preloads "
                              "through a shim of it", PYTHON_EXEC=value, interpreter=interp.executable,
               abi_key=interp.abi_key)]
