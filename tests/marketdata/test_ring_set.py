"""The sidecar's wait on every md ring at once: a record on any ring ends it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import RingFactory
from tradsys.marketdata.ring_set import SYS_FUTEX_WAITV, RingSet, idle_wait
from tradsys.ring import WaitStrategy
from tradsys.ring.wait import WaitKind
from tradsys.wire import RECORD_SIZE


def _in_syscall(tid: int, number: int, timeout_s: float = 10.0) -> bool:
    """Whether thread ``tid`` of this process is blocked in system call ``number``."""
    path = Path(f"/proc/self/task/{tid}/syscall")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fields = path.read_text().split()
        if fields and fields[0] == str(number):
            return True
    return False


@pytest.mark.parametrize("which", [0, 2])
def test_a_record_on_any_ring_wakes_the_parked_wait(rings: RingFactory, which: int) -> None:
    pairs = [rings.pair() for _ in range(3)]
    ring_set = RingSet([p.consumer for p in pairs], WaitStrategy.spin_park())
    assert ring_set.waitv
    out: dict[str, float] = {}
    started = threading.Event()

    def waiter() -> None:
        out["tid"] = threading.get_native_id()
        started.set()
        t = time.monotonic()
        out["n"] = ring_set.wait_readable(30.0)
        out["took"] = time.monotonic() - t

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    assert started.wait(10)
    # parked on all three futexes at once before the record comes
    assert _in_syscall(int(out["tid"]), SYS_FUTEX_WAITV), "the wait never parked"
    assert pairs[which].producer.push(bytes(RECORD_SIZE))
    thread.join(10)
    assert not thread.is_alive()
    assert out["n"] == 1
    assert out["took"] < 10  # woken by the push, far from its 30 s timeout


def test_times_out_with_nothing_and_sees_what_was_already_there(rings: RingFactory) -> None:
    pairs = [rings.pair() for _ in range(2)]
    ring_set = RingSet([p.consumer for p in pairs], WaitStrategy.spin_park())
    t = time.monotonic()
    assert ring_set.wait_readable(0.05) == 0
    assert time.monotonic() - t >= 0.05
    assert pairs[1].producer.push(bytes(RECORD_SIZE))
    assert pairs[0].producer.push(bytes(RECORD_SIZE))
    assert ring_set.wait_readable(5.0) == 2


def test_without_futex_waitv_it_still_sees_every_ring(rings: RingFactory) -> None:
    pairs = [rings.pair() for _ in range(3)]
    ring_set = RingSet([p.consumer for p in pairs], WaitStrategy.spin_park())
    ring_set.waitv = False  # what an old kernel (ENOSYS) leaves
    assert ring_set.wait_readable(0.01) == 0
    assert pairs[2].producer.push(bytes(RECORD_SIZE))
    assert ring_set.wait_readable(5.0) == 1


def test_the_sidecars_polite_wait_parks_without_yielding() -> None:
    polite = idle_wait(WaitStrategy.spin_park())
    assert polite.kind == WaitKind.SPIN_PARK and polite.yield_iters == 0
    assert polite.spin_iters == WaitStrategy.spin_park().spin_iters
    # a deployment's explicit choices are kept
    for kept in (WaitStrategy.busy_spin(), WaitStrategy.spin_yield()):
        assert idle_wait(kept) == kept


def test_an_idle_wait_over_several_rings_never_yields_the_cpu(
    rings: RingFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A yielded thread stays runnable and can wait out another process's whole slice;
    a parked one is woken by the push (see tradsys.marketdata.ring_set)."""
    yields = []
    monkeypatch.setattr(os, "sched_yield", lambda: yields.append(1))
    pairs = [rings.pair() for _ in range(2)]
    configured = WaitStrategy.spin_park()
    assert RingSet([p.consumer for p in pairs], configured).wait_readable(0.01) == 0
    assert len(yields) == configured.yield_iters > 0  # what the configured one does
    yields.clear()
    ring_set = RingSet([p.consumer for p in pairs], idle_wait(configured))
    assert ring_set.wait_readable(0.01) == 0
    assert pairs[1].producer.push(bytes(RECORD_SIZE))
    assert ring_set.wait_readable(5.0) == 1
    assert yields == []
