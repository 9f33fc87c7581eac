"""Waiting for records on any of several md rings at once (the sidecar's idle wait).

Waiting on one ring at a time, in turn, leaves a record on another shard's ring unseen
until the current wait times out — milliseconds of latency that only multi-shard
deployments show. A :class:`RingSet` parks on every ring's data futex together with
``futex_waitv`` (Linux 5.16+), using the rings' own park handshake
(``ts_ring_park_consumer``), so whichever worker pushes first wakes the sidecar — the
arrangement the gateway's native pump uses for its inbound rings.

The system call is made through ctypes, which releases the GIL for it. On a kernel
without ``futex_waitv`` (ENOSYS), or with more rings than one call takes, the set falls
back to short timed waits on each ring in turn.

The sidecar parks without yielding first (:func:`idle_wait`): measured with
``perf sched`` on a shared 2-CPU host, a thread that calls ``sched_yield`` stays runnable
and, behind a CPU-bound process on its CPU, waits out that process's whole slice
(3.3 ms seen) before it runs again — while a parked thread is woken by the producer's
push and, as a waking sleeper, preempts such a process at once.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from collections.abc import Sequence
from typing import Any

from tradsys._native import ffi, lib
from tradsys.ring import Ring, WaitStrategy
from tradsys.ring.wait import WaitKind

SYS_FUTEX_WAITV = 449  # x86-64 and arm64 (the generic syscall table)
FUTEX_32 = 2
WAITV_MAX = 128
CLOCK_MONOTONIC = 1
FALLBACK_SLICE_S = 0.0002  # per-ring wait when futex_waitv is not available


def idle_wait(configured: WaitStrategy) -> WaitStrategy:
    """The sidecar's wait for records: the configured strategy, but a polite one parks
    straight after its spin instead of yielding first (see the module's docstring).

    Busy-spin (a pinned, isolated core) and spin-yield (a deployment that chose never to
    park) are kept as they are."""
    if configured.kind != WaitKind.SPIN_PARK or configured.yield_iters == 0:
        return configured
    return WaitStrategy(WaitKind.SPIN_PARK, spin_iters=configured.spin_iters, yield_iters=0)


class _FutexWaitv(ctypes.Structure):
    _fields_ = [
        ("val", ctypes.c_uint64),
        ("uaddr", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
    ]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class RingSet:
    """The consumer side of several rings, waited on together."""

    def __init__(self, rings: Sequence[Ring], wait: WaitStrategy) -> None:
        self.rings = list(rings)
        self.wait = wait
        self._handles: list[Any] = [r.handle for r in self.rings]
        self._waitv = (_FutexWaitv * max(1, len(self.rings)))()
        self._word = ffi.new("uint32_t **")
        self._seen = ffi.new("uint32_t *")
        self._libc = ctypes.CDLL(None, use_errno=True)
        # syscall(long number, ...): every argument a full register wide
        self._syscall = self._libc.syscall
        self._syscall.restype = ctypes.c_long
        self._syscall.argtypes = [
            ctypes.c_long,
            ctypes.c_void_p,
            ctypes.c_long,
            ctypes.c_long,
            ctypes.c_void_p,
            ctypes.c_long,
        ]
        self.waitv = 1 < len(self.rings) <= WAITV_MAX
        self._turn = 0

    def readable(self) -> int:
        """Records waiting in all rings together."""
        return sum(int(lib.ts_ring_readable(h)) for h in self._handles)

    def wait_readable(self, timeout: float) -> int:
        """Block until some ring holds a record or ``timeout`` seconds pass; returns the
        records waiting then (0 on timeout)."""
        if len(self.rings) == 1:
            return self.rings[0].wait_readable(self.wait, timeout=timeout)
        deadline = time.monotonic() + timeout
        # spin, then yield, as the strategy says (the park is the costly part to wake)
        for _ in range(max(1, self.wait.spin_iters // 50)):
            if n := self.readable():
                return n
        yields = self.wait.yield_iters if self.wait.kind == WaitKind.SPIN_PARK else 1 << 30
        for _ in range(yields):
            if n := self.readable():
                return n
            if time.monotonic() >= deadline:
                return 0
            if self.wait.kind == WaitKind.BUSY_SPIN:
                continue
            os.sched_yield()
        if not self.waitv:
            return self._timed_turns(deadline)
        return self._park(deadline)

    def _park(self, deadline: float) -> int:
        parked = 0
        try:
            for k, h in enumerate(self._handles):
                n = int(lib.ts_ring_park_consumer(h, self._word, self._seen))
                if n:
                    return n
                parked = k + 1
                w = self._waitv[k]
                w.val = self._seen[0]
                w.uaddr = int(ffi.cast("uintptr_t", self._word[0]))
                w.flags = FUTEX_32
            left = deadline - time.monotonic()
            if left <= 0:
                return self.readable()
            # the timeout is absolute on CLOCK_MONOTONIC (Python's monotonic clock)
            ts = _Timespec(int(deadline), int((deadline % 1) * 1e9))
            rc = self._syscall(
                SYS_FUTEX_WAITV,
                ctypes.addressof(self._waitv),
                len(self._handles),
                0,
                ctypes.addressof(ts),
                CLOCK_MONOTONIC,
            )
            if rc < 0 and ctypes.get_errno() == errno.ENOSYS:
                self.waitv = False
            return self.readable()
        finally:
            for h in self._handles[:parked]:
                lib.ts_ring_unpark_consumer(h)

    def _timed_turns(self, deadline: float) -> int:
        """Without futex_waitv: short waits on each ring in turn, until the deadline."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return self.readable()
            ring = self.rings[self._turn % len(self.rings)]
            self._turn += 1
            ring.wait_readable(self.wait, timeout=min(left, FALLBACK_SLICE_S))
            if n := self.readable():
                return n
