"""launcher: ABI-matched runtime packages and native preloads for every
Python process of a job.

The package import is kept free of heavy imports: `launcher run`'s warm path
imports this module.  The Python API is loaded on first use::

    import launcher
    prepared = launcher.prepare(["python", "-c", "import markupsafe"],
                                flags={"with": ["markupsafe"]})
    prepared.popen().wait()
"""

__version__ = "0.1.0"
__all__ = ["Executor", "Prepared", "prepare", "__version__"]

# Type checkers see the real signatures; at run time `typing` is not even
# imported (the warm path imports this module).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from launcher.executor import Executor
    from launcher.plan import Prepared, prepare


def __getattr__(name: str) -> object:
    if name in ("prepare", "Prepared"):
        from launcher import plan

        return getattr(plan, name)
    if name == "Executor":
        from launcher.executor import Executor

        return Executor
    raise AttributeError(f"module 'launcher' has no attribute {name!r}")
