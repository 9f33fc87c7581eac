"""The accounts' figures in the gateway's stats file stay bounded whatever accounts x
symbols (scale audit: every account's position in every symbol, 1.1 MB at 1 000 symbols
x 64 accounts, stalled the event loop 234-414 ms once a second), and still carry what
their readers need: each busy account's risk state and its non-flat positions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from tests.conftest import RingFactory
from tests.gateway.rig import AAA, BBB, GatewayRig, account, command
from tradsys.config import Config, EngineSection, GatewaySection, ShardSection
from tradsys.cores import gateway_figures
from tradsys.cores.gateway_figures import AccountFigures
from tradsys.matching import Instrument
from tradsys.wire import EventKind, Side

SYMBOLS = 1000
ACCOUNTS = 64


def big_config(instance: str) -> Config:
    """1 000 symbols on two shards (AAA and BBB first), 64 accounts."""
    others = [Instrument(f"S{i:04d}", 100 + i, reference_price=1000) for i in range(SYMBOLS - 2)]
    return Config(
        engine=EngineSection(instance=instance, ring_capacity=1024, wait="spin-park"),
        shards=[ShardSection(id=0, symbols=["AAA"]), ShardSection(id=1, symbols=["BBB"])],
        instruments=[
            Instrument("AAA", AAA, reference_price=1000),
            Instrument("BBB", BBB, reference_price=1000),
            *others,
        ],
        accounts=[account(i) for i in range(1, ACCOUNTS + 1)],
        gateway=GatewaySection(max_live_orders=4096, max_sessions=8, clock_tick_us=0),
    )


@pytest.fixture
def rig(instance: str, rings: RingFactory) -> Iterator[GatewayRig]:
    made = GatewayRig(rings, big_config(instance))
    try:
        yield made
    finally:
        made.close()


def trade(rig: GatewayRig) -> Any:
    """Account 1 rests a buy of 10 AAA at 1000, 4 of them fill; account 2 rests a sell
    of 3 BBB (shard 1), which is returned (the command shard 1 received)."""
    one = rig.session(1)
    sent = rig.rest(one, command(order_id=1))
    rig.answer(0, EventKind.TRADE, sent, quantity=4, leaves_qty=6)
    rig.poll()
    two = rig.session(2)
    two.send(command(order_id=1, symbol_id=BBB, side=Side.SELL, quantity=3))
    rig.poll()
    (sent,) = rig.sent(1)
    rig.answer(1, EventKind.ACCEPTED, sent)
    rig.poll()
    return sent


def test_only_busy_accounts_and_non_flat_positions_are_written(rig: GatewayRig) -> None:
    trade(rig)
    figures = AccountFigures(rig.core, rig.config)
    figures.refresh()
    accounts = figures.accounts()
    # before: 64 accounts x 1 000 positions; now the two that are not idle, their 2
    assert accounts == {
        "1": {
            "open_orders": 1,
            "open_notional": 6 * 1000,
            "filled_notional": 4 * 1000,
            "killed": False,
            "positions": {"AAA": [4, 6, 0]},
        },
        "2": {
            "open_orders": 1,
            "open_notional": 3 * 1000,
            "filled_notional": 0,
            "killed": False,
            "positions": {"BBB": [0, 0, 3]},
        },
    }
    assert figures.summary() == {
        "accounts_listed": 2,
        "accounts_omitted": 0,
        "positions": 2,
        "passes": 1,
        "pass_writes": 1,
    }
    assert len(msgspec.json.encode(accounts)) < 400
    # a killed account is not idle, even flat and without orders
    rig.core.kill(ACCOUNTS)
    figures.refresh()
    assert figures.accounts()[str(ACCOUNTS)]["killed"] is True


def every_account_live(rig: GatewayRig) -> None:
    """Give every account a session, and take it away: each has its rows of positions."""
    for a in range(1, ACCOUNTS + 1):
        rig.core.remove_session(rig.session(a, capacity=16).id)
    assert rig.core.stats()["accounts_live"] == ACCOUNTS


def test_a_write_looks_at_no_more_than_its_budget(rig: GatewayRig) -> None:
    """With accounts x symbols beyond the budget, each write takes the next slice and a
    whole pass takes several writes; what each slice saw replaces what it had."""
    resting = trade(rig)
    every_account_live(rig)
    figures = AccountFigures(rig.core, rig.config, budget=4 * SYMBOLS)
    figures.refresh()
    assert figures.cursor == 4  # 4 accounts of 1 000 symbols each
    assert set(figures.accounts()) == {"1", "2"}
    writes = 1
    while figures.passes == 0:
        figures.refresh()
        writes += 1
    assert writes == ACCOUNTS // 4 == figures.pass_writes
    assert set(figures.accounts()) == {"1", "2"}
    # account 2's order goes: the next pass forgets it (idle again)
    rig.answer(1, EventKind.CANCELLED, resting, leaves_qty=0)
    rig.poll()
    for _ in range(writes):
        figures.refresh()
    assert set(figures.accounts()) == {"1"}
    assert figures.positions == 1


def test_accounts_that_never_traded_cost_the_budget_one_each(rig: GatewayRig) -> None:
    """Their positions are all flat without being looked at (no session, restored order
    or drained fill ever made their rows resident): a pass over 64 accounts of 1 000
    symbols with two that trade takes one write."""
    trade(rig)
    figures = AccountFigures(rig.core, rig.config, budget=4 * SYMBOLS)
    figures.refresh()
    assert (figures.cursor, figures.passes) == (0, 1)
    assert set(figures.accounts()) == {"1", "2"}


def test_the_file_lists_at_most_its_bound_of_positions(
    rig: GatewayRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_figures, "MAX_POSITIONS_IN_STATS", 1)
    monkeypatch.setattr(gateway_figures, "MAX_ACCOUNTS_IN_STATS", 1)
    trade(rig)
    figures = AccountFigures(rig.core, rig.config)
    figures.refresh()
    accounts = figures.accounts()
    assert list(accounts) == ["1"] and accounts["1"]["positions"] == {"AAA": [4, 6, 0]}
    assert figures.summary()["accounts_omitted"] == 1
