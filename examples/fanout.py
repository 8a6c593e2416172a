"""The demo workload: a parent that starts multiprocessing *spawn* workers and
`subprocess` children on other interpreters (DEMO_CHILDREN); every process
reports its ABI, whether jemalloc is mapped into it, and where its `--with`
package (markupsafe, a C extension) was imported from."""

import multiprocessing as mp
import os
import subprocess
import sys

COLUMNS = "%-24s %-8s %-36s %-9s %s"
REPORT = """
import os, sys, _imp, markupsafe._speedups as s
role = sys.argv[1] if len(sys.argv) > 1 else "worker"
with open("/proc/self/maps") as f:
    jemalloc = "yes" if "libjemalloc" in f.read() else "no"
where, cache = s.__file__, os.environ.get("LAUNCHER_CACHE_DIR", "")
if cache and where.startswith(cache + "/"):
    where = "<cache>" + where[len(cache):]
sys.stdout.write("%s\\n" % (COLUMNS % (role, os.getpid(), _imp.extension_suffixes()[0], jemalloc, where)))
sys.stdout.flush()
"""


def report(role: str) -> None:
    sys.argv = ["-", role]
    exec(REPORT, {"COLUMNS": COLUMNS})


if __name__ == "__main__":
    print(COLUMNS % ("PROCESS", "PID", "ABI (extension suffix)", "JEMALLOC", "MARKUPSAFE IMPORTED FROM"))
    sys.stdout.flush()
    report("parent")
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=report, args=(f"spawn worker {i}",)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for exe in os.environ.get("DEMO_CHILDREN", "").split(os.pathsep):
        if exe:
            code = f"COLUMNS = {COLUMNS!r}\n{REPORT}"
            subprocess.run([exe, "-c", code, "subprocess " + os.path.basename(exe)], check=True)
