"""Reading without consuming (``Ring.peek_batch`` / ``Ring.release``, ts_ring_peek_copy):
any interleaving of pushes, reads that skip what was read already, releases and pops
behaves like a deque that only a release or a pop shortens -- and what stays unreleased
is still there for a consumer that attaches afterwards (the TCP edge's gateway-crash
guarantee rests on that)."""

from __future__ import annotations

import itertools
from collections import deque

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ring.test_ring_properties import seqs, words
from tradsys.ring import Ring, segment_name

# (kind, a, b): ("push", n, _), ("peek", skip, n), ("release", k, _), ("pop", n, _).
# Sizes reach past the largest capacity, skips past what the ring holds.
operation = st.tuples(
    st.sampled_from(["push", "peek", "peek", "release", "pop"]),
    st.integers(0, 80),
    st.integers(0, 80),
)
operations = st.integers(0, 300).flatmap(lambda n: st.lists(operation, min_size=n, max_size=n))

_examples = itertools.count()


def _peek(consumer: Ring, skip: int, n: int, slot_size: int) -> tuple[int, list[int], bool]:
    """peek_batch into n records followed by one marker record: (count, seqs read,
    whether the marker and the records past the count are untouched)."""
    out = np.full((n + 1) * slot_size // 8, 0xEEEE, dtype=np.uint64)
    records = out.view(f"V{slot_size}")
    got = consumer.peek_batch(records[:n], skip)
    untouched = bool((out[got * slot_size // 8 :] == 0xEEEE).all())
    return got, seqs(records[:got], slot_size), untouched


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    capacity=st.sampled_from([8, 16, 64]),
    slot_size=st.sampled_from([8, 64]),
    ops=operations,
)
def test_peek_skip_and_release_match_a_deque(
    instance: str, capacity: int, slot_size: int, ops: list[tuple[str, int, int]]
) -> None:
    name = segment_name(instance, "peek", next(_examples))
    model: deque[int] = deque()  # the records in the ring, oldest first
    next_seq = released = 0
    with (
        Ring.create(
            name, slot_size=slot_size, capacity=capacity, layout_version=1, role="producer"
        ) as producer,
        Ring.attach(name, slot_size=slot_size, layout_version=1, role="consumer") as consumer,
    ):
        for kind, a, b in ops:
            if kind == "push":
                taken = producer.push_batch(words(next_seq, a, slot_size))
                assert taken == min(a, capacity - len(model))
                model.extend(range(next_seq, next_seq + taken))
                next_seq += taken
            elif kind == "peek":
                got, read, untouched = _peek(consumer, a, b, slot_size)
                assert read == list(model)[a : a + b]
                assert got == len(read) and untouched, "wrote past the records"
            elif kind == "release":
                k = min(a, len(model))
                consumer.release(k)
                for _ in range(k):
                    model.popleft()
                released += k
            else:
                out = np.zeros(a, f"V{slot_size}")
                n = consumer.pop_batch(out)
                assert seqs(out[:n], slot_size) == [model.popleft() for _ in range(n)]
                released += n
            assert consumer.readable == len(model)
            assert producer.writable == capacity - len(model)
            info = consumer.info()
            assert (info.head, info.tail) == (next_seq, released)


def test_what_is_not_released_outlives_the_consumer(instance: str) -> None:
    """A consumer that read and released part, then went away: a new one attaching the
    ring reads from the first unreleased record."""
    name = segment_name(instance, "peek", next(_examples))
    with Ring.create(name, slot_size=64, capacity=16, layout_version=1) as ring:
        assert ring.push_batch(words(0, 10, 64)) == 10
        with Ring.attach(name, slot_size=64, layout_version=1, role="consumer") as first:
            out = np.zeros(8, "V64")
            assert first.peek_batch(out) == 8
            assert first.peek_batch(out, skip=8) == 2
            first.release(3)
        with Ring.attach(name, slot_size=64, layout_version=1, role="consumer") as second:
            out = np.zeros(16, "V64")
            assert second.pop_batch(out) == 7
            assert seqs(out[:7], 64) == list(range(3, 10))


def test_release_beyond_what_is_readable_is_refused(instance: str) -> None:
    name = segment_name(instance, "peek", next(_examples))
    with Ring.create(name, slot_size=64, capacity=8, layout_version=1) as ring:
        ring.push_batch(words(0, 3, 64))
        with pytest.raises(ValueError, match=r"cannot release 4 records, 3 are readable"):
            ring.release(4)
        with pytest.raises(ValueError, match="cannot release -1"):
            ring.release(-1)
        assert ring.readable == 3
