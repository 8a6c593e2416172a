"""`make demo`: one real fan-out under `launcher run`, across three ABIs.

The parent (this machine's Python 3.11, visible to the launcher, so its tree
is prepared before exec) starts spawn workers and subprocess children on
CPython 3.13 and free-threaded 3.13t, which the launcher cannot see: their
gates build their trees in-process.  Uses a fresh cache and the offline
wheelhouse in ../shared, so it runs the same on any machine.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WHEELHOUSE = REPO.parent / "shared" / "wheelhouse"
PYTHONS = REPO / ".pythons"


def main() -> int:
    launcher = Path(sys.executable).parent / "launcher"
    children = [PYTHONS / "cpython-3.13/bin/python3.13", PYTHONS / "cpython-3.13t/bin/python3.13t"]
    children = [c for c in children if c.exists()]
    with tempfile.TemporaryDirectory(prefix="launcher-demo-") as tmp:
        venv = Path(tmp) / "venv311"
        # A bare venv of this machine's 3.11: markupsafe must come from the runtime tree.
        subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv",
                        "--without-pip", str(venv)], check=True)
        env = dict(os.environ, LAUNCHER_CACHE_DIR=str(Path(tmp) / "cache"),
                   DEMO_CHILDREN=os.pathsep.join(map(str, children)))
        cmd = [str(launcher), "run", "--with", "markupsafe", "--find-links", str(WHEELHOUSE),
               "--offline", "--", str(venv / "bin" / "python"), str(REPO / "examples" / "fanout.py")]
        print("$ " + " ".join(cmd[1:3]) + " markupsafe ... -- python examples/fanout.py", flush=True)
        rc = subprocess.run(cmd, env=env).returncode
        trees = sorted(p.name for p in (Path(tmp) / "cache" / "trees").iterdir() if not p.name.startswith("."))
        print("\nruntime trees built (one per ABI):")
        for t in trees:
            print("  " + t)
        return rc


if __name__ == "__main__":
    sys.exit(main())
