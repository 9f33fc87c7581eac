"""Property tests: any sequence of ring operations behaves like a bounded FIFO queue."""

from __future__ import annotations

import itertools
from collections import deque

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradsys.ring import Ring, segment_name

# One operation: (kind, batch size). Sizes reach past the largest capacity, so a batch
# can be bigger than the ring, bigger than what is free, or bigger than what is there.
# The length is drawn first: plain st.lists stays around five operations, too few to
# fill and wrap a ring.
operation = st.tuples(st.sampled_from(["push", "pop", "push1", "pop1"]), st.integers(0, 80))
operations = st.integers(0, 400).flatmap(lambda n: st.lists(operation, min_size=n, max_size=n))

_examples = itertools.count()


def words(first: int, n: int, slot_size: int) -> np.ndarray:
    """n records of slot_size bytes; every 8-byte word is unique to its record and place."""
    per = slot_size // 8
    values = np.arange(first * per, (first + n) * per, dtype=np.uint64)
    return values.view(f"V{slot_size}")


def seqs(records: np.ndarray, slot_size: int) -> list[int]:
    """The record numbers back from words(); -1 for a record whose words disagree."""
    per = slot_size // 8
    values = records.view(np.uint64).reshape(-1, per)
    first = values[:, 0] // per
    whole = (values == (first * per)[:, None] + np.arange(per, dtype=np.uint64)).all(axis=1)
    return [int(s) if ok else -1 for s, ok in zip(first, whole, strict=True)]


# The ring is made per example inside the test, so the function-scoped `instance`
# fixture only supplies a name prefix: sharing it between examples is safe.
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    capacity=st.sampled_from([8, 16, 32, 64]),
    slot_size=st.sampled_from([8, 24, 64]),
    ops=operations,
)
def test_ring_matches_a_deque(
    instance: str, capacity: int, slot_size: int, ops: list[tuple[str, int]]
) -> None:
    name = segment_name(instance, "prop", next(_examples))
    model: deque[int] = deque()
    next_seq = 0
    pushed = popped = 0
    with (
        Ring.create(
            name, slot_size=slot_size, capacity=capacity, layout_version=1, role="producer"
        ) as producer,
        Ring.attach(name, slot_size=slot_size, layout_version=1, role="consumer") as consumer,
    ):
        for kind, size in ops:
            if kind == "push":
                taken = producer.push_batch(words(next_seq, size, slot_size))
                assert taken == min(size, capacity - len(model))
                model.extend(range(next_seq, next_seq + taken))
                next_seq += taken
                pushed += taken
            elif kind == "push1":
                ok = producer.push(words(next_seq, 1, slot_size).tobytes())
                assert ok == (len(model) < capacity)
                if ok:
                    model.append(next_seq)
                    next_seq += 1
                    pushed += 1
            elif kind == "pop":
                # one spare record at the end, filled with a marker, must stay untouched
                out = np.full((size + 1) * slot_size // 8, 0xEEEE, dtype=np.uint64)
                out_records = out.view(f"V{slot_size}")
                n = consumer.pop_batch(out_records[:size])
                assert n == min(size, len(model))
                expected = [model.popleft() for _ in range(n)]
                assert seqs(out_records[:n], slot_size) == expected
                assert (out[n * slot_size // 8 :] == 0xEEEE).all(), "wrote past the records"
                popped += n
            else:
                got = consumer.pop()
                if model:
                    assert got is not None
                    record = np.frombuffer(got, dtype=f"V{slot_size}")
                    assert seqs(record, slot_size) == [model.popleft()]
                    popped += 1
                else:
                    assert got is None
            assert consumer.readable == len(model)
            assert producer.writable == capacity - len(model)
            info = consumer.info()
            assert (info.head, info.tail) == (pushed, popped)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    capacity=st.sampled_from([8, 16, 64]),
    batches=st.lists(st.integers(1, 80), min_size=1, max_size=40),
    wraps=st.integers(5, 40),
)
def test_many_wrap_arounds(instance: str, capacity: int, batches: list[int], wraps: int) -> None:
    """Push and drain in cycles of drawn batch sizes until the ring has wrapped `wraps`
    times; the indices run far past the capacity and every record still comes back."""
    name = segment_name(instance, "wrap", next(_examples))
    total = 0
    with (
        Ring.create(name, slot_size=64, capacity=capacity, layout_version=1) as producer,
        Ring.attach(name, slot_size=64, layout_version=1) as consumer,
    ):
        out = np.zeros(80 * 8, dtype=np.uint64).view("V64")
        for batch in itertools.cycle(batches):
            if total >= wraps * capacity:
                break
            taken = producer.push_batch(words(total, batch, 64))
            assert taken == min(batch, capacity)
            n = consumer.pop_batch(out[:batch])
            assert n == taken
            assert seqs(out[:n], 64) == list(range(total, total + n))
            total += n
        info = producer.info()
        assert info.head == info.tail == total >= wraps * capacity
