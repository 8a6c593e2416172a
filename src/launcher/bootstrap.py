"""The bootstrap dir: the directory put first on PYTHONPATH.

It holds only our `sitecustomize.py` (the gate) and the parts of it the gate
loads on demand (`_launcher_preloads.py`, `_launcher_miss.py`).  Its name is the digest of
the gate's source, so a launcher upgrade never mixes gates, concurrent
launches share one copy, and it is published by atomic rename.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from pathlib import Path

from launcher.cache import CacheLayout, safety

GATE_SOURCE = Path(__file__).with_name("gate") / "sitecustomize.py"
# The gate and the parts it loads on demand from beside itself (preloads, miss path).
GATE_FILES = (GATE_SOURCE, GATE_SOURCE.with_name("_launcher_preloads.py"),
              GATE_SOURCE.with_name("_launcher_miss.py"))


@functools.cache
def gate_digest() -> str:
    return hashlib.sha256(b"".join(f.read_bytes() for f in GATE_FILES)).hexdigest()[:12]


def bootstrap_dir(layout: CacheLayout) -> Path:
    return layout.bootstrap / gate_digest()


def ensure_bootstrap(layout: CacheLayout) -> Path:
    target = bootstrap_dir(layout)
    if all((target / f.name).is_file() for f in GATE_FILES):
        return target
    layout.bootstrap.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = layout.bootstrap / f".tmp-{gate_digest()}-{os.getpid()}"
    safety.remove(tmp)
    tmp.mkdir(mode=0o700)
    try:
        for f in GATE_FILES:
            shutil.copyfile(f, tmp / f.name)
    except BaseException:
        safety.remove(tmp)  # a full disk leaves no temp dir behind
        raise
    try:
        os.rename(tmp, target)
    except OSError:
        # Another launch published the same gate first (theirs is identical),
        # or a cleaner removed a file of ours: put back what is missing.
        if safety.real_dir(target):
            for f in GATE_FILES:
                if not (target / f.name).is_file():
                    os.replace(tmp / f.name, target / f.name)
        safety.remove(tmp)
    return target
