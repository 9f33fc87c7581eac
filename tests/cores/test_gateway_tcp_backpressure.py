"""A TCP client that sends faster than it reads, against the real gateway: its ACKs come
behind its commands, so the gateway must go on reading past a full inbound ring (up to
its backlog bound), or the session's ACK window, the outbound ring, the core and the
inbound ring wait on each other for good."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.client.edge_rig import KEYS
from tests.client.raw import RawPeer
from tests.cores.test_gateway_e2e import e2e_config_text
from tradsys import wire
from tradsys.config import parse_config
from tradsys.cores.sidecar import read_announcement
from tradsys.cores.supervisor import Supervisor
from tradsys.protocols.binary import MAX_RECORDS_PER_FRAME, MessageType, encode_ack, encode_records

pytestmark = pytest.mark.multiprocess

RING = 64  # the session rings: small, so a few hundred commands fill them
STALL_S = 10.0  # no event for this long: stuck


@pytest.fixture
def running(instance: str, tmp_path: Path) -> Iterator[Supervisor]:
    text = e2e_config_text(instance, tmp_path).replace(
        "[gateway]\n", f"[gateway]\nsession_ring_capacity = {RING}\n"
    )
    sup = Supervisor(parse_config(text, "backpressure"), log=lambda line: None)
    sup.start()
    try:
        yield sup
    finally:
        sup.stop()


def test_an_acknowledging_client_that_sends_ahead_of_reading_is_not_stuck(
    running: Supervisor,
) -> None:
    ann = read_announcement(running.config, "gateway")
    assert ann is not None
    host, port = ann["tcp"].rsplit(":", 1)
    peer = RawPeer.tcp(host, int(port))
    peer.login(1, KEYS[1])
    peer.send(encode_ack(0))  # an acknowledging client from the start: the window applies
    n = 40 * RING
    orders = np.zeros(n, wire.COMMAND_DTYPE)
    orders["kind"], orders["symbol_id"], orders["side"] = wire.CommandKind.NEW_ORDER, 1, 1
    orders["order_type"], orders["tif"] = wire.OrderType.LIMIT, wire.TimeInForce.IOC
    orders["quantity"], orders["price"] = 1, 90
    orders["order_id"] = np.arange(1, n + 1)
    frames = b"".join(
        encode_records(MessageType.COMMANDS, i + 1, orders[i : i + MAX_RECORDS_PER_FRAME])
        for i in range(0, n, MAX_RECORDS_PER_FRAME)
    )
    peer.sock.settimeout(STALL_S)
    try:
        peer.send(frames)  # more than the socket buffers hold: only a reading gateway takes it
    except TimeoutError:
        pytest.fail(f"stuck: the gateway stopped reading after a full ring, {STALL_S} s")
    answered, last_event = 0, time.monotonic()
    acks = wire.EventKind.ACCEPTED
    while answered < n:
        assert time.monotonic() - last_event < STALL_S, (
            f"stuck: {answered} of {n} orders acknowledged, no event for {STALL_S} s"
        )
        frame = peer.next_frame(timeout=1.0)
        if frame is None:
            continue
        kind, seq, body = frame
        assert kind != MessageType.END, frame
        if kind == MessageType.EVENTS:
            events = np.frombuffer(body, wire.EVENT_DTYPE)
            answered += int((events["kind"] == acks).sum())
            peer.send(encode_ack(seq + len(events) - 1))  # behind whatever it sent before
            last_event = time.monotonic()
    peer.close()
