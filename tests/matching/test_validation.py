"""Every reject reason the engine gives, and the order of the checks: a rejected command
produces exactly one REJECTED event echoing the command, no market data, and changes no
state but the exec-id counter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.matching.helpers import (
    ACME,
    BUY,
    SELL,
    TIF,
    Harness,
    Records,
    accepted,
    buy,
    market,
    rejected,
    sell,
    stop,
    stop_limit,
)
from tradsys.matching import Instrument
from tradsys.matching.commands import (
    cancel,
    clock_tick,
    control,
    mass_cancel,
    new_order,
    replace,
)
from tradsys.matching.instrument import QTY_MAX
from tradsys.wire import GATEWAY_ONLY_REJECTS, ControlCode, OrderType, RejectReason

LOTS = Instrument(
    "LOTS", 2, tick_size=5, lot_size=10, min_qty=20, max_qty=1000, reference_price=1000,
    band_bps=1000,
)  # fmt: skip
"""Symbol 2: ticks of 5, lots of 10, 20..1000 lots, price band ±10% around 1000."""

Rej = RejectReason


def with_fields(cmd: Records, **fields: int) -> Records:
    out = cmd.copy()
    for name, value in fields.items():
        out[name] = value
    return out


def lots(oid: int, qty: int = 20, price: int = 1000, **kw: Any) -> Records:
    return buy(oid, qty, price, sym=2, **kw)


def populated(engine_cls: type) -> Harness:
    """Both symbols with resting orders on both sides and a pending stop, clock at 10."""
    h = Harness(engine_cls, ACME, LOTS)
    h.send(
        clock_tick(10),
        buy(1, 5, 99),
        sell(2, 5, 101, acct=2),
        stop(BUY, 3, 5, 105),
        lots(4, 20, 995),
        sell(5, 30, 1010, acct=2, sym=2),
    )
    return h


def assert_rejected(h: Harness, cmd: Records, reason: RejectReason, sym: int | None = None) -> None:
    """``cmd`` is answered by one REJECTED echoing it, and nothing else changes."""
    before, exec_before = h.state(), h.last_exec_id()
    out = h.send(cmd)
    c = cmd[0]
    expected = rejected(
        int(c["order_id"]), reason, side=int(c["side"]), price=int(c["price"]),
        qty=int(c["quantity"]), acct=int(c["account_id"]),
        sym=int(c["symbol_id"]) if sym is None else sym,
    )  # fmt: skip
    assert [tuple(e)[:11] for e in out.events.tolist()] == [tuple(expected)]
    assert out.events["exec_id"].tolist() == [exec_before + 1]
    assert len(out.md) == 0
    assert h.state() == before


# ---- new orders ------------------------------------------------------------------------

NEW_ORDER_REJECTS: list[tuple[str, Records, RejectReason]] = [
    ("unknown symbol", buy(10, 5, 100, sym=9), Rej.UNKNOWN_SYMBOL),
    ("account 0", buy(10, 5, 100, acct=0), Rej.INVALID_COMMAND),
    ("side 0", with_fields(buy(10, 5, 100), side=0), Rej.INVALID_SIDE),
    ("side 3", with_fields(buy(10, 5, 100), side=3), Rej.INVALID_SIDE),
    ("type 0", with_fields(buy(10, 5, 100), order_type=0), Rej.INVALID_ORDER_TYPE),
    ("type 5", with_fields(buy(10, 5, 100), order_type=5), Rej.INVALID_ORDER_TYPE),
    ("tif 0", with_fields(buy(10, 5, 100), tif=0), Rej.INVALID_TIF),
    ("tif 6", with_fields(buy(10, 5, 100), tif=6), Rej.INVALID_TIF),
    ("unknown flag", with_fields(buy(10, 5, 100), flags=2), Rej.INVALID_COMMAND),
    ("flags 3", with_fields(buy(10, 5, 100), flags=3), Rej.INVALID_COMMAND),
    ("stp 4", with_fields(buy(10, 5, 100), stp_mode=4), Rej.INVALID_COMMAND),
    ("market GTC", market(BUY, 10, 5, tif=TIF.GTC), Rej.INVALID_TIF),
    ("market DAY", market(BUY, 10, 5, tif=TIF.DAY), Rej.INVALID_TIF),
    ("market GTD", market(BUY, 10, 5, tif=TIF.GTD, expire_ns=99), Rej.INVALID_TIF),
    ("stop IOC", stop(BUY, 10, 5, 105, tif=TIF.IOC), Rej.INVALID_TIF),
    ("stop-limit FOK", stop_limit(SELL, 10, 5, 95, 96, tif=TIF.FOK), Rej.INVALID_TIF),
    ("post-only market", market(BUY, 10, 5, post_only=True), Rej.INVALID_ORDER_TYPE),
    ("post-only stop", stop_limit(BUY, 10, 5, 99, 98, post_only=True), Rej.INVALID_ORDER_TYPE),
    ("post-only IOC", buy(10, 5, 100, tif=TIF.IOC, post_only=True), Rej.INVALID_TIF),
    ("post-only FOK", buy(10, 5, 100, tif=TIF.FOK, post_only=True), Rej.INVALID_TIF),
    ("iceberg market", market(BUY, 10, 5, display_qty=1), Rej.INVALID_ORDER_TYPE),
    ("iceberg stop", stop(BUY, 10, 5, 105, display_qty=1), Rej.INVALID_ORDER_TYPE),
    ("iceberg IOC", buy(10, 5, 100, tif=TIF.IOC, display_qty=1), Rej.INVALID_TIF),
    ("iceberg negative", buy(10, 5, 99, display_qty=-1), Rej.INVALID_QUANTITY),
    ("qty 0", lots(10, 0), Rej.INVALID_QUANTITY),
    ("qty negative", lots(10, -20), Rej.INVALID_QUANTITY),
    ("qty off lot", lots(10, 25), Rej.INVALID_QUANTITY),
    ("qty below min", lots(10, 10), Rej.INVALID_QUANTITY),
    ("qty above max", lots(10, 1010), Rej.INVALID_QUANTITY),
    ("display off lot", lots(10, 40, display_qty=15), Rej.INVALID_QUANTITY),
    ("display above qty", lots(10, 40, display_qty=50), Rej.INVALID_QUANTITY),
    ("price 0", lots(10, 20, 0), Rej.INVALID_PRICE),
    ("price negative", lots(10, 20, -5), Rej.INVALID_PRICE),
    ("price off tick", lots(10, 20, 1002), Rej.INVALID_PRICE),
    ("market price < 0", with_fields(market(BUY, 10, 20, sym=2), price=-5), Rej.INVALID_PRICE),
    ("stop price < 0", with_fields(stop(BUY, 10, 20, 1050, sym=2), price=-5), Rej.INVALID_PRICE),
    ("stop-limit price 0", stop_limit(BUY, 10, 20, 0, 1050, sym=2), Rej.INVALID_PRICE),
    ("stop price 0", stop(BUY, 10, 20, 0, sym=2), Rej.INVALID_PRICE),
    ("stop price off tick", stop(BUY, 10, 20, 1052, sym=2), Rej.INVALID_PRICE),
    ("stop price negative", stop_limit(BUY, 10, 20, 1000, -5, sym=2), Rej.INVALID_PRICE),
    ("limit with stop price", lots(10, 20, 1000, stop_price=1050), Rej.INVALID_PRICE),
    ("market with stop price", market(BUY, 10, 5, stop_price=105), Rej.INVALID_PRICE),
    ("band above", lots(10, 20, 1105), Rej.PRICE_BAND),
    ("band below", lots(10, 20, 895), Rej.PRICE_BAND),
    ("stop-limit band", stop_limit(BUY, 10, 20, 1105, 1050, sym=2), Rej.PRICE_BAND),
    ("GTD now", buy(10, 5, 100, tif=TIF.GTD, expire_ns=10), Rej.INVALID_TIF),
    ("GTD past", buy(10, 5, 100, tif=TIF.GTD, expire_ns=3), Rej.INVALID_TIF),
    ("stop GTD past", stop(SELL, 10, 5, 90, tif=TIF.GTD, expire_ns=0), Rej.INVALID_TIF),
    ("reused id", buy(5, 5, 100), Rej.DUPLICATE_ORDER_ID),
    ("older id", buy(3, 5, 100), Rej.DUPLICATE_ORDER_ID),
    ("id 0", buy(0, 5, 100), Rej.DUPLICATE_ORDER_ID),
    ("post-only would take", buy(10, 5, 101, post_only=True), Rej.POST_ONLY_WOULD_TAKE),
    ("FOK unfillable", sell(10, 6, 99, tif=TIF.FOK, acct=3), Rej.FOK_UNFILLABLE),
    # first failure wins: each command fails two rules, the earlier one is named
    ("symbol before account", buy(10, 5, 100, sym=9, acct=0), Rej.UNKNOWN_SYMBOL),
    ("account before side", with_fields(buy(10, 5, 100, acct=0), side=9), Rej.INVALID_COMMAND),
    ("side before type", with_fields(buy(10, 5, 100), side=9, order_type=9), Rej.INVALID_SIDE),
    ("type before tif", with_fields(buy(10, 5, 100), order_type=9, tif=9), Rej.INVALID_ORDER_TYPE),
    ("tif before flags", with_fields(buy(10, 5, 100), tif=9, flags=4), Rej.INVALID_TIF),
    ("flags before combination", market(BUY, 10, 5, tif=TIF.GTC, stp_mode=7), Rej.INVALID_COMMAND),
    ("market tif first", market(BUY, 10, 5, tif=TIF.GTC, post_only=True), Rej.INVALID_TIF),
    ("combination before qty", market(BUY, 10, 0, tif=TIF.DAY), Rej.INVALID_TIF),
    ("qty before price", lots(10, 25, 1002), Rej.INVALID_QUANTITY),
    ("stop price before band", stop_limit(BUY, 10, 20, 1200, 3, sym=2), Rej.INVALID_PRICE),
    ("band before GTD", lots(10, 20, 1200, tif=TIF.GTD, expire_ns=1), Rej.PRICE_BAND),
    ("GTD before id", buy(4, 5, 100, tif=TIF.GTD, expire_ns=1), Rej.INVALID_TIF),
    ("id before post-only", buy(4, 5, 101, post_only=True), Rej.DUPLICATE_ORDER_ID),
    ("id before FOK", sell(4, 99, 99, tif=TIF.FOK), Rej.DUPLICATE_ORDER_ID),
]  # fmt: skip


@pytest.mark.parametrize(
    ("cmd", "reason"),
    [pytest.param(cmd, reason, id=name) for name, cmd, reason in NEW_ORDER_REJECTS],
)
def test_new_order_rejects(engine_cls: type, cmd: Records, reason: RejectReason) -> None:
    assert_rejected(populated(engine_cls), cmd, reason)


def test_band_edges_are_inside(engine_cls: type) -> None:
    h = populated(engine_cls)
    assert h.ev(sell(10, 20, 1100, sym=2)) == [accepted(10, SELL, 1100, 20, sym=2)]
    assert h.ev(lots(11, 20, 900, acct=2)) == [accepted(11, BUY, 900, 20, acct=2, sym=2)]


def test_band_applies_to_limit_prices_not_stop_prices(engine_cls: type) -> None:
    h = populated(engine_cls)
    out = h.ev(stop_limit(BUY, 10, 20, 1000, 1500, sym=2), stop(SELL, 11, 20, 500, sym=2))
    assert [e.kind for e in out] == [1, 1]


def test_no_band_without_a_static_reference(engine_cls: type) -> None:
    h = Harness(engine_cls, Instrument("NOREF", 7, band_bps=100))
    assert h.ev(buy(1, 1, 10**9, sym=7)) == [accepted(1, BUY, 10**9, 1, sym=7)]


def test_large_values_compare_exactly(engine_cls: type) -> None:
    """The band and breaker products overflow int64: they must still compare exactly."""
    big = 2**62
    h = Harness(engine_cls, Instrument("BIG", 8, reference_price=big, band_bps=1_000_000))
    assert h.ev(buy(1, 1, 2**63 - 1, sym=8)) == [accepted(1, BUY, 2**63 - 1, 1, sym=8)]
    h = Harness(engine_cls, Instrument("BIG", 8, reference_price=big, band_bps=5000))
    assert h.ev(buy(1, 1, 2**63 - 1, sym=8))[0].reason == Rej.PRICE_BAND


def test_quantity_is_at_most_qty_max(engine_cls: type) -> None:
    """Rule 7's 31-bit bound: however many such orders rest at one price, the level's
    total stays inside int64 (without it, two orders of 2^62 wrapped it negative)."""
    h = Harness(engine_cls)
    for oid in (1, 2, 3):
        assert h.ev(sell(oid, QTY_MAX, 100))[0] == accepted(oid, SELL, 100, QTY_MAX)
    assert h.book() == ([], [(100, 3 * QTY_MAX, 3)])
    assert h.ev(sell(4, QTY_MAX + 1, 100))[0].reason == Rej.INVALID_QUANTITY
    assert h.ev(sell(5, 2**62, 100))[0].reason == Rej.INVALID_QUANTITY
    assert h.ev(replace(1, 1, 1, 100, QTY_MAX + 1))[0].reason == Rej.INVALID_QUANTITY
    assert h.book() == ([], [(100, 3 * QTY_MAX, 3)])


def test_instrument_quantity_limits_are_at_most_qty_max() -> None:
    problems = Instrument("X", 1, min_qty=QTY_MAX + 1, max_qty=QTY_MAX + 2).problems()
    assert [p for p in problems if "at most" in p] == [
        f"instrument 'X': min_qty must be at most {QTY_MAX}, got {QTY_MAX + 1}",
        f"instrument 'X': max_qty must be at most {QTY_MAX}, got {QTY_MAX + 2}",
    ]


@pytest.mark.parametrize("phase_cmd", ["halt", "auction"])
def test_phase_rejects(engine_cls: type, phase_cmd: str) -> None:
    h = populated(engine_cls)
    if phase_cmd == "halt":
        h.send(control(ControlCode.HALT, 1))
        for cmd in (buy(10, 5, 100), market(SELL, 10, 5), stop(BUY, 10, 5, 104)):
            assert_rejected(h, cmd, Rej.HALTED)
        # the checks before the phase still come first
        assert_rejected(h, buy(4, 5, 100), Rej.DUPLICATE_ORDER_ID)
    else:
        h.send(control(ControlCode.AUCTION_START, 1))
        for cmd in (
            market(BUY, 10, 5),
            market(BUY, 10, 5, tif=TIF.FOK),
            buy(10, 5, 100, tif=TIF.IOC),
            buy(10, 5, 100, tif=TIF.FOK),
            stop(BUY, 10, 5, 104),
            stop_limit(SELL, 10, 5, 95, 96, tif=TIF.DAY),
        ):
            assert_rejected(h, cmd, Rej.PHASE)


def test_auction_accepts_resting_limits_even_post_only_and_icebergs(engine_cls: type) -> None:
    h = populated(engine_cls)
    h.send(control(ControlCode.AUCTION_START, 1))
    assert h.ev(
        buy(10, 5, 105, post_only=True),
        sell(11, 6, 95, display_qty=2, tif=TIF.DAY, acct=2),
        buy(12, 5, 100, tif=TIF.GTD, expire_ns=99),
    ) == [
        accepted(10, BUY, 105, 5),
        accepted(11, SELL, 95, 6, acct=2),
        accepted(12, BUY, 100, 5),
    ]
    # nothing matched: the book is crossed
    assert h.book() == ([(105, 5, 1), (100, 5, 1), (99, 5, 1)], [(95, 2, 1), (101, 5, 1)])


def test_rejected_order_id_is_not_used_up(engine_cls: type) -> None:
    h = populated(engine_cls)
    h.send(buy(10, 5, 100, sym=9))
    assert h.ev(buy(10, 5, 98)) == [accepted(10, BUY, 98, 5)]


# ---- cancel, replace, mass cancel ----------------------------------------------------


OTHER_REJECTS: list[tuple[str, Records, RejectReason]] = [
    ("cancel unknown id", cancel(99, 1, 1), Rej.UNKNOWN_ORDER),
    ("cancel in another symbol", cancel(1, 2, 1), Rej.UNKNOWN_ORDER),
    ("cancel in an unknown symbol", cancel(1, 9, 1), Rej.UNKNOWN_ORDER),
    ("cancel foreign order", cancel(1, 1, 2), Rej.NOT_OWNER),
    ("cancel foreign stop", cancel(3, 1, 2), Rej.NOT_OWNER),
    ("cancel with account 0", cancel(1, 1, 0), Rej.NOT_OWNER),
    ("replace unknown id", replace(99, 1, 1, 100, 5), Rej.UNKNOWN_ORDER),
    ("replace in another symbol", replace(4, 1, 1, 1000, 20), Rej.UNKNOWN_ORDER),
    ("replace foreign", replace(2, 1, 1, 101, 5), Rej.NOT_OWNER),
    ("replace foreign before bad qty", replace(2, 1, 1, 101, 0), Rej.NOT_OWNER),
    ("replace qty 0", replace(1, 1, 1, 99, 0), Rej.INVALID_QUANTITY),
    ("replace qty off lot", replace(4, 2, 1, 995, 25), Rej.INVALID_QUANTITY),
    ("replace qty below min", replace(4, 2, 1, 995, 10), Rej.INVALID_QUANTITY),
    ("replace qty above max", replace(4, 2, 1, 995, 1010), Rej.INVALID_QUANTITY),
    ("replace qty before price", replace(4, 2, 1, 0, 25), Rej.INVALID_QUANTITY),
    ("replace price 0", replace(4, 2, 1, 0, 20), Rej.INVALID_PRICE),
    ("replace price off tick", replace(4, 2, 1, 997, 20), Rej.INVALID_PRICE),
    ("replace stop with a negative price", replace(3, 1, 1, -5, 5), Rej.INVALID_PRICE),
    ("replace price before band", replace(4, 2, 1, 1201, 20), Rej.INVALID_PRICE),
    ("replace out of band", replace(4, 2, 1, 1200, 20), Rej.PRICE_BAND),
    ("mass cancel unknown symbol", mass_cancel(1, 9), Rej.UNKNOWN_SYMBOL),
    ("unknown command kind", with_fields(buy(10, 5, 100), kind=0), Rej.INVALID_COMMAND),
    ("command kind 6", with_fields(cancel(1, 1, 1), kind=6), Rej.INVALID_COMMAND),
    ("control code 0", control(0, 1), Rej.INVALID_COMMAND),  # type: ignore[arg-type]
    ("control code 8", control(8, 0), Rej.INVALID_COMMAND),  # type: ignore[arg-type]
    ("control symbol before code", control(9, 9), Rej.UNKNOWN_SYMBOL),  # type: ignore[arg-type]
    ("clock tick unknown symbol", control(ControlCode.CLOCK_TICK, 9, 50), Rej.UNKNOWN_SYMBOL),
    ("control unknown symbol", control(ControlCode.HALT, 9), Rej.UNKNOWN_SYMBOL),
    ("clock backwards", clock_tick(9), Rej.INVALID_COMMAND),
    ("resume when not halted", control(ControlCode.RESUME, 1), Rej.INVALID_COMMAND),
    ("uncross outside auction", control(ControlCode.AUCTION_UNCROSS, 2), Rej.INVALID_COMMAND),
]  # fmt: skip


@pytest.mark.parametrize(
    ("cmd", "reason"), [pytest.param(cmd, reason, id=name) for name, cmd, reason in OTHER_REJECTS]
)
def test_other_rejects(engine_cls: type, cmd: Records, reason: RejectReason) -> None:
    assert_rejected(populated(engine_cls), cmd, reason)


def test_cancel_of_a_filled_or_cancelled_order_is_unknown(engine_cls: type) -> None:
    h = populated(engine_cls)
    h.send(sell(10, 5, 99, acct=3), cancel(2, 1, 2))  # fills order 1; cancels order 2
    assert_rejected(h, cancel(1, 1, 1), Rej.UNKNOWN_ORDER)
    assert_rejected(h, cancel(2, 1, 2), Rej.UNKNOWN_ORDER)
    assert_rejected(h, replace(2, 1, 2, 101, 9), Rej.UNKNOWN_ORDER)
    assert_rejected(h, cancel(10, 1, 3), Rej.UNKNOWN_ORDER)  # an IOC-like fill, never rested


def test_replace_rejects_in_halt_and_post_only(engine_cls: type) -> None:
    h = populated(engine_cls)
    h.send(buy(10, 5, 100, post_only=True))
    assert_rejected(h, replace(10, 1, 1, 101, 5), Rej.POST_ONLY_WOULD_TAKE)
    assert_rejected(h, replace(10, 1, 1, 102, 5), Rej.POST_ONLY_WOULD_TAKE)
    h.send(control(ControlCode.HALT, 1))
    assert_rejected(h, replace(10, 1, 1, 100, 4), Rej.HALTED)
    assert_rejected(h, replace(3, 1, 1, 0, 4), Rej.HALTED)  # stops too
    assert_rejected(h, replace(10, 1, 1, 100, 0), Rej.HALTED)  # halt before quantity
    assert_rejected(h, replace(10, 1, 2, 100, 4), Rej.NOT_OWNER)  # owner before halt


def test_control_on_every_symbol_rejects_per_symbol(engine_cls: type) -> None:
    """RESUME for all symbols when only symbol 2 is halted: symbol 1 refuses (a REJECTED
    naming it), symbol 2 resumes."""
    h = populated(engine_cls)
    h.send(control(ControlCode.HALT, 2))
    out = h.ev(control(ControlCode.RESUME, 0))
    assert out == [rejected(0, Rej.INVALID_COMMAND, acct=0, sym=1)]
    assert [int(h.engine.phase(s)) for s in (1, 2)] == [1, 1]


def test_auction_start_twice_is_refused(engine_cls: type) -> None:
    h = populated(engine_cls)
    h.send(control(ControlCode.AUCTION_START, 1))
    assert_rejected(h, control(ControlCode.AUCTION_START, 1), Rej.INVALID_COMMAND)


def test_reject_echoes_the_command_fields(engine_cls: type) -> None:
    h = populated(engine_cls)
    cmd = new_order(77, 9, 12345, SELL, 4242, 31337, OrderType.LIMIT, stop_price=0)
    assert h.ev(cmd) == [
        rejected(77, Rej.UNKNOWN_SYMBOL, side=SELL, price=31337, qty=4242, acct=12345, sym=9)
    ]


def test_a_whole_batch_of_rejects_changes_nothing(engine_cls: type) -> None:
    h = populated(engine_cls)
    before = h.state()
    cmds = np.concatenate([c for _, c, _ in NEW_ORDER_REJECTS + OTHER_REJECTS])
    out = h.engine.process(cmds)
    assert (out.events["kind"] == 2).all() and len(out.events) == len(cmds)
    assert len(out.md) == 0
    assert h.state() == before


def test_reject_helpers_cover_every_engine_reason() -> None:
    """The gateway's own reasons aside, every reason is exercised here."""
    used: set[RejectReason] = {r for _, _, r in NEW_ORDER_REJECTS + OTHER_REJECTS}
    used |= {Rej.HALTED, Rej.PHASE}
    assert set(RejectReason) - used == {Rej.NONE} | GATEWAY_ONLY_REJECTS


@pytest.mark.parametrize(
    ("symbol", "problem"),
    [
        ("AC\0ME", "printable ASCII without spaces"),
        ("AC ME", "printable ASCII without spaces"),
        ("ACMÉ", "printable ASCII without spaces"),
        ("A" * 41, "at most 40 characters"),
    ],
)
def test_symbol_names_fit_the_topics_and_the_symbol_directory(symbol: str, problem: str) -> None:
    """A NUL in a name stopped the md sidecar at start (its topics end in NUL); a name
    over 40 bytes reached TCP clients cut short in the SYMBOLS directory."""
    assert [p for p in Instrument(symbol, 1).problems() if problem in p]
    assert Instrument("A" * 40, 1).problems() == []
