"""CPython's own concurrent.futures tests (Debian's libpython3.11-testsuite),
their ProcessPool mixins pointed at `launcher.Executor`.

Only the constructor's shape is adapted: `ProcessPoolExecutor(max_workers,
mp_context, initializer, initargs)` onto `launcher.Executor` (which starts
its workers the launcher way, whatever `mp_context` says).  No test body is
copied.  Run by the system python3.11 the suite belongs to (see run.py);
its workers import this module too (tasks such as `self._test_traceback`
travel by name), so it imports the launcher only when it builds an executor.
"""

from test import test_concurrent_futures as std

setUpModule = std.setUpModule


def launcher_pool(max_workers=None, mp_context=None, initializer=None, initargs=(), *,
                  max_tasks_per_child=None):
    import launcher

    if max_tasks_per_child is not None:
        raise TypeError("launcher.Executor has no max_tasks_per_child")
    return launcher.Executor(max_workers=max_workers, initializer=initializer, initargs=initargs)


class LauncherMixin(std.ProcessPoolSpawnMixin):
    executor_type = staticmethod(launcher_pool)


# Every mixin the standard runs against ProcessPoolExecutor.
MIXINS = (std.InitializerMixin, std.FailingInitializerMixin, std.ProcessPoolShutdownTest, std.WaitTests,
          std.AsCompletedTests, std.ProcessPoolExecutorTest, std.ExecutorDeadlockTest)

for _mixin in MIXINS:
    # InitializerMixin -> LauncherInitializerTest, ProcessPoolShutdownTest -> LauncherShutdownTest
    _name = "Launcher" + _mixin.__name__.replace("ProcessPool", "").replace("Mixin", "").replace("Tests", "")
    _name = _name if _name.endswith("Test") else _name + "Test"
    globals()[_name] = type(_name, (_mixin, LauncherMixin, std.BaseTestCase), {})
del _mixin, _name
