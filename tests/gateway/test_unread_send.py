"""Through the Supervisor, with the real pump: the gateway takes a session's commands
only while its event ring has room for their answers (an answer is never held in the
gateway's memory alone). A client that sends and never polls therefore stops itself: its
event ring fills, then its inbound ring. The send that gives up must say so, not only
that the inbound ring "stayed full", and nothing the rings took is lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.client.edge_rig import KEYS
from tests.gateway.test_unread_sessions import ACME, _address, unread_config
from tradsys.client.events import Ack
from tradsys.client.orders import OrderClient, order_bytes
from tradsys.client.transport import ColocatedTransport
from tradsys.cores.supervisor import Supervisor

pytestmark = pytest.mark.multiprocess

RING = 16


def test_a_client_that_never_polls_is_told_its_unread_events_stopped_it(
    instance: str, tmp_path: Path
) -> None:
    config = unread_config(instance, tmp_path / "data", ring=RING)
    with (
        Supervisor(config, log=lambda line: None),
        OrderClient.connect(_address(config), account_id=2, api_key=KEYS[2]) as bob,
    ):
        transport = bob.transport
        assert isinstance(transport, ColocatedTransport)
        sent: list[int] = []
        deadline = time.monotonic() + 20
        # resting bids, an Ack each, sent until both rings are full. The event ring is
        # looked at first: once it is full the gateway takes nothing, so the inbound ring
        # can then only fill (the other order could see a full inbound ring the gateway
        # was about to take)
        while transport.outbound.readable < RING or transport.inbound.writable:
            assert time.monotonic() < deadline, f"{len(sent)} sent; the rings never filled"
            if transport.inbound.writable:
                sent.append(bob.submit(ACME, "buy", 1, 90, order_id=len(sent) + 1))
        # a full event ring, a full inbound ring, and whatever the gateway took before
        # the answers came (it counts the ring's room, not the answers on their way)
        assert len(sent) >= 2 * RING
        with pytest.raises(TimeoutError, match=rf"event ring \S+ is full \({RING} unread\)"):
            transport.send_one(order_bytes(10**6, ACME, "buy", 1, 90), timeout=0.3)
        answered = [bob.wait_for(oid) for oid in sent]
    assert [a.order_id for a in answered if isinstance(a, Ack)] == sent
