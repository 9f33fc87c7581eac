"""SeenExecs (tradsys.client.repeats) against what a session can get: the events of
several orders, each order's in exec-id order, exec ids growing per symbol, the orders
interleaved in any way (a session that takes over another's unread events gets them after
newer events of its own orders), repeats of earlier events of the same order anywhere
after the original, and the gateway's own rejects (exec id 0).
Split into batches of any size, what comes out is exactly what the generator sent once,
in order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradsys import wire
from tradsys.client.repeats import SeenExecs

Event = tuple[int, int, int]  # symbol id, client order id, exec id


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Event], list[Event], list[int]]:
    """(what a session gets, the originals alone in the same order, batch sizes)."""
    next_exec = {1: 1, 2: 1}
    orders: list[list[Event]] = []
    for k in range(draw(st.integers(1, 6))):
        sym = draw(st.integers(1, 2))
        events = []
        for _ in range(draw(st.integers(1, 5))):
            events.append((sym, 100 + k, next_exec[sym]))
            next_exec[sym] += draw(st.integers(1, 3))
        orders.append(events)
    got: list[Event] = []
    originals: list[Event] = []
    sent: dict[int, list[Event]] = {}  # per order: its events sent so far
    while any(orders):
        k = draw(st.sampled_from([i for i, o in enumerate(orders) if o]))
        event = orders[k].pop(0)
        got.append(event)
        originals.append(event)
        sent.setdefault(k, []).append(event)
        if draw(st.booleans()):  # a repeat of an event this order has sent
            got.append(draw(st.sampled_from(sent[k])))
        if draw(st.integers(0, 4)) == 0:  # a gateway reject, which repeats harmlessly
            reject = (event[0], 900, 0)
            got += [reject, reject]
            originals += [reject, reject]
    sizes = draw(st.lists(st.integers(1, 7), min_size=1, max_size=8))
    return got, originals, sizes


def _records(events: list[Event]) -> np.ndarray[Any, Any]:
    recs = np.zeros(len(events), wire.EVENT_DTYPE)
    recs["symbol_id"] = [e[0] for e in events]
    recs["order_id"] = [e[1] for e in events]
    recs["exec_id"] = [e[2] for e in events]
    return recs


def _events(recs: np.ndarray[Any, Any]) -> list[Event]:
    return [(int(r["symbol_id"]), int(r["order_id"]), int(r["exec_id"])) for r in recs]


@settings(max_examples=400, deadline=None)
@given(stream=streams())
def test_each_event_comes_out_once_in_order(
    stream: tuple[list[Event], list[Event], list[int]],
) -> None:
    got, originals, sizes = stream
    seen = SeenExecs()
    recs = _records(got)
    out: list[Event] = []
    at, i = 0, 0
    while at < len(recs):
        n = sizes[i % len(sizes)]
        out += _events(seen.fresh(recs[at : at + n]))
        at, i = at + n, i + 1
    assert out == originals
    assert seen.dropped == len(got) - len(originals)


def test_a_batch_without_repeats_is_passed_through_uncopied() -> None:
    seen = SeenExecs()
    recs = _records([(1, 5, 1), (1, 6, 2), (2, 5, 1)])
    assert seen.fresh(recs) is recs
    again = _records([(1, 5, 1), (1, 6, 3)])
    assert _events(seen.fresh(again)) == [(1, 6, 3)]
    assert seen.fresh(recs[:0]) is not None


def test_it_remembers_a_bounded_number_of_orders() -> None:
    seen = SeenExecs(orders=2)
    seen.fresh(_records([(1, 1, 1), (1, 2, 2), (1, 3, 3)]))  # order 1 is forgotten
    assert _events(seen.fresh(_records([(1, 1, 1), (1, 3, 3)]))) == [(1, 1, 1)]
    with pytest.raises(ValueError, match="orders must be >= 1"):
        SeenExecs(orders=0)
