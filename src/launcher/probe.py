"""Interpreter discovery: who is this Python, ABI-wise?

Like virtualenv's discovery, a standalone script (`_probe_script.py`) runs
inside the target with `-I -S` and reports its identity; the answer is cached
by (path, realpath, mtime_ns, size) so an interpreter is probed once, not per
run.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from launcher import bootstrap
from launcher.cache import CacheLayout
from launcher.errors import UsageError

PROBE_SCRIPT = Path(__file__).with_name("_probe_script.py")
PROBE_VERSION = 4  # 4: the record names the probed file (device, inode)


@dataclass(frozen=True)
class Interpreter:
    executable: str
    realpath: str
    implementation: str
    version: str
    abi_key: str
    cache_tag: str
    ext_suffixes: list[str]
    abiflags: str
    gil_disabled: bool
    py_debug: bool
    machine: str
    pointer_bits: int
    libc: str | None
    elf_interpreter: str | None
    musl: bool
    prefix: str
    base_prefix: str
    is_venv: bool
    stdlib: str | None
    site_packages: list[str]
    user_site: str | None
    sitecustomize: str | None
    version_info: list[int] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict) -> Interpreter:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def label(self) -> str:
        impl = "PyPy" if self.implementation == "pypy" else "CPython"
        ft = " free-threaded" if self.gil_disabled else ""
        return f"{impl} {self.version}{ft}"


def interpreter_path(given: str, *, cwd: Path, search_path: str | None) -> str:
    """What `--python GIVEN` names, as an absolute path (not resolved: a venv's
    python is not its base).  As in a shell, a bare name (`python3.13`) is
    looked up on PATH; anything with a slash is a path, relative to `cwd`;
    a venv directory stands for its python (`--python .venv` too)."""
    import shutil

    if os.sep not in given and not given.startswith("~") and not (cwd / given).is_dir():
        found = shutil.which(given, path=search_path)
        if found is None:
            raise UsageError(f"--python {given}: no interpreter of that name on PATH",
                             fix="give its path, or add its directory to PATH")
        return os.path.abspath(found)
    p = Path(given).expanduser()
    p = p if p.is_absolute() else cwd / p
    if p.is_dir():
        for name in ("bin/python", "bin/python3"):
            if (p / name).exists():
                return str((p / name).absolute())
    return str(p.absolute())


def _fingerprint(path: str) -> tuple[str, str, int, int]:
    real = os.path.realpath(path)
    st = os.stat(real)
    return path, real, st.st_mtime_ns, st.st_size


def _cache_file(layout: CacheLayout, fp: tuple[str, str, int, int]) -> Path:
    raw = json.dumps([PROBE_VERSION, bootstrap.gate_digest(), *fp]).encode()
    return layout.probes / f"{hashlib.sha256(raw).hexdigest()[:20]}.json"


def probe(path: str | os.PathLike[str], layout: CacheLayout, *, compile_gate: str | None = None,
          save: bool = True) -> Interpreter:
    """Probe `path` (kept unresolved: a venv's python is not its base).

    The answer is cached in `layout` unless `save` is false (a read-only
    cache); a cache that cannot take it (full disk) only costs a re-probe.
    """
    exe = os.path.abspath(os.fspath(path))
    try:
        fp = _fingerprint(exe)
    except OSError as exc:
        raise UsageError(
            f"interpreter {exe} not found: {exc.strerror or exc}",
            fix="pass the path of an existing python with --python",
        ) from None
    if os.path.isdir(exe):  # not a venv either: `interpreter_path` took those
        raise UsageError(f"{exe} is a directory, not a Python interpreter (and no venv: it has no bin/python)",
                         fix="pass the path of a python, or of a venv directory, with --python")
    cached = _cache_file(layout, fp)
    interp = _remembered(layout, cached.name, exe)
    if interp is not None and (compile_gate is None or _has_pyc(compile_gate, interp)):
        return interp
    argv = [exe, "-I", "-S", str(PROBE_SCRIPT), str(bootstrap.GATE_SOURCE)]
    if compile_gate:
        argv = [exe, "-I", "-S", str(PROBE_SCRIPT), compile_gate, "compile-gate"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHER_") and k != "LD_PRELOAD"}
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, encoding="utf-8", errors="replace",
                              env=env, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc  # the path is said already
        raise UsageError(
            f"cannot run {exe} to probe it: {why}",
            fix="check that it is a working Python interpreter",
        ) from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UsageError(
            f"{exe} is not a Python interpreter the launcher can use (probe failed: {tail})",
            fix="pass a CPython 3.8+ or PyPy interpreter",
        )
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise UsageError(f"probing {exe} printed something unexpected: {proc.stdout[:200]!r}") from None
    interp = Interpreter.from_dict(data)
    if save:
        from launcher.cache import safety

        try:
            st = os.stat(exe)
            record = dict(interp.to_dict(), probed=[exe, st.st_dev, st.st_ino])
            safety.write_file(layout.root, "probes", cached.name, json.dumps(record).encode())
        except OSError:
            pass  # a full cache only costs a re-probe
    return interp


def _remembered(layout: CacheLayout, name: str, exe: str) -> Interpreter | None:
    """A probe record decides what runs (uv's --python, the shims' exec), so it
    is used only when it passes the trust rule (a private file of ours,
    reached through checked directories) and still describes the file that
    was probed: same path, device and inode."""
    from launcher.cache import safety

    raw = safety.read_file(layout.root, "probes", name)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        path, dev, ino = data.pop("probed")
        st = os.stat(exe)
        if path != exe or (st.st_dev, st.st_ino) != (dev, ino):
            return None
        return Interpreter.from_dict(data)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _has_pyc(gate_file: str, interp: Interpreter) -> bool:
    """The launcher wrote every gate file's bytecode, at every optimisation level, for this interpreter."""
    pycache = Path(gate_file).parent / "__pycache__"
    return all((pycache / f"{f.stem}.{interp.cache_tag}{opt}.pyc").exists()
               for f in bootstrap.GATE_FILES for opt in ("", ".opt-1", ".opt-2"))
