"""A property of the native gateway (``ts_gateway_remove_session``): for any interleaving
of events routed to a session, reads by its client, and the point where the session
ends, the account's next session receives exactly the events the client did not read,
then the events that came after, in order, each once -- whatever was in the client's
ring, in the pump's stage for it (a full ring), or still in the shard's ring; with or
without cancel-on-disconnect (with it, the order's events after the detach are dropped:
the cancel the gateway sent is not routed), and with the held-events log attached. And
the unread events outlive a gateway that dies after the session ended (the log)."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RUN_PREFIX, RingFactory
from tests.gateway.rig import AAA, GatewayRig, account, command, make_config
from tradsys.cores.order_image import LIVE_ORDER_DTYPE
from tradsys.gateway import GatewayCore
from tradsys.ring import instance_segments
from tradsys.ring.segment import unlink_quietly
from tradsys.wire import EVENT_DTYPE, EventKind, Side

_examples = itertools.count()

# ("route", n): the shard answers n fills and the pump runs a pass; ("read", n): the
# client takes up to n events from its ring
STEP = st.one_of(
    st.tuples(st.just("route"), st.integers(1, 12)),
    st.tuples(st.just("read"), st.integers(1, 12)),
)


def _exec_ids(events: np.ndarray[Any, Any]) -> list[int]:
    return [int(x) for x in events["exec_id"]]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.lists(STEP, max_size=20),
    after=st.integers(0, 10),
    cancel_on_disconnect=st.booleans(),
    ring=st.sampled_from([16, 64]),
    log=st.booleans(),
)
def test_next_session_gets_the_unread_suffix_then_later_events(
    before: list[tuple[str, int]], after: int, cancel_on_disconnect: bool, ring: int, log: bool
) -> None:
    instance = f"{RUN_PREFIX}unread{next(_examples)}"
    rings = RingFactory(instance)
    tmp = Path(tempfile.mkdtemp(prefix="unread"))
    rig = None
    try:
        # a small max_batch: the pump's stage for the session fills too
        config = make_config(
            instance, [account(1, cancel_on_disconnect=cancel_on_disconnect)], pump_batch=16
        )
        rig = GatewayRig(rings, config)
        if log:
            rig.core.attach_ledger(tmp / "gateway.ledger", 1)
            rig.core.attach_held(tmp / "gateway.held")
            rig.core.drain()
            rig.core.hold_drained()
        s = rig.session(1, capacity=ring)
        s.send(command(order_id=7, side=Side.SELL, quantity=1_000_000))
        rig.poll()
        (order,) = rig.sent(0)
        leaves = 1_000_000
        routed: list[int] = []  # every exec id the shard answered, in order
        read: list[int] = []

        def fill() -> None:
            nonlocal leaves
            leaves -= 1
            rig.answer(0, EventKind.TRADE, order, quantity=1, leaves_qty=leaves)
            routed.append(rig.exec_id)

        for what, n in before:
            if what == "route":
                for _ in range(n):
                    fill()
                rig.poll()
            else:
                out = np.zeros(n, dtype=EVENT_DTYPE)
                k = s.from_gateway.pop_batch(out)
                read.extend(_exec_ids(out[:k]))
        rig.core.remove_session(s.id)
        for _ in range(after):
            fill()
        while rig.poll():  # until the shard ring and every stage are empty
            pass
        nxt = rig.session(1, capacity=4096)
        rig.poll()
        got = _exec_ids(nxt.events())
        assert read == routed[: len(read)]  # the client read a prefix, in order
        unread = routed[len(read) :]
        if cancel_on_disconnect:
            # what was routed to it before the detach comes; what came after is dropped
            stats = rig.core.stats()
            dropped = stats["events_orphaned"]
            assert got == unread[: len(unread) - dropped]
            assert dropped <= after + sum(n for w, n in before if w == "route")
        else:
            assert got == unread
    finally:
        if rig is not None:
            rig.close()
        shutil.rmtree(tmp, ignore_errors=True)
        rings.close_all()
        leftovers = instance_segments(instance)
        unlink_quietly(leftovers)
    assert not leftovers, f"shared memory left behind: {leftovers}"


def test_unread_events_outlive_a_gateway_that_dies_after_the_session_ended(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    """The unread events go through the held-events log: a successor gateway (the rig's
    closed, its files kept) hands them to the account's next session, in order, once."""
    rig = make_rig([account(1, cancel_on_disconnect=False)])
    rig.core.attach_ledger(tmp_path / "gateway.ledger", 3)
    rig.core.attach_held(tmp_path / "gateway.held")
    rig.core.drain()
    rig.core.hold_drained()
    s = rig.session(1)
    s.send(command(order_id=5, side=Side.SELL, quantity=100))
    rig.poll()
    (order,) = rig.sent(0)
    rig.answer(0, EventKind.ACCEPTED, order)
    execs = [rig.exec_id]
    for qty, left in ((3, 97), (2, 95)):
        rig.answer(0, EventKind.TRADE, order, quantity=qty, leaves_qty=left)
        execs.append(rig.exec_id)
    rig.poll()
    rig.core.remove_session(s.id)  # three events unread in its ring
    assert rig.core.stats()["events_unread_held"] == 3
    rig.core.close()
    rig.epoch += 1
    rig.core = GatewayCore(rig.config, epoch=rig.epoch, cancel_on_start=False)
    rig.core.attach_ledger(tmp_path / "gateway.ledger", 3)
    assert rig.core.attach_held(tmp_path / "gateway.held") == 3
    rig.core.drain()
    image = np.zeros(1, dtype=LIVE_ORDER_DTYPE)
    image[0] = (order["order_id"], AAA, 1, Side.SELL, 1, order["price"], 0, 100, 95)
    rig.core.restore(image)
    rig.core.hold_drained()
    nxt = rig.session(1)
    rig.poll()
    assert _exec_ids(nxt.events()) == execs
