"""Trading status on the market-data stream (native/wire.h ``TS_MD_STATUS``): every
change of a symbol's phase is one STATUS record, at the moment of the change (in order
with the trade prints around it), with its own per-symbol sequence, the phase before, the
reason and the breaker's reopening time. Both engines (the ``engine_cls`` fixture)."""

from __future__ import annotations

from tests.matching.helpers import (
    ACME,
    BUY,
    SELL,
    Harness,
    bbo,
    buy,
    l2,
    md,
    printed,
    sell,
    status,
)
from tests.matching.test_phases_auction import BRK, breaker_book
from tradsys.matching import Instrument, Phase, StatusReason
from tradsys.matching.commands import clock_tick, control
from tradsys.wire import ControlCode, MdKind

CTL = ControlCode
R = StatusReason
CONT, HALT, AUCT = Phase.CONTINUOUS, Phase.HALTED, Phase.AUCTION


def statuses(h: Harness, *commands: object) -> list[object]:
    return [m for m in md(h.send(*commands)) if m.kind == MdKind.STATUS]  # type: ignore[arg-type]


def test_halt_and_resume_publish_each_change_once(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(clock_tick(9))
    assert md(h.send(control(CTL.HALT, 1))) == [status(HALT, CONT, R.HALT, 1, t=9)]
    assert md(h.send(control(CTL.HALT, 1))) == []  # no change, no record
    assert md(h.send(control(CTL.RESUME, 1))) == [status(CONT, HALT, R.RESUME, 2, t=9)]
    assert md(h.send(control(CTL.RESUME, 1))) == []  # refused: still continuous


def test_status_comes_in_order_with_the_uncross_trades(engine_cls: type) -> None:
    """Leaving the halt uncrosses: the auction prints, then the status, then (as every
    command's) the L2 and BBO changes at the end."""
    h = Harness(engine_cls)
    h.send(control(CTL.AUCTION_START, 1), sell(1, 5, 100), buy(2, 3, 101, acct=2))
    assert md(h.send(control(CTL.HALT, 1))) == [status(HALT, AUCT, R.HALT, 2)]
    assert md(h.send(control(CTL.RESUME, 1))) == [
        printed(BUY, 100, 3, 1),
        status(CONT, HALT, R.RESUME, 3),
        l2(BUY, 101, 0, 0, 3),
        l2(SELL, 100, 2, 1, 4),
        bbo(0, 0, 100, 2, 3),
    ]


def test_auction_start_and_session_open(engine_cls: type) -> None:
    h = Harness(engine_cls)
    assert statuses(h, control(CTL.SESSION_OPEN, 1)) == []  # continuous stays
    assert statuses(h, control(CTL.AUCTION_START, 1)) == [status(AUCT, CONT, R.AUCTION_START, 1)]
    assert statuses(h, control(CTL.AUCTION_START, 1)) == []  # refused
    assert statuses(h, control(CTL.SESSION_CLOSE, 1)) == []  # no closed phase
    assert statuses(h, control(CTL.SESSION_OPEN, 1)) == [status(CONT, AUCT, R.SESSION_OPEN, 2)]


def test_controls_for_every_symbol_publish_per_symbol_in_id_order(engine_cls: type) -> None:
    h = Harness(engine_cls, Instrument("C", 5), ACME, Instrument("B", 2))
    h.send(control(CTL.HALT, 2))
    assert statuses(h, control(CTL.HALT, 0)) == [
        status(HALT, CONT, R.HALT, 1, sym=1),
        status(HALT, CONT, R.HALT, 1, sym=5),  # symbol 2 was halted already
    ]
    assert statuses(h, control(CTL.AUCTION_START, 0)) == [
        status(AUCT, HALT, R.AUCTION_START, seq, sym=sym) for sym, seq in ((1, 2), (2, 2), (5, 2))
    ]


def test_breaker_trip_and_reopening(engine_cls: type) -> None:
    h = breaker_book(engine_cls)
    # the fill inside the band prints, then the trip (reopening at 500 + 1000)
    assert md(h.send(buy(5, 10, 1060, acct=2, sym=3)))[:2] == [
        printed(BUY, 1040, 2, 2, sym=3, t=500),
        status(AUCT, CONT, R.BREAKER, 1, reopen_ns=1500, sym=3, t=500),
    ]
    assert statuses(h, clock_tick(1499)) == []
    out = md(h.send(clock_tick(1500)))
    assert out[:2] == [
        printed(BUY, 1060, 3, 3, sym=3, t=1500),
        status(CONT, AUCT, R.REOPEN_TIMER, 2, sym=3, t=1500),
    ]


def test_halt_during_a_breaker_call_drops_its_reopening(engine_cls: type) -> None:
    h = breaker_book(engine_cls)
    h.send(buy(5, 10, 1060, acct=2, sym=3))
    assert statuses(h, control(CTL.HALT, 3)) == [status(HALT, AUCT, R.HALT, 2, sym=3, t=500)]


def test_the_status_sequence_continues_after_a_restore(engine_cls: type) -> None:
    h = Harness(engine_cls, BRK)
    h.send(control(CTL.HALT, 3), control(CTL.RESUME, 3), control(CTL.AUCTION_START, 3))
    restored = Harness.__new__(Harness)
    restored.engine = engine_cls.restore(h.engine.snapshot())
    assert restored.engine.phase(3) == AUCT
    assert md(restored.send(control(CTL.AUCTION_UNCROSS, 3))) == [
        status(CONT, AUCT, R.AUCTION_UNCROSS, 4, sym=3)
    ]


def test_the_python_enums_mirror_book_h() -> None:
    from tradsys._native import lib

    for enum, prefix in ((Phase, "TS_PHASE_"), (StatusReason, "TS_MDS_")):
        c = {k[len(prefix) :]: getattr(lib, k) for k in dir(lib) if k.startswith(prefix)}
        assert c == {m.name: int(m) for m in enum}, enum.__name__
    assert lib.TS_MD_STATUS == MdKind.STATUS
