"""The bootstrap dir: the directory put first on PYTHONPATH.

It holds only our `sitecustomize.py` (the gate).  Its name is the digest of
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


@functools.cache
def gate_digest() -> str:
    return hashlib.sha256(GATE_SOURCE.read_bytes()).hexdigest()[:12]


def bootstrap_dir(layout: CacheLayout) -> Path:
    return layout.bootstrap / gate_digest()


def ensure_bootstrap(layout: CacheLayout) -> Path:
    target = bootstrap_dir(layout)
    gate = target / "sitecustomize.py"
    if gate.is_file():
        return target
    layout.bootstrap.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = layout.bootstrap / f".tmp-{gate_digest()}-{os.getpid()}"
    safety.remove(tmp)
    tmp.mkdir(mode=0o700)
    try:
        shutil.copyfile(GATE_SOURCE, tmp / "sitecustomize.py")
    except BaseException:
        safety.remove(tmp)  # a full disk leaves no temp dir behind
        raise
    try:
        os.rename(tmp, target)
    except OSError:
        # Another launch published the same gate first; theirs is identical.
        safety.remove(tmp)
    return target
