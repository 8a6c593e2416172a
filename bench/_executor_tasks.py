"""Tasks for the executor rows, importable by name in both pools' workers
(the driver script's directory is on their sys.path)."""

from __future__ import annotations

import os


def noop(x: object = None) -> object:
    return x


def pid() -> int:
    return os.getpid()


def big(size: int) -> bytes:
    return b"\x01" * size

