"""Run CPython's concurrent.futures tests against `launcher.Executor`.

    /usr/bin/python3.11 tests/standard/run.py SITE_PACKAGES

The suite belongs to the system python3.11 (Debian's libpython3.11-testsuite
ships it as /usr/lib/python3.11/test/test_concurrent_futures.py), so that
interpreter runs it; the launcher and its dependencies come from the
launcher's venv (SITE_PACKAGES, same cp311 ABI), added to this process's
sys.path only: the workers get no part of it.

Tests that read ProcessPoolExecutor's internals are deselected, each with
its reason, and listed with their count; every test that still fails must
be in KNOWN_FAILURES (named in docs/api.md).  Prints one JSON line last.
"""

import json
import os
import site
import sys
import unittest

INTERNALS = "reads ProcessPoolExecutor internals"
DESELECTED = {
    "LauncherShutdownTest.test_processes_terminate": f"{INTERNALS} (_processes)",
    "LauncherShutdownTest.test_context_manager_shutdown": f"{INTERNALS} (_processes)",
    "LauncherShutdownTest.test_del_shutdown": f"{INTERNALS} (_processes)",
    "LauncherShutdownTest.test_shutdown_no_wait": f"{INTERNALS} (_processes)",
    "LauncherShutdownTest.test_interpreter_shutdown":
        "its child interpreter (-I) imports the executor class by name from concurrent.futures; "
        "tests/test_executor_standard.py covers shutdown(wait=False) then exit",
    "LauncherShutdownTest.test_submit_after_interpreter_shutdown":
        "its child interpreter (-I) imports the executor class by name from concurrent.futures",
    "LauncherShutdownTest.test_hang_gh83386":
        "its child interpreter (-I) imports the executor class by name from concurrent.futures",
    "LauncherExecutorTest.test_killed_child": f"{INTERNALS} (_processes)",
    "LauncherExecutorTest.test_saturation": f"{INTERNALS} (_processes)",
    "LauncherExecutorTest.test_idle_process_reuse_one": f"{INTERNALS} (_processes)",
    "LauncherExecutorTest.test_idle_process_reuse_multiple": f"{INTERNALS} (_processes)",
    "LauncherExecutorTest.test_max_tasks_per_child": f"{INTERNALS} (max_tasks_per_child, _processes)",
    "LauncherExecutorTest.test_max_tasks_per_child_defaults_to_spawn_context":
        f"{INTERNALS} (max_tasks_per_child, _mp_context)",
    "LauncherExecutorTest.test_max_tasks_early_shutdown": f"{INTERNALS} (max_tasks_per_child)",
    "LauncherExecutorTest.test_max_workers_too_large": "Windows only (ProcessPoolExecutor's limit of 61)",
    "LauncherExecutorDeadlockTest.test_shutdown_deadlock_pickle": f"{INTERNALS} (_executor_manager_thread)",
}
# Allowed to fail, each for a reason docs/api.md gives ("The standard's own tests");
# the first two always do, test_cancel_futures depending on thread timing.
KNOWN_FAILURES = {
    "LauncherFailingInitializerTest.test_initializer":
        "its log capture passes a multiprocessing Queue as an initializer argument, which only "
        "multiprocessing's own children may inherit",
    "LauncherExecutorTest.test_traceback":
        "the worker's traceback is a launcher.executor.RemoteTraceback, not "
        "concurrent.futures.process._RemoteTraceback",
    "LauncherShutdownTest.test_cancel_futures":
        "shutdown(cancel_futures=True) cancels every task no worker has begun; the standard has "
        "already queued up to max_workers + 1 calls, which then run (the test counts on one)",
}


def _use_launcher(site_packages):
    before = list(sys.path)
    site.addsitedir(site_packages)  # runs its .pth files: the editable install of the launcher
    added = [p for p in sys.path if p not in before]
    sys.path[:] = added + before  # ahead of Debian's dist-packages


def _name(test):
    cls, _, method = test.id().rpartition(".")
    return cls.rpartition(".")[2] + "." + method


def _flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _flatten(item)
        else:
            yield item


def main(site_packages):
    _use_launcher(site_packages)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import launcher_futures

    tests = list(_flatten(unittest.defaultTestLoader.loadTestsFromModule(launcher_futures)))
    chosen = [t for t in tests if _name(t) not in DESELECTED]
    unknown = set(DESELECTED) - {_name(t) for t in tests}
    print(f"deselected {len(DESELECTED)} of {len(tests)} standard tests:", file=sys.stderr)
    for name, why in sorted(DESELECTED.items()):
        print(f"  {name}: {why}", file=sys.stderr)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(unittest.TestSuite(chosen))
    failed = sorted(_name(t) for t, _ in result.failures + result.errors)
    skipped = sorted(_name(t) for t, _ in result.skipped)
    print("\n" + json.dumps({"ran": result.testsRun, "names": sorted(_name(t) for t in chosen), "deselected": sorted(DESELECTED), "failed": failed,
                      "skipped": skipped, "unknown_deselections": sorted(unknown),
                      "known_failures": KNOWN_FAILURES}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
