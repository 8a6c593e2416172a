"""What the tests and the benchmarks (bench/) both need: where things are, and
how to read `-X importtime`.  Stdlib only, so bench/ can import it without pytest."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LAUNCHER_TEST_SHARED", REPO.parent / "shared"))
WHEELHOUSE = SHARED / "wheelhouse"
PYTHONS = Path(os.environ.get("LAUNCHER_TEST_PYTHONS", REPO / ".pythons"))
LAUNCHER = Path(sys.executable).parent / "launcher"
FOREIGN = {
    "3.13": PYTHONS / "cpython-3.13" / "bin" / "python3.13",
    "3.13t": PYTHONS / "cpython-3.13t" / "bin" / "python3.13t",
}


def imported_modules(importtime_stderr: str) -> set[str]:
    """Module names from `-X importtime` output."""
    out = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                out.add(name)
    return out
