"""The demo workload: a parent that starts multiprocessing *spawn* workers and
`subprocess` children on other interpreters (DEMO_CHILDREN); every process
reports its ABI and where its `--with` package (markupsafe, a C extension)
was imported from."""

import multiprocessing as mp
import os
import subprocess
import sys

REPORT = """
import os, sys, _imp, markupsafe._speedups as s
role = sys.argv[1] if len(sys.argv) > 1 else "worker"
sys.stdout.write("%-26s pid %-7d %-35s %s\\n" % (role, os.getpid(), _imp.extension_suffixes()[0], s.__file__))
sys.stdout.flush()
"""


def report(role: str) -> None:
    sys.argv = ["-", role]
    exec(REPORT)


if __name__ == "__main__":
    report("parent")
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=report, args=(f"spawn worker {i}",)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for exe in os.environ.get("DEMO_CHILDREN", "").split(os.pathsep):
        if exe:
            subprocess.run([exe, "-c", REPORT, "subprocess " + os.path.basename(exe)], check=True)
