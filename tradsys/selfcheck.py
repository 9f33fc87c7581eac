"""A one-minute proof that this host can run TradSys: native core built, shared memory
usable, and two processes talking through a ring at microsecond latency.

It is what `tradsys run` does until the process-per-core runtime lands: a newcomer's
first command should exercise the real moving parts, not print a banner.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from tradsys import wire
from tradsys.ring import Ring, WaitStrategy, segment_name

_ROUND_TRIPS = 20_000


@dataclass(frozen=True)
class SelfCheckResult:
    round_trips: int
    p50_us: float
    p99_us: float
    batch_records: int
    batch_rate: float


def _echo(ping_name: str, pong_name: str, count: int) -> None:
    """Child side: bounce each ping record back on the pong ring."""
    spin = WaitStrategy.spin_yield()
    with (
        Ring.attach(
            ping_name,
            slot_size=wire.RECORD_SIZE,
            layout_version=wire.LAYOUT_VERSION,
            role="consumer",
        ) as ping,
        Ring.attach(
            pong_name,
            slot_size=wire.RECORD_SIZE,
            layout_version=wire.LAYOUT_VERSION,
            role="producer",
        ) as pong,
    ):
        buf = np.zeros(4096, wire.COMMAND_DTYPE)
        moved = 0
        while moved < count:
            n = ping.pop_wait(buf, spin, timeout=10.0)
            if n == 0:
                return  # the parent is gone or stuck; it reports the failure
            pong.push_all(buf[:n], spin, timeout=10.0)
            moved += n


def _start_echo(ping_name: str, pong_name: str, count: int) -> subprocess.Popen[bytes]:
    """The echo child, in a process group of its own. Ctrl-C is the parent's to handle
    (it kills the child on its way out): a terminal sends it to the foreground group,
    which the child is not in, so no traceback of the child prints over the parent's
    one line. (It used to start with SIGINT ignored, inherited from a window in which
    the parent ignored it too: a Ctrl-C landing in that window was dropped, and
    selfcheck ran on to "host OK".)"""
    return subprocess.Popen(
        [sys.executable, "-m", "tradsys.selfcheck", ping_name, pong_name, str(count)],
        stdin=subprocess.DEVNULL,
        process_group=0,
    )


def run_selfcheck(instance: str | None = None) -> SelfCheckResult:
    """Round-trip records through a child process; raise RuntimeError if any is lost."""
    instance = instance or f"selfcheck{os.getpid()}"
    spin = WaitStrategy.spin_yield()
    kw = {"slot_size": wire.RECORD_SIZE, "layout_version": wire.LAYOUT_VERSION}
    batch = 1_000_000
    with (
        Ring.create(
            segment_name(instance, "ping"), capacity=1 << 14, role="producer", **kw
        ) as ping,
        Ring.create(
            segment_name(instance, "pong"), capacity=1 << 14, role="consumer", **kw
        ) as pong,
    ):
        child = _start_echo(ping.name, pong.name, _ROUND_TRIPS + batch)
        try:
            one = np.zeros(1, wire.COMMAND_DTYPE)
            back = np.zeros(1, wire.COMMAND_DTYPE)
            samples = np.empty(_ROUND_TRIPS, np.int64)
            for i in range(_ROUND_TRIPS):
                one["order_id"] = i
                t0 = time.perf_counter_ns()
                ping.push_all(one, spin, timeout=5.0)
                if pong.pop_wait(back, spin, timeout=5.0) != 1 or back["order_id"][0] != i:
                    raise RuntimeError(f"round trip {i} lost or reordered")
                samples[i] = time.perf_counter_ns() - t0

            records = np.zeros(batch, wire.COMMAND_DTYPE)
            records["order_id"] = np.arange(batch)
            received = np.zeros(batch, wire.COMMAND_DTYPE)
            t0 = time.perf_counter_ns()
            sent = got = 0
            while got < batch:
                if sent < batch:
                    sent += ping.push_batch(records[sent : sent + 8192])
                n = pong.pop_batch(received[got : got + 8192])
                if n == 0 and sent == batch and pong.wait_readable(spin, timeout=5.0) == 0:
                    raise RuntimeError(f"batch echo stalled after {got} records")
                got += n
            elapsed = (time.perf_counter_ns() - t0) / 1e9
            if not np.array_equal(received["order_id"], records["order_id"]):
                raise RuntimeError("batch echo returned records out of order or altered")
        except BaseException:  # a failure or Ctrl-C: the child's records no longer matter
            child.kill()
            raise
        finally:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return SelfCheckResult(
        round_trips=_ROUND_TRIPS,
        p50_us=float(np.percentile(samples, 50)) / 1e3,
        p99_us=float(np.percentile(samples, 99)) / 1e3,
        batch_records=batch,
        batch_rate=batch / elapsed,
    )


if __name__ == "__main__":  # the echo child (_start_echo)
    _echo(sys.argv[1], sys.argv[2], int(sys.argv[3]))
