"""The one-record push and pop (native/ring_records.c): what they take, what they refuse,
and that nothing reaches a ring's memory once it is closed."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

from tests.conftest import RingFactory
from tests.ring.records import make_records
from tradsys._ring_records import RecordPort


def record_bytes(seq: int) -> bytes:
    return make_records(seq, 1).tobytes()


def test_push_takes_any_buffer_of_the_slot_size(rings: RingFactory) -> None:
    pair = rings.pair(capacity=8)
    sources = [
        record_bytes(0),
        bytearray(record_bytes(1)),
        memoryview(record_bytes(2)),
        make_records(3, 1),  # a numpy record
    ]
    for source in sources:
        assert pair.producer.push(source) is True
    assert [pair.consumer.pop() for _ in range(4)] == [record_bytes(s) for s in range(4)]


@pytest.mark.parametrize("size", [0, 63, 65])
def test_a_buffer_of_the_wrong_size_is_refused(rings: RingFactory, size: int) -> None:
    pair = rings.pair(capacity=4)
    with pytest.raises(ValueError, match=rf"{pair.name}: record is {size} bytes, slots are 64"):
        pair.producer.push(bytearray(size))
    assert pair.consumer.readable == 0


@pytest.mark.parametrize("record", [None, 64, "x" * 64])
def test_what_is_not_a_buffer_is_refused(rings: RingFactory, record: object) -> None:
    pair = rings.pair(capacity=4)
    with pytest.raises(TypeError):
        pair.producer.push(record)  # type: ignore[arg-type]
    assert pair.consumer.readable == 0


def test_popped_records_are_their_own_bytes(rings: RingFactory) -> None:
    """A popped record is a new bytes object, not a view of a slot the producer reuses."""
    pair = rings.pair(capacity=2)
    pair.producer.push(record_bytes(0))
    first = pair.consumer.pop()
    for seq in range(1, 5):  # overwrite every slot, the one `first` came from included
        pair.producer.push(record_bytes(seq))
        assert pair.consumer.pop() == record_bytes(seq)
    assert first == record_bytes(0)


def test_methods_kept_past_close_raise_instead_of_touching_the_unmapped_ring(
    rings: RingFactory,
) -> None:
    pair = rings.pair(capacity=4)
    push, pop = pair.producer.push, pair.consumer.pop
    pair.consumer.close()
    pair.producer.close()
    with pytest.raises(ValueError, match=f"ring '?{pair.name}'? is closed"):
        push(record_bytes(0))
    with pytest.raises(ValueError, match="is closed"):
        pop()


def test_a_port_keeps_its_mapping_from_being_unmapped(rings: RingFactory) -> None:
    ring = rings.create(capacity=4)
    memory = ring._segment.memory
    port = RecordPort(memory, ring.slot_size, ring.name)
    with pytest.raises(BufferError):
        memory.close()
    port.release()
    port.release()  # idempotent
    with pytest.raises(ValueError, match="is closed"):
        port.push(record_bytes(0))


def test_a_port_over_memory_that_is_not_a_ring_is_refused() -> None:
    with (
        mmap.mmap(-1, 4096) as blank,
        pytest.raises(ValueError, match="blank: not a ring of 64-byte slots"),
    ):
        RecordPort(blank, 64, "blank")
    with pytest.raises(ValueError, match="tiny: not a ring"):
        RecordPort(bytearray(16), 64, "tiny")


def test_a_port_with_another_slot_size_is_refused(rings: RingFactory) -> None:
    ring = rings.create(capacity=4)
    with pytest.raises(ValueError, match="not a ring of 128-byte slots"):
        RecordPort(ring._segment.memory, 128, ring.name)


def test_a_read_only_mapping_is_refused(rings: RingFactory) -> None:
    ring = rings.create(capacity=4)
    frozen = bytes(ring._segment.memory[:])
    with pytest.raises(BufferError):
        RecordPort(frozen, ring.slot_size, ring.name)


def test_singles_and_batches_see_one_ring(rings: RingFactory) -> None:
    """The port and the cffi batch calls move the same head and tail."""
    pair = rings.pair(capacity=8)
    pair.producer.push(record_bytes(0))
    pair.producer.push_batch(make_records(1, 3))
    pair.producer.push(record_bytes(4))
    out = np.zeros(2, make_records(0, 1).dtype)
    assert pair.consumer.pop() == record_bytes(0)
    assert pair.consumer.pop_batch(out) == 2
    assert out.tobytes() == make_records(1, 2).tobytes()
    assert [pair.consumer.pop() for _ in range(3)] == [record_bytes(3), record_bytes(4), None]
    info = pair.consumer.info()
    assert (info.head, info.tail) == (5, 5)


def test_the_refusal_counts_bytes_not_items(rings: RingFactory) -> None:
    pair = rings.pair(capacity=4)
    two_records = make_records(0, 2)  # a buffer of 128 bytes, len() 2
    with pytest.raises(ValueError, match="record is 128 bytes, slots are 64"):
        pair.producer.push(two_records)
    assert pair.consumer.readable == 0
