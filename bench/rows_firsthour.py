"""Start-up rows of issue 13: the warm `launcher run` as users install it
(pip or uv, not editable) against a bare start, and side by side with
`uv run --no-project`.

Each installed launcher lives in a fresh venv of the machine's python3 with
its dependencies installed by uv; only the launcher itself is installed by
the installer under test, so the `launcher` command on disk is the one that
installer wrote.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from _measure import Cmd, CommandFailed, paired
from _rows import CHECK_TREE, HEAVY, PASS, Row, RowFn, Scale, _output
from _workspace import LAUNCHER, REPO, WITH_ARGS, Workspace

from support import imported_modules

# What the installed script must not make the warm path import (pip's
# generated wrapper imports re; typing/json would mean an import crept in).
NOT_ON_THE_WARM_PATH = (*HEAVY, "re", "typing", "os")  # (the probe runs -I -S, as the script does)


def _wheel(ws: Workspace) -> Path:
    out = ws.root / "wheel"
    found = sorted(out.glob("launcher-*.whl"))
    if found:
        return found[0]
    uv = shutil.which("uv", path=str(LAUNCHER.parent)) or "uv"
    subprocess.run([uv, "build", "--wheel", "--quiet", "--out-dir", str(out), str(REPO)], check=True,
                   timeout=600)
    return sorted(out.glob("launcher-*.whl"))[0]


def installed_launcher(ws: Workspace, installer: str) -> str:
    """The `launcher` command of a fresh venv where `installer` ("pip" or "uv") installed the wheel."""
    d = ws.root / "venvs" / f"launcher-{installer}"
    exe = d / "bin" / "launcher"
    if exe.exists():
        return str(exe)
    wheel = _wheel(ws)
    subprocess.run([ws.base_python, "-m", "venv", "--without-pip", str(d)], check=True)
    py = str(d / "bin" / "python")
    uv = shutil.which("uv", path=str(LAUNCHER.parent)) or "uv"
    # Dependencies (and, for uv, the launcher itself) from uv; then pip installs the launcher over it.
    subprocess.run([uv, "pip", "install", "--quiet", "--python", py, str(wheel)], check=True,
                   env=ws.base_env(), timeout=600)
    if installer == "pip":
        pip = LAUNCHER.parent / "pip"
        subprocess.run([str(pip), "--python", py, "install", "--quiet", "--no-deps", "--no-index",
                        "--force-reinstall", "--disable-pip-version-check", str(wheel)], check=True,
                       env=ws.base_env(), timeout=600)
    return str(exe)


def _warm(ws: Workspace, launcher: str, py: str) -> Cmd:
    """`launcher run --with markupsafe ... -- py -c pass`, run once (full path) and
    checked to take the warm path with nothing heavy imported."""
    a = Cmd([launcher, "run", *WITH_ARGS, "--", py, "-c", PASS], ws.launcher_env())
    subprocess.run(a.argv, env=a.env, check=True, capture_output=True, timeout=300)
    # As the script's sh prologue runs it: the venv's python, isolated, no site.
    interpreter = str(Path(launcher).parent / "python")
    probe = _output([interpreter, "-I", "-S", "-X", "importtime", *a.argv], a.env)
    mods = imported_modules(probe.stderr)
    heavy = sorted(m for m in mods if m in NOT_ON_THE_WARM_PATH or m.split(".")[0] in HEAVY)
    if probe.returncode != 0 or "_launcher_warm" not in mods or heavy:
        raise CommandFailed(f"{launcher}: the warm run did not take the fast path, or imported {heavy[:5]}")
    return a


def launch_installed(ws: Workspace, scale: Scale, row: Row, installer: str) -> Row:
    py = ws.venv("bare311")
    a = _warm(ws, installed_launcher(ws, installer), py)
    b = Cmd([py, "-c", PASS], ws.base_env())
    row.note = (f"launcher installed by {installer} from the wheel into a fresh venv; warm path taken, "
                "no os/re/typing/click/pydantic/json imported")
    row.summary = paired(a, b, pairs=scale.start).summary()
    return row.judge()


def launch_vs_uv_run(ws: Workspace, scale: Scale, row: Row) -> Row:
    """Like for like: both give `python -c pass` markupsafe from the offline
    wheelhouse, on the same bare venv python (uv: `--with markupsafe`, its
    ephemeral environment; the launcher: `--with markupsafe`, its runtime tree)."""
    py = ws.venv("bare311")
    launcher = installed_launcher(ws, "uv")
    a = _warm(ws, launcher, py)
    uv = shutil.which("uv", path=str(LAUNCHER.parent))
    if uv is None:
        raise CommandFailed(f"uv is not in {LAUNCHER.parent}")
    # --python: without it uv looks for an interpreter of its own first (on
    # this machine the pyenv shim, a shell script: +200 ms that is not uv's).
    # `python` is then the one uv puts first on PATH: its environment's, with markupsafe.
    uv_run = [uv, "run", "--no-project", *WITH_ARGS, "--python", py, "--"]
    b = Cmd([*uv_run, "python", "-c", PASS], ws.base_env())
    # Each side imports markupsafe from where it claims, before anything is timed.
    got_a = _output([launcher, "run", *WITH_ARGS, "--", py, "-c", CHECK_TREE], ws.launcher_env())
    got_b = _output([*uv_run, "python", "-c", CHECK_TREE], b.env)
    if got_a.returncode != 0 or "/trees/cp311-" not in got_a.stdout:
        raise CommandFailed(f"the launcher's python did not import markupsafe from its runtime tree: "
                            f"{got_a.stdout.strip()} {got_a.stderr.strip()[-200:]}")
    if got_b.returncode != 0 or "/markupsafe/" not in got_b.stdout or "/trees/" in got_b.stdout:
        raise CommandFailed(f"uv run --with markupsafe did not import markupsafe from its environment: "
                            f"{got_b.stdout.strip()} {got_b.stderr.strip()[-200:]}")
    row.note = ("both start the same bare venv python with markupsafe from the offline wheelhouse (A: the "
                "runtime tree, warm path; B: uv's cached ephemeral environment); uv given the interpreter "
                "with --python (no discovery); uv's own cache as the user has it")
    row.summary = paired(a, b, pairs=scale.start).summary()
    return row.judge()


BARE = "bare `python -c pass`"


def launch_installed_row(installer: str) -> tuple[Row, RowFn]:
    return (Row(f"launch-{installer}", f"launch: warm `launcher run`, installed with {installer} (3.11)",
                f"`launcher run --with markupsafe ... -- python -c pass` (warm), `{installer} install`d",
                BARE, 2.0),
            lambda ws, scale, row: launch_installed(ws, scale, row, installer))


def launch_vs_uv_run_row() -> tuple[Row, RowFn]:
    return (Row("launch-vs-uv-run", "launch: warm `launcher run` vs `uv run --with markupsafe` (3.11)",
                "`launcher run --with markupsafe ... -- python -c pass` (warm, uv-installed)",
                "`uv run --no-project --with markupsafe ... --python python -- python -c pass`", 1.0),
            launch_vs_uv_run)
