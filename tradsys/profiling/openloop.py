"""Open-loop load: requests go out on a fixed timetable, whatever the system under test
does, and each latency is measured from the request's *intended* send time.

A closed loop (send, wait for the reply, send the next) slows down exactly when the
system does, so the queue that a real client would build never forms and the tail is
hidden ("coordinated omission"). Measuring from the intended time puts the queueing
back: if the sender falls behind its timetable, that delay is latency too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OpenLoop:
    """``count`` sends at ``rate`` per second, the first ``start_ns`` (monotonic)."""

    rate: float
    count: int
    start_ns: int = 0

    def intended_ns(self, start_ns: int | None = None) -> np.ndarray:
        """The timetable: send i is due at start + i / rate (start: ``start_ns`` if
        given here, else the field, else now)."""
        start = start_ns or self.start_ns or time.monotonic_ns()
        offsets = np.arange(self.count, dtype=np.float64) * (1e9 / self.rate)
        return start + offsets.astype(np.int64)

    def run(
        self,
        send: Callable[[int, int], None],
        poll: Callable[[], None] | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> np.ndarray:
        """Call ``send(i, intended_ns)`` when each send falls due (at once when late, so
        lateness is kept, not skipped), and ``poll()`` while waiting — where a caller
        drains replies. Returns the timetable, for latency = reply time - intended."""
        due = self.intended_ns(self.start_ns or clock())
        for i, at in enumerate(due.tolist()):
            while clock() < at:
                if poll is not None:
                    poll()
            send(i, at)
        return due

    @property
    def duration_s(self) -> float:
        return self.count / self.rate
