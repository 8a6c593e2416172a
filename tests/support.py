"""What the tests and the benchmarks (bench/) both need: where things are, how
to read `-X importtime` and the installs log, how to make a small real wheel
or sdist.  Stdlib only, so bench/ can import it without pytest."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import select
import sys
import tarfile
import time
import zipfile
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


def read_pty(master: int) -> bytes:
    """Everything written to a pty until its last writer closed it (then
    reading the master fails with EIO)."""
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the pty
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def read_pty_until(master: int, marker: bytes, timeout: float = 30) -> bytes:
    """What a pty shows until `marker` appears (or the time is up, or its
    last writer closed it): for a shell that stays up, unlike read_pty."""
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                seen += os.read(master, 65536)
            except OSError:  # EIO: every writer closed the pty
                break
    return seen


def without_progress(stderr: str) -> str:
    """stderr less the one plain progress line a build that outlasts half a
    second prints ("launcher: preparing the runtime for ... ..."): whether it
    appears depends on the machine's load, not on what a test checks."""
    return "".join(ln for ln in stderr.splitlines(keepends=True)
                   if not (ln.startswith("launcher: preparing the runtime for ") and ln.rstrip().endswith("...")))


def make_wheel(dest: Path, name: str, files: dict[str, str], entry_points: str = "",
               version: str = "1.0", tag: str = "py3-none-any") -> Path:
    """A minimal, valid pure-Python wheel (RECORD hashes included) in `dest`,
    which pip and uv install like any other; `tag` (e.g. `cp311-cp311-linux_x86_64`)
    makes it one only that ABI may install."""
    dist = f"{name}-{version}"
    content = dict(files)
    content[f"{dist}.dist-info/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    content[f"{dist}.dist-info/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                                          f"Tag: {tag}\n")
    content[f"{dist}.dist-info/entry_points.txt"] = entry_points
    record = []
    for path, text in content.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    content[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{dist}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in content.items():
            z.writestr(path, text)
    return wheel


def make_sdist(dest: Path, name: str, version: str, setup_py: str | None = None) -> Path:
    """A real setuptools sdist of a one-module package (with `setup_py`, a setup.py too)."""
    files = {
        "pyproject.toml": (f'[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
                           f'[project]\nname = "{name}"\nversion = "{version}"\n'
                           f'[tool.setuptools]\npy-modules = ["{name}"]\n'),
        f"{name}.py": f'VERSION = "{version}"\n',
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }
    if setup_py is not None:
        files["setup.py"] = setup_py
    path = dest / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def installs(cache_dir: Path, result: str | None = "built") -> list[dict]:
    """What the launcher recorded about installs in this cache."""
    path = cache_dir / "log" / "installs.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [r for r in rows if result is None or r["result"] == result]
