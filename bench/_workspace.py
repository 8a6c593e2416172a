"""Everything the benchmarks run against, built once in a throwaway directory:
the interpreters (or why one is absent), bare and prepared venvs, the runtime
trees, the workload scripts, and the environments for each side."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import FOREIGN, LAUNCHER, PYTHONS, REPO, SHARED, WHEELHOUSE  # noqa: E402,F401

EXECUTOR_BENCH = Path(__file__).resolve().parent / "_executor_bench.py"
EXECUTOR_STARTUP = Path(__file__).resolve().parent / "_executor_startup.py"
# loky, for the executor rows only: installed into the scratch dir, never a
# dependency of the project.
LOKY = "loky==3.7.0"

# What `--with markupsafe` means here: offline, from the shared wheelhouse.
WITH_ARGS = ["--with", "markupsafe", "--find-links", str(WHEELHOUSE), "--offline"]
WITH_FLAGS: dict[str, Any] = {"with": ["markupsafe"], "find-links": [str(WHEELHOUSE)], "offline": True}

FANOUT = '''\
# A parent starting 16 multiprocessing spawn workers that import markupsafe.
import multiprocessing as mp
import sys


def work(q):
    import markupsafe

    q.put(markupsafe.__file__)


if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    procs = [ctx.Process(target=work, args=(q,)) for _ in range(16)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    files = [q.get() for _ in procs]
    if sys.argv[1:] == ["--print"]:
        print("\\n".join(files))
    sys.exit(0 if all(p.exitcode == 0 for p in procs) else 1)
'''

HERD = '''\
#!/bin/bash
# herd.sh N PYTHON: N concurrent workers that must import markupsafe from a
# runtime tree.  A bash parent: the launcher cannot see which interpreter it
# starts, so every worker's gate takes the miss path on a cold cache.
# herd.sh N PYTHON bare: the same N workers with no launcher (the floor:
# PYTHON is then a venv that has markupsafe installed).
n=$1; py=$2; pids=()
code='import sys, markupsafe; sys.exit(0 if "/trees/" in markupsafe.__file__ else 3)'
[ "$3" = bare ] && code='import markupsafe'
for _ in $(seq "$n"); do
    "$py" -c "$code" &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
'''

CHAINED_SITECUSTOMIZE = "import os\nos.environ['BENCH_CHAINED'] = '1'\n"


class Missing(Exception):
    """A prerequisite is absent: the rows that need it are skipped with this reason."""


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = root / "cache"
        self.work = root / "work"  # the cwd of every command: no project file above it
        self.work.mkdir(parents=True, exist_ok=True)
        self.base_python = str(getattr(sys, "_base_executable", sys.executable))
        self._venvs: dict[str, str] = {}
        (self.work / "fanout.py").write_text(FANOUT)
        herd = self.work / "herd.sh"
        herd.write_text(HERD)
        herd.chmod(0o755)
        if not WHEELHOUSE.is_dir():
            raise SystemExit(f"bench: the offline wheelhouse {WHEELHOUSE} is missing "
                             "(set LAUNCHER_TEST_SHARED to the shared dir)")

    # ------------------------------------------------------------ interpreters

    @staticmethod
    def foreign(name: str) -> str:
        path = FOREIGN[name]
        if not path.exists():
            raise Missing(f"{path} is absent: run 'make pythons' to unpack ../shared/pythons")
        return str(path)

    def venv(self, name: str, *, packages: tuple[str, ...] = (), sitecustomize: str | None = None,
             base: str | None = None) -> str:
        """A venv of `base` (default: the machine's own python3, its real binary,
        not the pyenv shim), without pip: bare unless `packages` or a
        sitecustomize are asked for."""
        if name in self._venvs:
            return self._venvs[name]
        d = self.root / "venvs" / name
        subprocess.run([base or self.base_python, "-m", "venv", "--without-pip", str(d)], check=True)
        py = str(d / "bin" / "python")
        if packages:
            from launcher.uvbin import find_uv

            subprocess.run([find_uv(), "pip", "install", "--quiet", "--python", py, "--offline",
                            "--no-index", "--find-links", str(WHEELHOUSE), *packages],
                           check=True, env=self.base_env())
        if sitecustomize is not None:
            site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip()
            Path(site, "sitecustomize.py").write_text(sitecustomize)
        self._venvs[name] = py
        return py

    def version(self, py: str) -> str:
        return subprocess.run([py, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                              check=True, capture_output=True, text=True).stdout.strip()

    def loky(self) -> Path:
        """A directory holding loky (from PyPI, with uv), for PYTHONPATH."""
        target = self.root / "loky"
        if not (target / "loky").is_dir():
            from launcher.uvbin import find_uv

            proc = subprocess.run([find_uv(), "pip", "install", "--quiet", "--target", str(target), LOKY],
                                  capture_output=True, text=True, env=self.base_env())
            if proc.returncode != 0:
                raise Missing(f"could not install {LOKY} for the comparison "
                              f"(uv: {proc.stderr.strip()[-200:]})")
        return target

    # ---------------------------------------------------------- environments

    @staticmethod
    def base_env() -> dict[str, str]:
        """The caller's environment with nothing of ours (PYTHONDONTWRITEBYTECODE stays as it is)."""
        drop = ("PYTHONPATH", "LD_PRELOAD", "PYTHON_EXEC", "PYTHONPROFILEIMPORTTIME", "VIRTUAL_ENV")
        return {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHER_") and k not in drop}

    def launcher_env(self, cache: Path | None = None) -> dict[str, str]:
        env = self.base_env()
        env["LAUNCHER_CACHE_DIR"] = str(cache or self.cache)
        return env

    def prepare(self, py: str, **flags: Any) -> Any:
        """The launcher's environment for `py -c pass`, from the Python API: side A
        gets exactly what `launcher run` would exec, without paying its start-up."""
        import launcher

        merged = dict(WITH_FLAGS, **{k.replace("_", "-"): v for k, v in flags.items()})
        merged["cache-dir"] = str(self.cache)
        return launcher.prepare([py, "-c", "pass"], flags=merged, environ=self.base_env(), cwd=self.work)

    def run_args(self, *command: str) -> list[str]:
        return [str(LAUNCHER), "run", *WITH_ARGS, "--", *command]

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
