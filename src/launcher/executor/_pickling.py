"""How callables and arguments are pickled for a worker: cloudpickle, and a
clear error when bytecode would be sent to another Python version."""

from __future__ import annotations

import io
import sys
import types
from typing import TYPE_CHECKING, Any

import cloudpickle

from launcher.executor._protocol import PROTOCOL

if TYPE_CHECKING:
    from launcher.executor._start import WorkerCommand


class BytecodeNotPortable(TypeError):
    """A function sent by value (defined in `__main__`, a lambda) to a worker on
    another Python version: bytecode does not load there."""


class _FoundCode(Exception):
    def __init__(self, code: types.CodeType) -> None:
        self.code = code


class _PortablePickler(cloudpickle.Pickler):
    """cloudpickle, stopping at the first code object it would send by value."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.CodeType:
            raise _FoundCode(obj)
        return super().reducer_override(obj)


def _not_portable(code: types.CodeType, cmd: WorkerCommand) -> BytecodeNotPortable:
    name = getattr(code, "co_qualname", code.co_name)
    theirs = f"{cmd.interpreter.label} ({cmd.interpreter.executable})"
    mine = f"{sys.implementation.name} {sys.version_info[0]}.{sys.version_info[1]}"
    return BytecodeNotPortable(
        f"cannot send {name} ({code.co_filename}, line {code.co_firstlineno}) to a worker on "
        f"{theirs}: it is defined in __main__ or is a lambda, so it would travel as bytecode, and "
        f"bytecode of this {mine} does not load on another Python version. Move it into a module "
        "of your project (next to your script, in the working directory or on PYTHONPATH) and "
        "import it from there: functions of importable modules are sent by name.")


def dumps_for(cmd: WorkerCommand, obj: Any) -> bytes:
    """`obj` pickled for the workers of `cmd`; `BytecodeNotPortable` if it cannot load there."""
    if cmd.same_bytecode:
        return cloudpickle.dumps(obj, protocol=PROTOCOL)
    buf = io.BytesIO()
    try:
        _PortablePickler(buf, protocol=PROTOCOL).dump(obj)
    except _FoundCode as found:
        raise _not_portable(found.code, cmd) from None
    return buf.getvalue()
