"""Short scheduler slices for the md sidecar's threads on the quiet market's path."""

from __future__ import annotations

import logging
import os
import threading
import time

from tradsys.cores.sched_slice import set_thread_slice

log = logging.getLogger("tradsys.md")


def short_slices(slice_us: int, io_threads: int) -> None:
    """The publishing thread and ZeroMQ's I/O threads (started with the first socket)
    hand each quiet-market record on to each other, and on a shared core to the shard
    worker: a short slice lets each run as soon as it is woken (tradsys.cores.sched_slice).
    The stats writer thread keeps the default: its file writes are not on the path."""
    if not slice_us:
        return
    me = threading.get_native_id()
    for tid, name in threads_once_named(io_threads).items():
        if tid == me or name.startswith("ZMQbg/IO"):
            try:
                set_thread_slice(slice_us * 1000, tid)
            except OSError as exc:
                log.warning("md: %s; running with the default slice", exc)


def threads_once_named(io_threads: int, timeout_s: float = 2.0) -> dict[int, str]:
    """{tid: name} of this process's threads, once ZeroMQ's ``io_threads`` I/O threads
    carry their names: each names itself after it starts, so one listed in that instant
    is still called after the process and would be taken for another thread."""
    deadline = time.monotonic() + timeout_s
    while True:
        names = {}
        for tid in sorted(int(t) for t in os.listdir("/proc/self/task")):
            try:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    names[tid] = f.read().strip()
            except OSError:  # a thread that just ended
                continue
        named = sum(name.startswith("ZMQbg/IO") for name in names.values())
        if named >= io_threads or time.monotonic() >= deadline:
            return names
        time.sleep(0.0005)
