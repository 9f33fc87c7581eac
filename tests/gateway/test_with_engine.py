"""The pump in front of real shard workers (a Supervisor with two shards): orders trade in
the engine, fills come back to each owner with its own ids, and the gateway's account
state — positions, open orders, open and filled notional — follows the fills; the kill
switch and a disconnect cancel what rests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import RingFactory
from tests.gateway.rig import AAA, BBB, Session, account, command
from tradsys.config import (
    Config,
    EngineSection,
    GatewaySection,
    JournalSection,
    MdSection,
    ShardSection,
)
from tradsys.cores.supervisor import Supervisor
from tradsys.gateway import GatewayCore
from tradsys.matching import Instrument
from tradsys.wire import (
    EVENT_DTYPE,
    CancelReason,
    CommandKind,
    EventKind,
    OrderFlag,
    Side,
    TimeInForce,
)

pytestmark = pytest.mark.multiprocess

TIMEOUT_S = 30.0


@pytest.fixture
def engine(
    instance: str, tmp_path: Path, rings: RingFactory
) -> Iterator[tuple[GatewayCore, Any, Config]]:
    config = Config(
        engine=EngineSection(instance=instance, data_dir=str(tmp_path), ring_capacity=1024),
        journal=JournalSection(durability="none"),
        shards=[ShardSection(id=0, symbols=["AAA"]), ShardSection(id=1, symbols=["BBB"])],
        instruments=[
            Instrument("AAA", AAA, reference_price=1000),
            Instrument("BBB", BBB, reference_price=500),
        ],
        accounts=[account(1, credit_limit=100_000), account(2)],
        gateway=GatewaySection(enabled=False, max_live_orders=1024, max_sessions=4),
        md=MdSection(enabled=False),  # the test reads the rings itself
    )
    log: list[str] = []
    with Supervisor(config, log=log.append) as _:
        core = GatewayCore(config, epoch=11)
        try:
            core.start()
            yield core, rings, config
        finally:
            core.close()


def connect(core: GatewayCore, rings: RingFactory, account_id: int, **kw: Any) -> Session:
    to_gw = rings.create(capacity=64, role="producer")
    from_gw = rings.create(capacity=64, role="consumer")
    return Session(core.add_session(account_id, to_gw, from_gw, **kw), account_id, to_gw, from_gw)


def expect(session: Session, n: int) -> np.ndarray[Any, Any]:
    """The next n events of the session, waiting for them (futex park, not a sleep)."""
    out = np.zeros(n, dtype=EVENT_DTYPE)
    got = 0
    while got < n:
        k = session.from_gateway.pop_wait(out[got:], timeout=TIMEOUT_S)
        assert k, f"session {session.id}: {got} of {n} events after {TIMEOUT_S} s: {out[:got]}"
        got += k
    return out


def test_fills_positions_and_exposure(engine: tuple[GatewayCore, Any, Config]) -> None:
    core, rings, _ = engine
    seller, buyer = connect(core, rings, 1), connect(core, rings, 2)
    seller.send(command(order_id=100, side=Side.SELL, quantity=10, price=1000))
    assert expect(seller, 1)["kind"][0] == EventKind.ACCEPTED
    assert core.account_state(1).open_notional == 10_000
    buyer.send(
        command(order_id=7, quantity=4, price=1000), command(order_id=8, quantity=3, price=1000)
    )
    ev = expect(buyer, 4)
    assert list(ev["kind"]) == [EventKind.ACCEPTED, EventKind.TRADE] * 2
    assert list(ev["order_id"]) == [7, 7, 8, 8]
    assert set(ev["contra_order_id"]) == {0}
    ev = expect(seller, 2)
    assert list(ev["kind"]) == [EventKind.TRADE] * 2 and set(ev["order_id"]) == {100}
    assert list(ev["leaves_qty"]) == [6, 3]
    assert core.position(1, "AAA").position == -7
    assert core.position(2, "AAA").position == 7
    s1, s2 = core.account_state(1), core.account_state(2)
    assert (s1.open_orders, s1.open_notional, s1.filled_notional) == (1, 3000, 7000)
    assert (s2.open_orders, s2.open_notional, s2.filled_notional) == (0, 0, 7000)
    assert core.position(1, "AAA").open_sell == 3
    # the kill switch cancels the rest in the engine and blocks the account
    core.kill(1)
    ev = expect(seller, 1)
    assert (ev[0]["kind"], ev[0]["reason"], ev[0]["order_id"]) == (
        EventKind.CANCELLED,
        CancelReason.KILL_SWITCH,  # not a MASS_CANCEL the account never sent
        100,
    )
    assert core.account_state(1).open_orders == 0
    assert core.position(1, "AAA").open_sell == 0
    core.kill(1, on=False)


def test_a_clients_kill_switch_flag_on_its_mass_cancel_is_dropped(
    engine: tuple[GatewayCore, Any, Config],
) -> None:
    """Only an operator's kill switch may make the engine say KILL_SWITCH: a client that
    sets the flag on its own MASS_CANCEL gets MASS_CANCEL."""
    core, rings, _ = engine
    alice = connect(core, rings, 1)
    alice.send(command(order_id=5, quantity=2, price=990))
    assert expect(alice, 1)["kind"][0] == EventKind.ACCEPTED
    alice.send(command(CommandKind.MASS_CANCEL, flags=OrderFlag.KILL_SWITCH))
    ev = expect(alice, 1)
    assert (ev[0]["kind"], ev[0]["reason"]) == (EventKind.CANCELLED, CancelReason.MASS_CANCEL)


def test_a_market_order_stops_at_the_collar_edge(engine: tuple[GatewayCore, Any, Config]) -> None:
    """A market buy on a thin book: the gateway sends it with the account's collar edge
    (reference 1000, 5 %: 1050) and the engine stops it there, its remainder cancelled."""
    core, rings, _ = engine
    core.set_account_limits(account(2, price_collar_bps=500, max_order_notional=31_500))
    seller, buyer = connect(core, rings, 1), connect(core, rings, 2)
    seller.send(
        command(order_id=1, side=Side.SELL, quantity=10, price=1000),
        command(order_id=2, side=Side.SELL, quantity=10, price=1040),
        command(order_id=3, side=Side.SELL, quantity=10, price=1200),
    )
    assert list(expect(seller, 3)["kind"]) == [EventKind.ACCEPTED] * 3
    buyer.send(command(order_id=9, order_type=2, tif=TimeInForce.IOC, price=0, quantity=30))
    ev = expect(buyer, 4)
    assert list(ev["kind"]) == [EventKind.ACCEPTED, EventKind.TRADE, EventKind.TRADE,
                                EventKind.CANCELLED]  # fmt: skip
    assert ev[0]["price"] == 1050
    assert list(ev["price"][1:3]) == [1000, 1040]
    assert (ev[3]["reason"], ev[3]["quantity"]) == (CancelReason.MARKET_REMAINDER, 10)
    assert core.position(2, "AAA").position == 20
    assert core.account_state(2).open_orders == 0


def test_a_sell_stop_loss_below_the_collar_still_sells(
    engine: tuple[GatewayCore, Any, Config],
) -> None:
    """A sell stop at 900 (reference 1000, 5 % collar) goes out protected at 855, below
    its stop price: once the market trades at 900 it sells there (protected around the
    reference, at 950, it could never have sold at all)."""
    core, rings, _ = engine
    core.set_account_limits(account(2, price_collar_bps=500))
    bidder, seller = connect(core, rings, 1), connect(core, rings, 2)
    bidder.send(command(order_id=1, quantity=20, price=900))
    assert expect(bidder, 1)["kind"][0] == EventKind.ACCEPTED
    seller.send(
        command(order_id=5, side=Side.SELL, order_type=3, price=0, stop_price=900, quantity=10)
    )
    (ack,) = expect(seller, 1)
    assert (ack["kind"], ack["price"]) == (EventKind.ACCEPTED, 855)
    # a third account, without a collar, trades at 900: the stop triggers
    core.set_account_limits(account(3))
    other = connect(core, rings, 3)
    other.send(command(order_id=1, side=Side.SELL, quantity=1, price=900))
    assert list(expect(other, 2)["kind"]) == [EventKind.ACCEPTED, EventKind.TRADE]
    ev = expect(seller, 2)
    assert list(ev["kind"]) == [EventKind.TRIGGERED, EventKind.TRADE]
    assert (ev[0]["order_id"], ev[0]["price"]) == (5, 855)
    assert (ev[1]["order_id"], ev[1]["price"], ev[1]["quantity"]) == (5, 900, 10)
    assert core.position(2, "AAA").position == -10


def test_disconnect_cancels_in_the_engine(engine: tuple[GatewayCore, Any, Config]) -> None:
    core, rings, _ = engine
    s = connect(core, rings, 2, cancel_on_disconnect=True)
    s.send(command(order_id=1, symbol_id=BBB, price=500), command(order_id=2, price=990))
    assert list(expect(s, 2)["kind"]) == [EventKind.ACCEPTED] * 2
    assert core.account_state(2).open_orders == 2
    watcher = connect(core, rings, 2)
    core.remove_session(s.id)
    # On each shard the disconnect's CANCEL is ahead of the watcher's order: the engine's
    # CANCELLED events come first, to the watcher (the account's other session takes the
    # cancelled orders' last events), then its own orders' ACCEPTED; the account counts
    # only the watcher's two. (Ids of their own: 1 and 2 stay taken until the cancelled
    # orders are done, and a NEW that reused one in this race might be refused.)
    watcher.send(command(order_id=3, symbol_id=BBB, price=500), command(order_id=4, price=990))
    got = expect(watcher, 4)
    assert sorted(got["kind"]) == sorted([EventKind.CANCELLED] * 2 + [EventKind.ACCEPTED] * 2)
    # named as the disconnect's, not as cancels the account sent (audit Y)
    cancelled = got[got["kind"] == EventKind.CANCELLED]
    assert list(cancelled["reason"]) == [CancelReason.DISCONNECT] * 2
    assert core.account_state(2).open_orders == 2
    assert core.stats()["events_orphaned"] == 0
    assert len(s.events()) == 0


def test_a_new_gateway_cancels_what_the_old_one_left(
    engine: tuple[GatewayCore, Any, Config],
) -> None:
    core, rings, config = engine
    s = connect(core, rings, 2)  # account 2 is cancel-on-disconnect (the default)
    s.send(command(order_id=1, price=990))
    assert expect(s, 1)["kind"][0] == EventKind.ACCEPTED
    core.close()  # the gateway dies with the order resting in the engine
    successor = GatewayCore(config, epoch=12)
    try:
        successor.start()
        # a barrier: the MASS_CANCEL went first on shard 0, so once this order is
        # ACCEPTED the engine's CANCELLED for the orphan has come (for an unknown id)
        t = connect(successor, rings, 1)
        t.send(command(order_id=1, price=980))
        assert expect(t, 1)["kind"][0] == EventKind.ACCEPTED
        assert successor.stats()["events_unknown"] == 1
        # the orphan is gone from the book: a sell at 990 does not trade with it
        t.send(command(order_id=2, side=Side.SELL, price=990))
        assert list(expect(t, 1)["kind"]) == [EventKind.ACCEPTED]
        assert successor.position(1, "AAA").position == 0
    finally:
        successor.close()


def test_gtd_orders_expire_because_the_pump_keeps_the_engine_clock(
    engine: tuple[GatewayCore, Any, Config],
) -> None:
    """Nobody else sends CLOCK_TICK: the pump's ticks alone make a GTD order expire, in a
    market where nothing else happens."""
    core, rings, _ = engine
    s = connect(core, rings, 1)
    expiry = time.time_ns() + 200_000_000
    s.send(command(order_id=5, price=990, tif=TimeInForce.GTD, time_ns=expiry))
    assert expect(s, 1)["kind"][0] == EventKind.ACCEPTED
    ev = expect(s, 1)[0]
    assert (ev["kind"], ev["reason"], ev["order_id"]) == (
        EventKind.CANCELLED,
        CancelReason.EXPIRED,
        5,
    )
    assert time.time_ns() >= expiry
    assert core.account_state(1).open_orders == 0
