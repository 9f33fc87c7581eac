"""Where the md sidecar's ZeroMQ I/O thread runs, given where the sidecar is pinned.

Every message the sidecar publishes is handed to ZeroMQ's I/O thread, which writes it
to the subscribers' sockets: one wake-up per quiet-market message. Its place matters:

- A **polite** sidecar (spin-park, spin-yield) pinned with ``[md] core`` keeps its I/O
  thread on the same core (the thread inherits the pin): the wake-up stays on that CPU
  and the I/O thread runs as soon as the sidecar parks. Measured with ``perf sched``
  on the md bench's 2-vCPU VM (``perf/_md_wakeups.py``), the I/O thread woken across
  CPUs took ~45 µs at the median to pass the message on, woken on the sidecar's CPU
  6-11 µs.
- A **busy-spinning** sidecar never leaves its core: an I/O thread pinned beside it
  runs only when the scheduler preempts the spinner (measured: the ZeroMQ hop's median
  +25-40 µs; a whole time slice whenever the wake-up does not preempt). Its I/O thread
  goes to the process's other CPUs instead.
"""

from __future__ import annotations

from typing import Any

import zmq

from tradsys.ring import WaitStrategy
from tradsys.ring.wait import WaitKind


def io_thread_cpus(core: int | None, wait: WaitStrategy, allowed: set[int]) -> set[int] | None:
    """The CPUs for ZeroMQ's I/O thread, or None to leave it where the process runs.

    ``allowed`` is where the process could run before it was pinned to ``core``."""
    if core is None or wait.kind != WaitKind.BUSY_SPIN:
        return None
    others = allowed - {core}
    return others or None  # a single CPU: nowhere else to go


def place_io_threads(ctx: zmq.Context[Any], cpus: set[int] | None) -> None:
    """Confine the context's I/O threads to ``cpus``; call before its first socket
    (ZeroMQ starts them with it)."""
    for cpu in sorted(cpus or ()):
        ctx.set(zmq.THREAD_AFFINITY_CPU_ADD, cpu)
