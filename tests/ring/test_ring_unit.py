"""Every operation of tradsys.ring.Ring, in one process."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import RingFactory
from tests.ring.records import RECORD_DTYPE, describe_bad, first_bad, make_records
from tradsys.ring import (
    POLITE,
    Ring,
    RingInfo,
    SegmentExistsError,
    WaitKind,
    WaitStrategy,
    instance_segments,
    segment_name,
)
from tradsys.ring.segment import SHM_DIR, process_start_us
from tradsys.wire import LAYOUT_VERSION

STRATEGIES = {
    "busy-spin": WaitStrategy.busy_spin(),
    "spin-yield": WaitStrategy.spin_yield(),
    "spin-park": WaitStrategy.spin_park(),
}


def shm_path(name: str) -> Path:
    return SHM_DIR / name.lstrip("/")


def record_bytes(seq: int) -> bytes:
    return make_records(seq, 1).tobytes()


# ---- create / attach / close ------------------------------------------------------------


def test_create_then_attach_share_the_ring(rings: RingFactory) -> None:
    producer = rings.create(capacity=8, role="producer")
    consumer = rings.attach(producer.name, role="consumer")
    assert producer.is_owner and not consumer.is_owner
    assert (consumer.capacity, consumer.slot_size, consumer.layout_version) == (
        8,
        64,
        LAYOUT_VERSION,
    )
    assert producer.push(record_bytes(0))
    assert consumer.pop() == record_bytes(0)


def test_attach_with_the_expected_capacity(rings: RingFactory) -> None:
    producer = rings.create(capacity=32)
    consumer = rings.attach(producer.name, capacity=32)
    assert consumer.capacity == 32


def test_owner_close_unlinks_and_attacher_close_does_not(rings: RingFactory) -> None:
    owner = rings.create(capacity=8)
    attacher = rings.attach(owner.name)
    path = shm_path(owner.name)
    assert path.exists()
    attacher.close()
    assert attacher.closed
    assert path.exists(), "an attacher must not unlink the segment"
    assert owner.push(record_bytes(1)), "the owner still works after the attacher left"
    owner.close()
    assert owner.closed
    assert not path.exists(), "the owner unlinks the segment on close"


def test_close_is_idempotent(rings: RingFactory) -> None:
    owner = rings.create(capacity=8)
    attacher = rings.attach(owner.name)
    attacher.close()
    attacher.close()
    owner.close()
    owner.close()
    assert owner.closed and attacher.closed
    assert "closed" in repr(owner)


def test_context_manager_closes_and_unlinks(rings: RingFactory) -> None:
    name = rings.name()
    with Ring.create(name, slot_size=64, capacity=8, layout_version=1) as ring:
        assert isinstance(ring, Ring)
        assert shm_path(name).exists()
    assert ring.closed
    assert not shm_path(name).exists()


def test_context_manager_closes_on_error(rings: RingFactory) -> None:
    name = rings.name()
    with pytest.raises(RuntimeError, match="boom"):  # noqa: SIM117
        with Ring.create(name, slot_size=64, capacity=8, layout_version=1) as ring:
            raise RuntimeError("boom")
    assert ring.closed
    assert not shm_path(name).exists()


def test_close_clears_the_role_pid(rings: RingFactory) -> None:
    producer = rings.create(capacity=8, role="producer")
    consumer = rings.attach(producer.name, role="consumer")
    assert producer.info().consumer_pid == os.getpid()
    consumer.close()
    assert producer.info().consumer_pid == 0


@pytest.mark.parametrize("capacity", [0, -8, 3, 6, 100])
def test_capacity_must_be_a_power_of_two(rings: RingFactory, capacity: int) -> None:
    name = rings.name()
    with pytest.raises(ValueError, match=rf"{name}.*power of two.*{capacity}"):
        Ring.create(name, slot_size=64, capacity=capacity, layout_version=1)
    assert instance_segments(rings.instance) == [], "a refused ring leaves no segment"


@pytest.mark.parametrize("slot_size", [0, -64, 1, 12, 63])
def test_slot_size_must_be_a_positive_multiple_of_8(rings: RingFactory, slot_size: int) -> None:
    name = rings.name()
    with pytest.raises(ValueError, match=rf"{name}.*multiple of 8.*{slot_size}"):
        Ring.create(name, slot_size=slot_size, capacity=8, layout_version=1)
    assert instance_segments(rings.instance) == []


def test_creating_an_existing_name_raises_and_leaves_it_alone(rings: RingFactory) -> None:
    first = rings.create(capacity=8)
    assert first.push(record_bytes(42))
    with pytest.raises(SegmentExistsError, match=first.name):
        Ring.create(first.name, slot_size=64, capacity=8, layout_version=1)
    assert shm_path(first.name).exists(), "the failed create must not unlink the original"
    reader = rings.attach(first.name)
    assert reader.pop() == record_bytes(42), "the original's contents are untouched"


def test_segment_is_owner_only(rings: RingFactory) -> None:
    old = os.umask(0)  # even a permissive umask must not widen it
    try:
        ring = rings.create(capacity=8)
    finally:
        os.umask(old)
    assert shm_path(ring.name).stat().st_mode & 0o777 == 0o600


def test_instance_segments_lists_only_that_instance(rings: RingFactory) -> None:
    a = rings.create(capacity=8)
    b = rings.create(capacity=8)
    assert instance_segments(rings.instance) == sorted([a.name, b.name])
    assert instance_segments(rings.instance + "x") == []
    assert {a.name, b.name} <= set(instance_segments())


# ---- segment names --------------------------------------------------------------------


def test_segment_name_format() -> None:
    assert segment_name("prod-1", "cmd_in", 3) == "/tradsys.prod-1.cmd_in.3"
    assert segment_name("a", "b") == "/tradsys.a.b.0"


@pytest.mark.parametrize("instance", ["", "a.b", "a/b", "a b", "é", "x*", "a\n"])
def test_segment_name_refuses_a_bad_instance(instance: str) -> None:
    with pytest.raises(ValueError, match="instance"):
        segment_name(instance, "ring", 0)


@pytest.mark.parametrize("role", ["", "in.out", "r/1", "r\n"])
def test_segment_name_refuses_a_bad_role(role: str) -> None:
    with pytest.raises(ValueError, match="role"):
        segment_name("inst", role, 0)


def test_segment_name_refuses_a_negative_number() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        segment_name("inst", "ring", -1)


# ---- single records ---------------------------------------------------------------------


def test_push_pop_single_in_order(rings: RingFactory) -> None:
    pair = rings.pair(capacity=8)
    for seq in range(5):
        assert pair.producer.push(record_bytes(seq)) is True
    for seq in range(5):
        got = pair.consumer.pop()
        assert isinstance(got, bytes)
        assert got == record_bytes(seq)


def test_pop_empty_returns_none(rings: RingFactory) -> None:
    pair = rings.pair(capacity=8)
    assert pair.consumer.pop() is None
    pair.producer.push(record_bytes(0))
    assert pair.consumer.pop() is not None
    assert pair.consumer.pop() is None


def test_push_single_on_a_full_ring_returns_false_and_keeps_the_data(
    rings: RingFactory,
) -> None:
    pair = rings.pair(capacity=4)
    for seq in range(4):
        assert pair.producer.push(record_bytes(seq))
    assert pair.producer.push(record_bytes(99)) is False
    assert [pair.consumer.pop() for _ in range(4)] == [record_bytes(s) for s in range(4)]
    assert pair.consumer.pop() is None


@pytest.mark.parametrize("size", [0, 1, 63, 65, 128])
def test_push_single_of_the_wrong_size(rings: RingFactory, size: int) -> None:
    pair = rings.pair(capacity=4)
    with pytest.raises(ValueError, match=rf"{pair.name}.*{size} bytes.*64"):
        pair.producer.push(b"x" * size)
    assert pair.consumer.pop() is None, "a refused record publishes nothing"


# ---- batches ------------------------------------------------------------------------------


def test_push_batch_pop_batch(rings: RingFactory) -> None:
    pair = rings.pair(capacity=16)
    sent = make_records(0, 10)
    assert pair.producer.push_batch(sent) == 10
    out = np.zeros(16, dtype=RECORD_DTYPE)
    assert pair.consumer.pop_batch(out) == 10
    assert first_bad(out[:10], 0) is None, describe_bad(out[:10], 0)
    assert not out[10:].tobytes().strip(b"\0"), "nothing written past the records popped"


def test_pop_batch_takes_at_most_len_out(rings: RingFactory) -> None:
    pair = rings.pair(capacity=16)
    pair.producer.push_batch(make_records(0, 10))
    out = np.zeros(4, dtype=RECORD_DTYPE)
    assert pair.consumer.pop_batch(out) == 4
    assert first_bad(out, 0) is None
    assert pair.consumer.pop_batch(out) == 4
    assert first_bad(out, 4) is None
    assert pair.consumer.pop_batch(out) == 2
    assert first_bad(out[:2], 8) is None


def test_batches_and_singles_interleave(rings: RingFactory) -> None:
    pair = rings.pair(capacity=8)
    pair.producer.push_batch(make_records(0, 3))
    pair.producer.push(record_bytes(3))
    pair.producer.push_batch(make_records(4, 2))
    assert pair.consumer.pop() == record_bytes(0)
    out = np.zeros(8, dtype=RECORD_DTYPE)
    assert pair.consumer.pop_batch(out) == 5
    assert first_bad(out[:5], 1) is None


def test_full_ring_takes_fewer_and_never_overwrites(rings: RingFactory) -> None:
    pair = rings.pair(capacity=8)
    assert pair.producer.push_batch(make_records(0, 5)) == 5
    assert pair.producer.push_batch(make_records(5, 10)) == 3, "only the free slots are taken"
    assert pair.producer.push_batch(make_records(100, 4)) == 0, "a full ring takes nothing"
    assert pair.producer.writable == 0
    out = np.zeros(32, dtype=RECORD_DTYPE)
    assert pair.consumer.pop_batch(out) == 8
    assert first_bad(out[:8], 0) is None, describe_bad(out[:8], 0)
    assert pair.consumer.pop_batch(out) == 0


def test_batches_wrap_around(rings: RingFactory) -> None:
    pair = rings.pair(capacity=8)
    out = np.zeros(8, dtype=RECORD_DTYPE)
    seq = 0
    for _ in range(20):  # 5-record batches on 8 slots straddle the end most rounds
        assert pair.producer.push_batch(make_records(seq, 5)) == 5
        assert pair.consumer.pop_batch(out[:5]) == 5
        assert first_bad(out[:5], seq) is None, describe_bad(out[:5], seq)
        seq += 5
    assert pair.producer.info().head == pair.producer.info().tail == 100


def test_empty_batches(rings: RingFactory) -> None:
    pair = rings.pair(capacity=8)
    assert pair.producer.push_batch(make_records(0, 0)) == 0
    assert pair.consumer.pop_batch(np.zeros(0, dtype=RECORD_DTYPE)) == 0
    assert pair.consumer.pop_batch(np.zeros(4, dtype=RECORD_DTYPE)) == 0, "empty ring"


def test_batch_arrays_may_have_any_64_byte_dtype(rings: RingFactory) -> None:
    pair = rings.pair(capacity=8)
    raw = np.arange(3 * 8, dtype=np.uint64).view("V64")
    assert raw.shape == (3,)
    assert pair.producer.push_batch(raw) == 3
    out = np.zeros((3, 8), dtype=np.uint64)
    assert pair.consumer.pop_batch(out.view("V64").reshape(3)) == 3
    np.testing.assert_array_equal(out.ravel(), np.arange(24))


@pytest.mark.parametrize("itemsize", [8, 32, 72, 128])
def test_batch_of_the_wrong_record_size(rings: RingFactory, itemsize: int) -> None:
    pair = rings.pair(capacity=8)
    wrong = np.zeros(4, dtype=f"V{itemsize}")
    with pytest.raises(ValueError, match=rf"{pair.name}.*{itemsize} bytes.*64"):
        pair.producer.push_batch(wrong)
    with pytest.raises(ValueError, match=rf"{pair.name}.*{itemsize} bytes.*64"):
        pair.consumer.pop_batch(wrong)
    with pytest.raises(ValueError, match=rf"{itemsize} bytes"):
        pair.producer.push_all(wrong, timeout=0)
    with pytest.raises(ValueError, match=rf"{itemsize} bytes"):
        pair.consumer.pop_wait(wrong, timeout=0)
    assert pair.producer.info().head == 0


def test_batch_must_be_contiguous(rings: RingFactory) -> None:
    pair = rings.pair(capacity=8)
    strided = make_records(0, 8)[::2]
    with pytest.raises(ValueError, match=rf"{pair.name}.*C-contiguous"):
        pair.producer.push_batch(strided)
    out = np.zeros(8, dtype=RECORD_DTYPE)[::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        pair.consumer.pop_batch(out)
    assert pair.producer.info().head == 0


def test_pop_batch_needs_a_writable_array(rings: RingFactory) -> None:
    pair = rings.pair(capacity=8)
    pair.producer.push_batch(make_records(0, 2))
    out = np.zeros(2, dtype=RECORD_DTYPE)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        pair.consumer.pop_batch(out)
    assert pair.consumer.readable == 2, "nothing was consumed"


def test_slot_size_other_than_64(rings: RingFactory) -> None:
    pair = rings.pair(capacity=4, slot_size=16)
    assert pair.producer.push(b"0123456789abcdef")
    assert pair.producer.push_batch(np.arange(6, dtype=np.uint64).view("V16")) == 3
    assert pair.consumer.pop() == b"0123456789abcdef"
    out = np.zeros(6, dtype=np.uint64)
    assert pair.consumer.pop_batch(out.view("V16")) == 3
    np.testing.assert_array_equal(out, np.arange(6))


# ---- state ---------------------------------------------------------------------------------


def test_readable_and_writable(rings: RingFactory) -> None:
    pair = rings.pair(capacity=8)
    assert (pair.consumer.readable, pair.producer.writable) == (0, 8)
    pair.producer.push_batch(make_records(0, 3))
    assert (pair.consumer.readable, pair.producer.writable) == (3, 5)
    pair.consumer.pop()
    assert (pair.consumer.readable, pair.producer.writable) == (2, 6)
    pair.producer.push_batch(make_records(3, 10))
    assert (pair.consumer.readable, pair.producer.writable) == (8, 0)
    pair.consumer.pop_batch(np.zeros(8, dtype=RECORD_DTYPE))
    assert (pair.consumer.readable, pair.producer.writable) == (0, 8)


def test_info_fields(rings: RingFactory) -> None:
    pair = rings.pair(capacity=32)
    pair.producer.push_batch(make_records(0, 7))
    pair.consumer.pop_batch(np.zeros(3, dtype=RECORD_DTYPE))
    info = pair.consumer.info()
    assert isinstance(info, RingInfo)
    assert info.name == pair.name
    assert (info.layout_version, info.slot_size, info.capacity) == (LAYOUT_VERSION, 64, 32)
    assert info.creator_pid == info.producer_pid == info.consumer_pid == os.getpid()
    assert abs(info.creator_start_us - process_start_us()) <= 20_000
    assert (info.head, info.tail, info.fill) == (7, 3, 4)
    assert info.creator_alive
    assert pair.producer.info() == info


def test_info_of_a_ring_without_roles(rings: RingFactory) -> None:
    ring = rings.create(capacity=8, role=None)
    info = ring.info()
    assert (info.producer_pid, info.consumer_pid) == (0, 0)
    assert info.creator_pid == os.getpid()


def test_peer_alive(rings: RingFactory) -> None:
    producer = rings.create(capacity=8, role="producer")
    assert producer.peer_alive() is False, "no consumer yet"
    consumer = rings.attach(producer.name, role="consumer")
    assert producer.peer_alive() is True
    assert consumer.peer_alive() is True
    consumer.close()
    assert producer.peer_alive() is False, "the consumer left"


# ---- waiting -------------------------------------------------------------------------------


def test_wait_strategy_named() -> None:
    assert WaitStrategy.named("busy-spin") == WaitStrategy.busy_spin()
    assert WaitStrategy.named("spin-yield") == WaitStrategy.spin_yield()
    assert WaitStrategy.named("spin-park") == WaitStrategy.spin_park()
    assert WaitStrategy.named("busy-spin").kind is WaitKind.BUSY_SPIN
    assert WaitStrategy.named("spin-yield").kind is WaitKind.SPIN_YIELD
    assert WaitStrategy.named("spin-park").kind is WaitKind.SPIN_PARK
    assert WaitStrategy.spin_park() == POLITE


@pytest.mark.parametrize("name", ["", "busy_spin", "sleep", "SPIN-PARK"])
def test_wait_strategy_named_refuses_unknown(name: str) -> None:
    with pytest.raises(
        ValueError, match=r"unknown wait strategy.*busy-spin, spin-yield, spin-park"
    ):
        WaitStrategy.named(name)


def test_wait_strategy_cdata() -> None:
    w = WaitStrategy(WaitKind.SPIN_YIELD, spin_iters=7, yield_iters=3)
    c = w.cdata
    assert (c.kind, c.spin_iters, c.yield_iters) == (2, 7, 3)
    assert w.cdata is c, "made once per strategy"


@pytest.mark.parametrize("strategy", STRATEGIES.values(), ids=STRATEGIES.keys())
def test_wait_readable_times_out_on_an_empty_ring(
    rings: RingFactory, strategy: WaitStrategy
) -> None:
    pair = rings.pair(capacity=8)
    started = time.monotonic()
    assert pair.consumer.wait_readable(strategy, timeout=0.05) == 0
    elapsed = time.monotonic() - started
    assert 0.05 <= elapsed < 5, f"waited {elapsed:.3f} s for a 0.05 s timeout"
    started = time.monotonic()
    out = np.zeros(4, dtype=RECORD_DTYPE)
    assert pair.consumer.pop_wait(out, strategy, timeout=0.05) == 0
    assert 0.05 <= time.monotonic() - started < 5


@pytest.mark.parametrize("strategy", STRATEGIES.values(), ids=STRATEGIES.keys())
def test_wait_writable_times_out_on_a_full_ring(rings: RingFactory, strategy: WaitStrategy) -> None:
    pair = rings.pair(capacity=8)
    pair.producer.push_batch(make_records(0, 8))
    started = time.monotonic()
    assert pair.producer.wait_writable(strategy, timeout=0.05) == 0
    elapsed = time.monotonic() - started
    assert 0.05 <= elapsed < 5, f"waited {elapsed:.3f} s for a 0.05 s timeout"
    started = time.monotonic()
    assert pair.producer.push_all(make_records(8, 3), strategy, timeout=0.05) == 0
    assert 0.05 <= time.monotonic() - started < 5


@pytest.mark.parametrize("strategy", STRATEGIES.values(), ids=STRATEGIES.keys())
def test_waits_return_at_once_when_ready(rings: RingFactory, strategy: WaitStrategy) -> None:
    pair = rings.pair(capacity=8)
    started = time.monotonic()
    assert pair.producer.wait_writable(strategy, timeout=10) == 8
    pair.producer.push_batch(make_records(0, 3))
    assert pair.consumer.wait_readable(strategy, timeout=10) == 3
    assert pair.producer.wait_writable(strategy, timeout=None) == 5
    assert pair.consumer.wait_readable(strategy, timeout=None) == 3
    out = np.zeros(8, dtype=RECORD_DTYPE)
    assert pair.consumer.pop_wait(out, strategy, timeout=10) == 3
    assert first_bad(out[:3], 0) is None
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("strategy", STRATEGIES.values(), ids=STRATEGIES.keys())
def test_zero_timeout_polls(rings: RingFactory, strategy: WaitStrategy) -> None:
    pair = rings.pair(capacity=4)
    assert pair.consumer.wait_readable(strategy, timeout=0) == 0
    assert pair.producer.push_all(make_records(0, 6), strategy, timeout=0) == 4
    assert pair.producer.wait_writable(strategy, timeout=0) == 0
    assert pair.consumer.wait_readable(strategy, timeout=0) == 4


@pytest.mark.parametrize("strategy", STRATEGIES.values(), ids=STRATEGIES.keys())
def test_push_all_partial_on_timeout(rings: RingFactory, strategy: WaitStrategy) -> None:
    pair = rings.pair(capacity=8)
    assert pair.producer.push_all(make_records(0, 5), strategy, timeout=0.05) == 5
    assert pair.producer.push_all(make_records(5, 10), strategy, timeout=0.05) == 3
    out = np.zeros(16, dtype=RECORD_DTYPE)
    assert pair.consumer.pop_batch(out) == 8
    assert first_bad(out[:8], 0) is None


@pytest.mark.parametrize("strategy", STRATEGIES.values(), ids=STRATEGIES.keys())
def test_a_waiting_consumer_thread_is_woken_by_a_push(
    rings: RingFactory, strategy: WaitStrategy
) -> None:
    # The wait runs in C with the GIL released, so a thread can block in it while this
    # thread pushes; a lost wake-up would show as the 10 s timeout (result 0).
    pair = rings.pair(capacity=8)
    waiting = threading.Event()
    result: list[int] = []

    def consume() -> None:
        waiting.set()
        out = np.zeros(8, dtype=RECORD_DTYPE)
        result.append(pair.consumer.pop_wait(out, strategy, timeout=10))
        result.append(first_bad(out[: result[0]], 0) is None)

    thread = threading.Thread(target=consume)
    thread.start()
    try:
        assert waiting.wait(10)
        assert pair.producer.push_batch(make_records(0, 2)) == 2
    finally:
        thread.join(15)
    assert not thread.is_alive()
    assert result and result[0] >= 1 and result[1], result


@pytest.mark.parametrize("strategy", STRATEGIES.values(), ids=STRATEGIES.keys())
def test_a_waiting_producer_thread_is_woken_by_a_pop(
    rings: RingFactory, strategy: WaitStrategy
) -> None:
    pair = rings.pair(capacity=4)
    assert pair.producer.push_batch(make_records(0, 4)) == 4
    waiting = threading.Event()
    result: list[int] = []

    def produce() -> None:
        waiting.set()
        result.append(pair.producer.push_all(make_records(4, 8), strategy, timeout=10))

    thread = threading.Thread(target=produce)
    thread.start()
    out = np.zeros(12, dtype=RECORD_DTYPE)
    got = 0
    try:
        assert waiting.wait(10)
        deadline = time.monotonic() + 10
        while got < 12 and time.monotonic() < deadline:
            got += pair.consumer.pop_wait(out[got:], strategy, timeout=1)
    finally:
        thread.join(15)
    assert not thread.is_alive()
    assert result == [8]
    assert got == 12
    assert first_bad(out, 0) is None, describe_bad(out, 0)


def test_wake_with_nobody_parked_is_harmless(rings: RingFactory) -> None:
    pair = rings.pair(capacity=4)
    pair.producer.wake()
    pair.consumer.wake()
    assert pair.consumer.pop() is None
