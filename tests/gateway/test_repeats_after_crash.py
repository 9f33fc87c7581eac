"""Through the Supervisor, with real processes: a TCP client that processed its order's
ack and three fills and had not acknowledged them when the gateway was killed (SIGKILL)
gets them again in its account's next session -- the gateway owes it every
unacknowledged event -- and ``tradsys.client`` given the account's ``SeenExecs`` drops
those repeats, so the application sees each fill once: the three, then the one that came
while it was away."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.client.edge_rig import KEYS
from tests.gateway.test_unread_gateway_crash import _restart_gateway
from tests.gateway.test_unread_sessions import (
    ACME,
    _address,
    _bob_buys,
    _fills_until_ack,
    _tcp_address,
    unread_config,
)
from tradsys.client.events import Ack, Disconnected, Fill
from tradsys.client.orders import OrderClient, SeenExecs
from tradsys.cores.supervisor import Supervisor

pytestmark = pytest.mark.multiprocess


def test_a_client_with_seen_execs_sees_each_fill_once_across_a_gateway_crash(
    instance: str, tmp_path: Path
) -> None:
    # a heartbeat of a minute: the client's periodic ACK (every half interval) never
    # comes during the test, so the fills it processed stay unacknowledged
    config = unread_config(instance, tmp_path / "data", heartbeat_ms=60_000)
    seen = SeenExecs()
    with Supervisor(config, log=lambda line: None) as sup:
        tcp = f"tcp://{_tcp_address(config)}"
        alice = OrderClient.connect(tcp, account_id=1, api_key=KEYS[1], seen=seen)
        try:
            alice.wait_for(alice.submit(ACME, "sell", 10, 101, order_id=1))
            with OrderClient.connect(_address(config), account_id=2, api_key=KEYS[2]) as bob:
                _bob_buys(bob, [(1, 101)] * 3)
            first: list[Fill] = []
            while len(first) < 3:
                first += [e for e in alice.poll(5.0) if isinstance(e, Fill)]
            alice.poll()  # the three count as processed; no ACK goes before the crash
            _restart_gateway(sup)
        finally:
            with contextlib.suppress(Disconnected, OSError):
                alice.close()
        with OrderClient.connect(_address(config), account_id=2, api_key=KEYS[2]) as bob:
            _bob_buys(bob, [(1, 101)])  # held for alice, behind the three owed again
        tcp = f"tcp://{_tcp_address(config)}"  # the new gateway's port (it binds port 0)
        with OrderClient.connect(tcp, account_id=1, api_key=KEYS[1], seen=seen) as again:
            later = _fills_until_ack(again, again.submit(ACME, "buy", 1, 50, order_id=9))
    fills = first + [e for e in later if isinstance(e, Fill)]
    assert [(f.order_id, f.quantity, f.leaves_qty) for f in fills] == [
        (1, 1, 9),
        (1, 1, 8),
        (1, 1, 7),
        (1, 1, 6),
    ]
    assert not [e for e in later if isinstance(e, Ack) and e.order_id == 1]
    assert seen.dropped == 4  # the gateway did send her ack and the three fills again
