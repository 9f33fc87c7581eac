"""Through the Supervisor, with real shard workers: a client that starts again without
its own state asks the gateway for its account's live orders (``order_status``) and gets
each with what is left of it after the fills that came while it was away, colocated and
over TCP, blocking and asyncio; the events it passes over while it waits stay for
``poll``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.client.edge_rig import KEYS
from tests.gateway.test_unread_sessions import (
    ACME,
    _address,
    _bob_buys,
    _tcp_address,
    unread_config,
)
from tradsys.client.events import Ack, Fill
from tradsys.client.orders import AsyncOrderClient, OrderClient, OrderRejected
from tradsys.config import Config
from tradsys.cores.supervisor import Supervisor
from tradsys.wire import OrderState, RejectReason, Side

pytestmark = pytest.mark.multiprocess


def _where(config: Config, how: str) -> str:
    return _address(config) if how == "colocated" else f"tcp://{_tcp_address(config)}"


@pytest.mark.parametrize("how", ["colocated", "tcp"])
def test_a_client_without_its_state_learns_its_live_orders(
    instance: str, tmp_path: Path, how: str
) -> None:
    config = unread_config(instance, tmp_path / "data")  # no cancel-on-disconnect
    with Supervisor(config, log=lambda line: None):
        where = _where(config, how)
        with OrderClient.connect(where, account_id=1, api_key=KEYS[1]) as alice:
            for oid, price in ((30, 103), (10, 101), (20, 102)):
                assert isinstance(alice.wait_for(alice.submit(ACME, "sell", 10, price,
                                                              order_id=oid)), Ack)  # fmt: skip
            live = alice.order_status()
            assert [(o.order_id, o.side, o.state, o.price, o.leaves_qty) for o in live] == [
                (10, Side.SELL, OrderState.OPEN, 101, 10),
                (20, Side.SELL, OrderState.OPEN, 102, 10),
                (30, Side.SELL, OrderState.OPEN, 103, 10),
            ]
            alice.poll()
        # she is gone; her orders rest, and bob trades with two of them
        with OrderClient.connect(_address(config), account_id=2, api_key=KEYS[2]) as bob:
            _bob_buys(bob, [(10, 101), (4, 102)])
        with OrderClient.connect(where, account_id=1, api_key=KEYS[1]) as again:
            live = again.order_status()
            assert [(o.order_id, o.state, o.price, o.quantity, o.leaves_qty) for o in live] == [
                (20, OrderState.OPEN, 102, 10, 6),
                (30, OrderState.OPEN, 103, 10, 10),
            ]
            assert len({o.request_id for o in live}) == 1
            # the fills that came while she was away came before the answer: poll has them
            fills = [e for e in again.poll(1.0) if isinstance(e, Fill)]
            assert [(f.order_id, f.quantity) for f in fills] == [(10, 10), (20, 4)]
            assert [o.order_id for o in again.order_status(symbol_id="ACME")] == [20, 30]
            with pytest.raises(OrderRejected) as refused:
                again.order_status(symbol_id=99)
            assert refused.value.reason == RejectReason.UNKNOWN_SYMBOL


def test_the_async_client_asks_too(instance: str, tmp_path: Path) -> None:
    config = unread_config(instance, tmp_path / "data")

    async def scenario() -> list[tuple[int, int]]:
        alice = await AsyncOrderClient.connect(_address(config), account_id=1, api_key=KEYS[1])
        try:
            first = await alice.submit(ACME, "sell", 5, 110)
            second = await alice.submit(ACME, "sell", 7, 111)
            await alice.wait_for(second)  # the first's ack is kept for next_event
            live = await alice.order_status()
            kept = await alice.next_event(1.0)
            assert isinstance(kept, Ack) and kept.order_id == first
            return [(o.order_id, o.leaves_qty) for o in live]
        finally:
            await alice.close()

    with Supervisor(config, log=lambda line: None):
        live = asyncio.run(scenario())
    assert live == sorted(live) and [q for _, q in live] == [5, 7]
