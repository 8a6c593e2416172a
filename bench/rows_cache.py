"""Rows of the cache helper: neither the gate nor the warm `launcher run` may
pay for the size of a runtime tree, and the memo must not grow with it.

The big tree comes from a synthetic wheel built here at run time (no
network, nothing committed): 5,000 tiny modules in 50 subpackages, so the
tree has ~10,000 files (bytecode included) in ~100 directories.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from _measure import Cmd, CommandFailed, paired
from _rows import PASS, Row, Scale, _check_matched
from _workspace import LAUNCHER, WHEELHOUSE, Workspace

from support import imported_modules

MODULES = 5000
PACKAGES = 50
REMEMBERED = 64
MEMO_BUDGET = 64 * 1024
HEAVY = ("click", "pydantic", "json", "launcher.cli", "launcher.plan")


def synthetic_wheel(dest: Path, modules: int = MODULES, packages: int = PACKAGES) -> Path:
    """`bigtree-1.0-py3-none-any.whl`: `modules` one-line modules in `packages` subpackages."""
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / "bigtree-1.0-py3-none-any.whl"
    if wheel.exists():
        return wheel
    files: dict[str, bytes] = {"bigtree/__init__.py": b""}
    per = modules // packages
    for p in range(packages):
        files[f"bigtree/p{p:02d}/__init__.py"] = b""
        for m in range(per):
            files[f"bigtree/p{p:02d}/m{m:03d}.py"] = f"VALUE = {p * per + m}\n".encode()
    info = "bigtree-1.0.dist-info"
    files[f"{info}/METADATA"] = b"Metadata-Version: 2.1\nName: bigtree\nVersion: 1.0\n"
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: launcher-bench\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n")

    def record_line(name: str, data: bytes) -> str:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        return f"{name},sha256={digest},{len(data)}"

    record = "\n".join([*(record_line(n, d) for n, d in files.items()), f"{info}/RECORD,,"]) + "\n"
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{info}/RECORD", record)
    os.replace(tmp, wheel)
    return wheel


def _run_args(req: str, links: Path, *command: str) -> list[str]:
    return [str(LAUNCHER), "run", "--with", req, "--find-links", str(links), "--find-links", str(WHEELHOUSE),
            "--offline", "--", *command]


def _check_warm(argv: list[str], env: dict[str, str]) -> None:
    """The run works, its tree is the size claimed, and the next run is the fast path."""
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    if first.returncode != 0:
        raise CommandFailed(f"{' '.join(argv)} failed: {first.stderr.strip()[-300:]}")
    probe = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env, capture_output=True,
                           text=True, timeout=300)
    mods = imported_modules(probe.stderr)
    heavy = sorted(m for m in mods if m.split(".")[0] in HEAVY or m in HEAVY)
    if probe.returncode != 0 or "_launcher_warm" not in mods or heavy:
        raise CommandFailed(f"the warm run did not take the fast path (imported {heavy[:5]})")


def _tree_files(cache: Path) -> int:
    """Files in the biggest tree of `cache`."""
    trees = [p for p in (cache / "trees").iterdir() if not p.name.startswith(".")]
    return max((sum(len(files) for _d, _s, files in os.walk(t)) for t in trees), default=0)


def memo_bytes(cache: Path) -> tuple[int, int, int]:
    """(bytes, entries, plans) of the warm path's memo."""
    memo = cache / "memo"
    names = list(memo.iterdir()) if memo.is_dir() else []
    return (sum(p.stat().st_size for p in names), sum(p.name.startswith("run-") for p in names),
            sum(p.name.startswith("plan-") for p in names))


def warm_big_tree(ws: Workspace, scale: Scale, row: Row) -> Row:
    py = ws.venv("bare311")
    links = ws.root / "bigtree-wheel"
    synthetic_wheel(links)
    cache = ws.root / "cache-bigtree"
    env = ws.launcher_env(cache)
    a = Cmd(_run_args("bigtree", links, py, "-c", "pass"), env)
    b = Cmd(_run_args("markupsafe", links, py, "-c", "pass"), env)
    _check_warm(a.argv, env)
    files = _tree_files(cache)
    if files < 2 * MODULES:
        raise CommandFailed(f"the big tree has {files} files, not >= {2 * MODULES} (modules and bytecode)")
    _check_warm(b.argv, env)
    row.summary = paired(a, b, pairs=scale.start).summary()
    row.judge()

    # The memo with REMEMBERED invocations of the big tree (each one a full path once).
    for i in range(REMEMBERED):
        argv = _run_args("bigtree", links, py, "-c", f"pass  # {i}")
        subprocess.run(argv, env=env, check=True, capture_output=True, timeout=600)
    size, entries, plans = memo_bytes(cache)
    row.summary.update(memo_bytes=size, memo_entries=entries, memo_plans=plans, tree_files=files)
    row.note = (f"big tree: {files} files (5,000 modules + bytecode, {PACKAGES} subpackages); small: markupsafe; "
                f"both warm (fast path checked); memo with {REMEMBERED} remembered invocations of the big tree "
                f"(the memo keeps {REMEMBERED}): {size / 1024:.1f} KiB in {entries} entries and {plans} shared plan(s), "
                f"budget < {MEMO_BUDGET // 1024} KiB")
    if size >= MEMO_BUDGET:
        row.status = "fail"
        row.note += " -- OVER BUDGET"
    return row


def gate_big_tree(ws: Workspace, scale: Scale, row: Row) -> Row:
    """The gate's matched path with the 5,000-module tree, against a bare start:
    the same budget as the small-tree gate rows, since its cost must not grow."""
    py = ws.venv("bare311")
    links = ws.root / "bigtree-wheel"
    synthetic_wheel(links)
    prepared = ws.prepare(py, **{"with": ["bigtree"], "find_links": [str(links), str(WHEELHOUSE)]})
    checked = _check_matched(py, prepared, f"bigtree.p{PACKAGES - 1:02d}.m{MODULES // PACKAGES - 1:03d}")
    tree = str(prepared.interpreters[0].tree)
    files = sum(len(f) for _d, _s, f in os.walk(tree))
    if files < MODULES:
        raise CommandFailed(f"the big tree {tree} has {files} files, not >= {MODULES}")
    row.note = f"{checked}; the tree has {files} files in {PACKAGES} subpackages"
    row.summary = paired(Cmd([py, "-c", PASS], prepared.env), Cmd([py, "-c", PASS], ws.base_env()),
                         pairs=scale.start).summary()
    row.summary["tree_files"] = files
    return row.judge()
