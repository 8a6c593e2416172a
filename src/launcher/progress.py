"""Progress for slow steps (building a runtime tree): nothing for the first
half second, then a live rich line on a terminal (spinner, what, for which
ABI, elapsed) or one plain `launcher:` line off a terminal.  Always stderr,
never stdout; `quiet` says nothing.

A step that finishes within the delay shows nothing at all, so warm and
fast runs stay silent.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, TextIO

from launcher.words import plural

if TYPE_CHECKING:
    from launcher.tree import TreeResult

DELAY = 0.5

Activity = Callable[[str], AbstractContextManager[object]]


def activity_for(stream: TextIO, *, quiet: bool, say: Callable[[str], None]) -> Activity | None:
    """The progress `plan.prepare(activity=...)` shows on `stream`, or None when quiet."""
    if quiet:
        return None
    return _live(stream) if on_terminal(stream) else _plain(say)


def built_line(result: TreeResult) -> str:
    """What a finished build says once its live line has vanished (run -v,
    a terminal, or a build the gate started)."""
    return (f"{result.state} runtime {result.path.name} ("
            f"{plural(len(result.manifest.distributions), 'package')}) in {result.manifest.build_seconds:.1f}s")


def on_terminal(stream: TextIO) -> bool:
    """Is `stream` a terminal?  False for a closed or replaced one (`2>&-`)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _plain(say: Callable[[str], None]) -> Activity:
    @contextlib.contextmanager
    def activity(text: str) -> Iterator[None]:
        with _after(DELAY, lambda: say(f"{text} ..."), lambda: None):
            yield

    return activity


def _live(stream: TextIO) -> Activity:
    @contextlib.contextmanager
    def activity(text: str) -> Iterator[None]:
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Column

        described = TextColumn("{task.description}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis"))
        progress = Progress(SpinnerColumn(), described, TimeElapsedColumn(),
                            console=Console(file=stream), transient=True,
                            redirect_stdout=False, expand=True)
        progress.add_task(escape(text), total=None)
        with _after(DELAY, progress.start, progress.stop):
            yield

    return activity


@contextlib.contextmanager
def _after(delay: float, start: Callable[[], None], stop: Callable[[], None]) -> Iterator[None]:
    """Call `start` once `delay` has passed inside the block; `stop` at its end if it started."""
    lock = threading.Lock()
    state = {"done": False, "started": False}

    def fire() -> None:
        with lock:
            if not state["done"]:
                state["started"] = True
                start()

    timer = threading.Timer(delay, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            state["done"] = True
            if state["started"]:
                stop()
