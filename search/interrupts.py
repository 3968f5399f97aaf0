"""Keep Ctrl-C from being lost inside the solver.

highspy runs a Python callback during every HiGHS solve started through Pyomo (its keyboard-interrupt hook).  A
SIGINT that arrives while HiGHS runs raises ``KeyboardInterrupt`` inside that callback, where HiGHS swallows it:
the solve finishes (or stops with "interrupted") and the caller never hears of the Ctrl-C.  ``sigint_kept`` notes
every SIGINT delivered while its block runs and raises ``KeyboardInterrupt`` at the end of the block if one came,
so an interrupted solve is never taken for an answer.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["sigint_kept"]


@contextmanager
def sigint_kept() -> Iterator[None]:
    """Run the block with a SIGINT handler that records the signal before acting as the previous handler did;
    raise ``KeyboardInterrupt`` after the block if a SIGINT came and nothing raised it out of the block.

    Outside the main thread (where Python delivers no signals) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    seen: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt
        # SIG_IGN (or a handler set outside Python): nothing more to do

    signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if seen and previous != signal.SIG_IGN:
        raise KeyboardInterrupt
