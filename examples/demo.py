"""`make demo`: one real fan-out under `launcher run`, across three ABIs.

The parent (this machine's Python 3.11, visible to the launcher, so its tree
is prepared before exec) starts spawn workers and subprocess children on
CPython 3.13 and free-threaded 3.13t, which the launcher cannot see: their
gates build their trees in-process.  Every process also gets jemalloc
preloaded when the machine has it.  Uses a fresh cache and the offline
wheelhouse in $SHARED (default ../shared), so it runs the same on any machine.
"""

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHARED") or REPO.parent / "shared")
WHEELHOUSE = SHARED / "wheelhouse"
PYTHONS = REPO / ".pythons"


def jemalloc() -> str | None:
    """Why jemalloc cannot be preloaded here, or None when it can."""
    from launcher import preload
    from launcher.errors import UsageError

    try:
        preload.resolve(["jemalloc"], machine=os.uname().machine)
    except UsageError as exc:
        return exc.line()
    return None


def main() -> int:
    if not WHEELHOUSE.is_dir():
        print(f"demo: the offline wheelhouse {WHEELHOUSE} is missing: set SHARED=DIR to the shared "
              "directory (make demo SHARED=DIR)", file=sys.stderr)
        return 2
    launcher = Path(sys.executable).parent / "launcher"
    children = [PYTHONS / "cpython-3.13/bin/python3.13", PYTHONS / "cpython-3.13t/bin/python3.13t"]
    absent = [c for c in children if not c.exists()]
    children = [c for c in children if c.exists()]
    if absent:
        print(f"demo: {', '.join(map(str, absent))} absent ('make pythons' unpacks them); "
              "showing the others", flush=True)
    with tempfile.TemporaryDirectory(prefix="launcher-demo-") as tmp:
        venv = Path(tmp) / "venv311"
        # A bare venv of this machine's 3.11: markupsafe must come from the runtime tree.
        subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv",
                        "--without-pip", str(venv)], check=True)
        env = dict(os.environ, LAUNCHER_CACHE_DIR=str(Path(tmp) / "cache"),
                   DEMO_CHILDREN=os.pathsep.join(map(str, children)))
        options = ["--with", "markupsafe", "--find-links", str(WHEELHOUSE), "--offline"]
        why_not = jemalloc()
        if why_not is None:
            options += ["--preload", "jemalloc"]
        else:
            print(f"demo: no jemalloc preload on this machine ({why_not})", flush=True)
        command = [str(venv / "bin" / "python"), "examples/fanout.py"]
        print("$ " + shlex.join(["launcher", "run", *options, "--", *command]), flush=True)
        rc = subprocess.run([str(launcher), "run", *options, "--", *command], env=env, cwd=REPO).returncode
        trees = sorted(p.name for p in (Path(tmp) / "cache" / "trees").iterdir() if not p.name.startswith("."))
        print("\nruntime trees built (one per ABI):")
        for t in trees:
            print("  " + t)
        return rc


if __name__ == "__main__":
    sys.exit(main())
