"""The sitecustomize we shadow still runs, exactly once; PYTHONPATH stays the user's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import launcher, missing, offline_with


def test_venv_sitecustomize_runs_once(tmp_path: Path, env: dict[str, str], py313: str) -> None:
    venv = tmp_path / "venv"
    subprocess.run([py313, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "sitecustomize.py").write_text("import sys\nsys.stderr.write('VENV-SITECUSTOMIZE\\n')\n"
                                           "def helper():\n    return 'helped'\n")
    proc = launcher("run", *offline_with("six"), "--", str(venv / "bin" / "python"), "-c",
                    "import six, sitecustomize; print(six.__file__); print(sitecustomize.__file__); "
                    "print(sitecustomize.helper())",
                    env=env, check=True)
    assert proc.stderr.count("VENV-SITECUSTOMIZE") == 1
    six_file, chained_file, helped = proc.stdout.split()
    assert "/trees/" in six_file
    # `import sitecustomize` gives the module the gate shadowed, as in a bare run.
    assert chained_file == str(site / "sitecustomize.py")
    assert helped == "helped"


def test_debian_sitecustomize_runs_once(tmp_path: Path, env: dict[str, str]) -> None:
    debian = Path("/usr/lib/python3.11/sitecustomize.py")
    if not debian.exists():
        missing("no Debian python3.11 here (apt-get install libpython3.11-minimal)")
    # Debian's sitecustomize imports apport_python_hook: provide one that says it ran.
    hook = tmp_path / "userpath"
    hook.mkdir()
    (hook / "apport_python_hook.py").write_text(
        "import sys\ndef install():\n    sys.stderr.write('DEBIAN-SITECUSTOMIZE\\n')\n")
    env["PYTHONPATH"] = str(hook)
    proc = launcher("run", "--", "/usr/bin/python3.11", "-c", "pass", env=env, check=True)
    assert proc.stderr.count("DEBIAN-SITECUSTOMIZE") == 1


def test_user_pythonpath_keeps_its_place_and_nesting_is_idempotent(
        tmp_path: Path, env: dict[str, str], py311: str) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    env["PYTHONPATH"] = f"{a}{os.pathsep}{b}"
    show = ("import os, sys; print(os.environ['PYTHONPATH']); "
            "print('\\n'.join(p for p in sys.path if p))")
    once = launcher("run", "--", py311, "-c", show, env=env, check=True)
    nested = launcher("run", "--", "launcher", "run", "--", py311, "-c", show, env=env, check=True)
    for proc in (once, nested):
        pythonpath, *syspath = proc.stdout.splitlines()
        entries = pythonpath.split(os.pathsep)
        assert len(entries) == 3 and "/bootstrap/" in entries[0]
        assert entries[1:] == [str(a), str(b)]
        assert syspath[:3] == entries
        assert sum("/bootstrap/" in p for p in syspath) == 1
        assert os.getcwd() not in syspath and str(tmp_path) not in syspath
    assert once.stdout == nested.stdout


def test_user_sitecustomize_on_pythonpath_is_chained(tmp_path: Path, env: dict[str, str], py311: str) -> None:
    user = tmp_path / "user"
    user.mkdir()
    log = tmp_path / "ran"
    # The launcher itself is a Python program and runs it too: count only the workload's runs.
    (user / "sitecustomize.py").write_text(
        f"import os, sys\nopen({str(log)!r}, 'a').write(sys.executable + '\\n')\n")
    env["PYTHONPATH"] = str(user)
    launcher("run", "--", py311, "-c", "pass", env=env, check=True)
    assert log.read_text().splitlines().count(py311) == 1
