"""Ctrl-C held back across the few calls that make something only their caller can undo.

A KeyboardInterrupt is raised wherever the interpreter next looks for signals -- also
just after a C call has made a shared-memory segment and before its handle reaches a
name the caller's cleanup can see. The segment then outlives the process (`tradsys
selfcheck` left one about every other Ctrl-C). Inside :func:`interrupts_deferred` a SIGINT
is only noted, and raised as the block ends, once the caller holds what it made.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Run the block whole; a SIGINT that came meanwhile is raised at its end (as the
    handler that was in place would have: KeyboardInterrupt by default). Off the main
    thread, where Python takes no signal, it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[FrameType | None] = []
    previous = signal.signal(signal.SIGINT, lambda _signum, frame: came.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if not came:
        return
    if callable(previous):
        previous(signal.SIGINT, came[0])
    elif previous == signal.SIG_DFL:
        signal.raise_signal(signal.SIGINT)  # the default: the process ends by it
