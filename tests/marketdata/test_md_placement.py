"""Where the md sidecar's ZeroMQ I/O thread runs: beside a polite sidecar, away from a
busy-spinning one (tradsys.marketdata.placement)."""

from __future__ import annotations

import os
import time
from typing import Any

import zmq

from tradsys.marketdata.placement import io_thread_cpus, place_io_threads
from tradsys.ring import WaitStrategy


def test_a_polite_or_unpinned_sidecar_keeps_its_io_thread_beside_it() -> None:
    for wait in (WaitStrategy.spin_park(), WaitStrategy.spin_yield()):
        assert io_thread_cpus(0, wait, {0, 1, 2}) is None
    assert io_thread_cpus(None, WaitStrategy.busy_spin(), {0, 1, 2}) is None


def test_a_busy_spinning_pinned_sidecar_sends_its_io_thread_elsewhere() -> None:
    assert io_thread_cpus(1, WaitStrategy.busy_spin(), {0, 1, 2}) == {0, 2}
    # one CPU only: nowhere else to go, so it stays (and the config chose that)
    assert io_thread_cpus(0, WaitStrategy.busy_spin(), {0}) is None


def _tasks() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def _io_threads(new: set[str], timeout_s: float = 10.0) -> dict[str, str]:
    """{tid: Cpus_allowed_list} of the new threads ZeroMQ named as I/O threads."""
    deadline = time.monotonic() + timeout_s
    found: dict[str, str] = {}
    while time.monotonic() < deadline and not found:
        for tid in new:
            try:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    if not f.read().startswith("ZMQbg/IO"):
                        continue
                with open(f"/proc/self/task/{tid}/status") as f:
                    allowed = [ln for ln in f if ln.startswith("Cpus_allowed_list:")]
                found[tid] = allowed[0].split(":", 1)[1].strip()
            except FileNotFoundError:
                continue
    return found


def test_the_context_starts_its_io_thread_on_the_cpus_given(ctx: zmq.Context[Any]) -> None:
    cpu = max(os.sched_getaffinity(0))
    before = _tasks()
    place_io_threads(ctx, {cpu})
    sock = ctx.socket(zmq.PUB)  # the I/O thread starts with the first socket
    sock.bind("inproc://placement")
    threads = _io_threads(_tasks() - before)
    assert threads, "no ZeroMQ I/O thread appeared"
    assert set(threads.values()) == {str(cpu)}
    sock.close()
