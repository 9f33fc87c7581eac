"""The scheduler slice of a latency-critical thread (Linux ≥ 6.12, EEVDF custom slices).

Linux's fair scheduler lets a running task keep its CPU for a whole slice (here 1.4 ms
by default, 0.75 ms * (1 + log2 CPUs)) before a task that woke or yielded to it gets a
turn, unless the waiting task asked for a shorter slice: ``sched_setattr`` with
``SCHED_OTHER`` and ``sched_runtime`` = the slice. A short slice gives a task an earlier
virtual deadline, so it is picked first when it becomes runnable, and it may preempt a
task with a longer slice at wake-up. The pump, a shard worker and a colocated client
sharing a CPU hand records to each other every few µs; with the default slice each
hand-over could wait out a millisecond. Nothing here changes the thread's CPU share
(its nice value), only how soon it runs once runnable.

What a slice cannot do: on a kernel built without kernel preemption (``PREEMPT_NONE``,
the default of many distribution and VM kernels) a thread busy in the kernel -- a kernel
thread such as ``kdamond``, or a process in a long system call -- keeps the CPU until it
sleeps or reaches a preemption point, whatever the slice of the thread that woke behind
it (1-1.6 ms seen on the md bench's VM); only keeping such work off the engine's CPUs
helps (tuning/apply.sh).

``[engine] sched_slice_us`` (0: the kernel's default) asks for it in the shard workers,
the gateway's pump and the md sidecar (its loop and ZeroMQ's I/O threads); a colocated
client or a market-data subscriber calls :func:`set_thread_slice` itself. The
kernel accepts 100 µs to 100 ms; older kernels ignore ``sched_runtime`` for fair tasks
(the call succeeds and changes nothing), which :func:`thread_slice_ns` shows.
"""

from __future__ import annotations

import ctypes
import os
import struct

_SYS_SCHED_SETATTR = 314  # x86_64; aarch64 has 274
_SYS_SCHED_GETATTR = 315  # aarch64 275
if os.uname().machine == "aarch64":
    _SYS_SCHED_SETATTR, _SYS_SCHED_GETATTR = 274, 275
# struct sched_attr, SCHED_ATTR_SIZE_VER1: size, policy, flags, nice, priority, runtime,
# deadline, period, util_min, util_max
_ATTR = struct.Struct("<IIQiIQQQII")
SCHED_OTHER = 0
MIN_SLICE_US, MAX_SLICE_US = 100, 100_000

_libc = ctypes.CDLL(None, use_errno=True)


def set_thread_slice(slice_ns: int, tid: int = 0) -> None:
    """Give thread ``tid`` (0: the calling thread) a fair-scheduler slice of ``slice_ns``
    (0: back to the default), keeping its nice value. OSError if the kernel refuses."""
    what = f"sched_setattr(thread {tid or 'self'}, slice {slice_ns} ns)"
    try:
        nice = os.getpriority(os.PRIO_PROCESS, tid)
    except OSError as exc:
        raise OSError(exc.errno, f"{what}: {exc.strerror}") from None
    attr = ctypes.create_string_buffer(
        _ATTR.pack(_ATTR.size, SCHED_OTHER, 0, nice, 0, slice_ns, 0, 0, 0, 0), _ATTR.size
    )
    if _libc.syscall(_SYS_SCHED_SETATTR, tid, attr, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def thread_slice_ns(tid: int = 0) -> int:
    """The slice thread ``tid`` (0: the calling thread) runs with, in ns."""
    buf = ctypes.create_string_buffer(_ATTR.size)
    if _libc.syscall(_SYS_SCHED_GETATTR, tid, buf, _ATTR.size, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sched_getattr: {os.strerror(err)}")
    return int(_ATTR.unpack(buf.raw)[5])
