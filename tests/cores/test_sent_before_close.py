"""Commands a client sent just before its session ended, against the real gateway: an
exchange acts on every message it received before a disconnect. The gateway took them
only while the session lived, so those still in the session's inbound ring (colocated),
or read and waiting for room in it (TCP), were dropped with the session: no answer ever,
not even to the account's next session -- and a cancel sent last was lost, its order
resting on. Now each is answered, to the account's next session."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.client.edge_rig import KEYS
from tests.client.raw import RawPeer
from tests.cores.test_gateway_e2e import e2e_config_text
from tradsys.client.commands import order_record
from tradsys.client.events import Ack, Cancelled, Event, Fill, Replaced
from tradsys.client.orders import OrderClient
from tradsys.config import parse_config
from tradsys.cores.sidecar import read_announcement
from tradsys.cores.supervisor import Supervisor
from tradsys.protocols.binary import MessageType, encode_empty, encode_records, header

pytestmark = pytest.mark.multiprocess

# more than a session ring holds (TCP keeps the rest in its backlog), fewer than two (a
# colocated client that does not read its events can send no more than that)
ORDERS = 100
SINGLES = 20
RING = 64
ANSWER_S = 20.0


@pytest.fixture
def running(instance: str, tmp_path: Path) -> Iterator[Supervisor]:
    """The e2e instance with small session rings; account 1 cancels on disconnect, account
    2 does not (its orders outlive its sessions)."""
    text = e2e_config_text(
        instance,
        tmp_path,
        lambda i: "cancel_on_disconnect = false\n" if i == 2 else "",
    ).replace("[gateway]\n", f"[gateway]\nsession_ring_capacity = {RING}\n")
    sup = Supervisor(parse_config(text, "sent-before-close"), log=lambda line: None)
    sup.start()
    try:
        yield sup
    finally:
        sup.stop()


def _endpoint(sup: Supervisor, how: str) -> str:
    ann = read_announcement(sup.config, "gateway")
    assert ann is not None
    return ann["unix_socket"] if how == "colocated" else f"tcp://{ann['tcp']}"


def _events_until(c: OrderClient, done: Callable[[list[Event]], bool], what: str) -> list[Event]:
    """Every event of the session until ``done(events)`` holds (or fail, naming what)."""
    seen: list[Event] = []
    deadline = time.monotonic() + ANSWER_S
    while not done(seen):
        assert time.monotonic() < deadline, f"{what}: {len(seen)} events in {ANSWER_S} s"
        seen += c.poll(timeout=0.2)
    return seen


def _all_answered_to_the_next_session(endpoint: str, want: set[int]) -> None:
    """The account's next session gets what the orders did -- each accepted, then
    cancelled on the disconnect (account 1 cancels on it)."""
    with OrderClient.connect(endpoint, account_id=1, api_key=KEYS[1]) as c:

        def all_cancelled(events: list[Event]) -> bool:
            return {e.order_id for e in events if isinstance(e, Cancelled)} >= want

        events = _events_until(c, all_cancelled, "cancels of the orders sent before the end")
        acked = {e.order_id for e in events if isinstance(e, Ack)}
        assert acked >= want, f"never acknowledged: {sorted(want - acked)[:10]}"


@pytest.mark.parametrize("how", ["colocated", "tcp"])
def test_an_order_sent_just_before_the_session_ends_is_answered(
    running: Supervisor, how: str
) -> None:
    """One order a session: each raced the session's end before."""
    endpoint = _endpoint(running, how)
    for i in range(SINGLES):
        with OrderClient.connect(endpoint, account_id=1, api_key=KEYS[1]) as c:
            c.submit(1, "buy", 1, 90, order_id=1_000 + i)
    _all_answered_to_the_next_session(endpoint, set(range(1_000, 1_000 + SINGLES)))


@pytest.mark.parametrize("how", ["colocated", "tcp"])
def test_a_burst_sent_just_before_the_session_ends_is_all_answered(
    running: Supervisor, how: str
) -> None:
    """More than the session's command ring holds, none of the answers read: the rest
    waited in the ring (colocated: the gateway takes no more than the event ring has room
    for) or in the TCP edge's backlog when the session ended. A fresh account: no events
    of earlier sessions take room in the event ring first."""
    endpoint = _endpoint(running, how)
    with OrderClient.connect(endpoint, account_id=1, api_key=KEYS[1]) as c:
        for i in range(ORDERS):  # resting bids far from the market
            c.submit(1, "buy", 1, 90, order_id=2_000 + i)
    _all_answered_to_the_next_session(endpoint, set(range(2_000, 2_000 + ORDERS)))


@pytest.mark.parametrize("how", ["colocated", "tcp"])
def test_a_cancel_sent_just_before_the_session_ends_lands(running: Supervisor, how: str) -> None:
    endpoint = _endpoint(running, how)
    with OrderClient.connect(endpoint, account_id=2, api_key=KEYS[2]) as c:
        oid = c.submit(1, "sell", 1, 200, order_id=77)
        assert isinstance(c.wait_for(oid), Ack)
    for attempt in range(20):  # a race before: lost in some of these, kept resting
        with OrderClient.connect(endpoint, account_id=2, api_key=KEYS[2]) as c:
            c.replace(oid, price=200 + attempt % 2 + 1, quantity=1, symbol_id=1)
        with OrderClient.connect(endpoint, account_id=2, api_key=KEYS[2]) as c:
            _events_until(
                c,
                lambda evs: any(isinstance(e, Replaced) and e.order_id == oid for e in evs),
                f"the replace of attempt {attempt}",
            )
    with OrderClient.connect(endpoint, account_id=2, api_key=KEYS[2]) as c:
        c.cancel(oid, 1)
    with OrderClient.connect(endpoint, account_id=2, api_key=KEYS[2]) as c:
        _events_until(
            c,
            lambda evs: any(isinstance(e, Cancelled) and e.order_id == oid for e in evs),
            "the cancel sent just before the session ended",
        )


@pytest.mark.parametrize("how", ["logout", "protocol_error"])
def test_an_ended_session_leaves_the_book_before_its_client_closes(
    running: Supervisor, how: str
) -> None:
    """The gateway takes a session out when it sends END, not when the client closes: a
    client that read END but keeps its socket open (the close lingers up to three
    heartbeat intervals) must not keep an order of a cancel_on_disconnect account
    trading meanwhile. The order was once filled by an IOC sent after the END."""
    endpoint = _endpoint(running, "tcp")
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    peer = RawPeer.tcp(host, int(port))
    try:
        peer.login(1, KEYS[1])
        peer.send(encode_records(MessageType.COMMANDS, 1, order_record(5_000, 1, "buy", 5, 100)))
        frame = peer.next_frame(ANSWER_S)  # SYMBOLS, then the order's ACCEPTED
        while frame is not None and frame[0] == MessageType.SYMBOLS:
            frame = peer.next_frame(ANSWER_S)
        assert frame is not None and frame[0] == MessageType.EVENTS, frame
        peer.send(encode_empty(MessageType.LOGOUT) if how == "logout" else header(0x7F, 0))
        frames = peer.frames_until_closed(ANSWER_S)
        assert frames and frames[-1][0] == MessageType.END, frames
        # END read, FIN read, the socket still open: another account's IOC at its price
        with OrderClient.connect(endpoint, account_id=2, api_key=KEYS[2]) as bob:
            ioc = bob.submit(1, "sell", 2, 100, tif="ioc")
            done = _events_until(
                bob,
                lambda evs: any(isinstance(e, Cancelled | Fill) and e.order_id == ioc for e in evs),
                "the IOC's end",
            )
        assert not [e for e in done if isinstance(e, Fill)], f"traded after END: {done}"
    finally:
        peer.close()
    with OrderClient.connect(endpoint, account_id=1, api_key=KEYS[1]) as alice:
        events = _events_until(
            alice,
            lambda evs: any(isinstance(e, Cancelled) and e.order_id == 5_000 for e in evs),
            "the cancel-on-disconnect of the resting order",
        )
    assert not [e for e in events if isinstance(e, Fill)], events
