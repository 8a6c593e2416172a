"""`launcher.Executor`: run Python callables in workers started the launcher
way (runtime tree, gate, preloads), on any interpreter.  See docs/api.md.

`_worker.py` and `_protocol.py` also run inside the workers' interpreters,
where this package is not importable: they are stdlib + cloudpickle only.
"""

from launcher.executor._driver import (
    Executor,
    PayloadError,
    RemoteError,
    RemoteTraceback,
    TaskFuture,
    TaskTimeout,
    WorkerDied,
    WorkerInfo,
    WorkerStartError,
)
from launcher.executor._pickling import BytecodeNotPortable

__all__ = [
    "BytecodeNotPortable", "Executor", "PayloadError", "RemoteError", "RemoteTraceback", "TaskFuture", "TaskTimeout",
    "WorkerDied", "WorkerInfo", "WorkerStartError",
]
