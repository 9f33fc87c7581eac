"""The subscriber's rules without sockets: frames in, events and snapshot requests out."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from tradsys.client import md_feed
from tradsys.client.md_feed import BookUpdate, FeedCore, Gap, StatusChange, Synced, Trades
from tradsys.marketdata.protocol import (
    HEARTBEAT_TOPIC,
    BookSnapshot,
    Channel,
    Heartbeat,
    SnapshotError,
    SymbolSeqs,
    topic,
)
from tradsys.matching import Phase, StatusReason
from tradsys.wire import MD_DTYPE, MdKind, Side


def l2(*rows: tuple[int, int, int, int, int]) -> bytes:
    """(seq, side, price, quantity, count) rows as an L2 payload of symbol 1."""
    out = np.zeros(len(rows), MD_DTYPE)
    for r, (seq, side, price, qty, count) in zip(out, rows, strict=True):
        r["kind"], r["symbol_id"], r["seq"] = MdKind.L2_UPDATE, 1, seq
        r["side"], r["price"], r["quantity"], r["order_count"] = side, price, qty, count
    return out.tobytes()


def snapshot(request_id: int, seq: int, bids: list[tuple[int, int, int]]) -> bytes:
    return msgspec.msgpack.encode(BookSnapshot(request_id, "ACME", 1, seq, 0, 0, bids, [], 0))


def test_buffer_until_the_snapshot_then_apply_what_follows_it() -> None:
    core = FeedCore(["ACME"])
    (req,) = core.outbox
    assert core.on_message(topic("l2", "ACME"), l2((4, 1, 100, 5, 1))) == []
    assert core.on_message(topic("l2", "ACME"), l2((5, 1, 101, 1, 1), (6, 1, 100, 0, 0))) == []
    events = core.on_reply(snapshot(req.id, 4, [(100, 5, 1), (99, 2, 1)]))
    assert isinstance(events[0], Synced) and isinstance(events[1], BookUpdate)
    book = core.books["ACME"]
    assert book.synced and book.l2_seq == 6
    assert book.levels(Side.BUY) == [(101, 1, 1), (99, 2, 1)]


def test_a_gap_asks_for_a_new_snapshot_and_a_stale_reply_is_ignored() -> None:
    core = FeedCore(["ACME"])
    first = core.outbox.pop()
    core.on_reply(snapshot(first.id, 10, []))
    events = core.on_message(topic("l2", "ACME"), l2((12, 2, 105, 1, 1)))
    assert events == [Gap("ACME", Channel.L2, 11, 12)]
    second = core.outbox.pop()
    assert core.on_reply(snapshot(first.id, 99, [])) == []  # not the pending request
    assert not core.books["ACME"].synced
    core.on_reply(snapshot(second.id, 12, [(0, 0, 0)][:0]))
    assert core.books["ACME"].synced and core.books["ACME"].l2_seq == 12


def test_a_heartbeat_reveals_a_lost_tail() -> None:
    core = FeedCore(["ACME"])
    core.on_reply(snapshot(core.outbox.pop().id, 3, []))
    hb = Heartbeat(0, 1, 100, [SymbolSeqs("ACME", 1, 0, 5, 0)])
    events = core.on_message(HEARTBEAT_TOPIC, msgspec.msgpack.encode(hb))
    assert events == [Gap("ACME", Channel.L2, 4, 6)]  # 4 and 5 lost
    assert len(core.outbox) == 1 and not core.books["ACME"].synced


@pytest.mark.parametrize(
    ("given", "before", "after"),
    [(None, 3.0, 1.5), (5.0, 5.0, 5.0), (0.5, 0.5, 1.5)],
)
def test_a_feed_is_dead_after_three_heartbeat_intervals_of_silence(
    given: float | None, before: float, after: float
) -> None:
    """Three intervals, as docs/marketdata.md says -- it was never under 3 s, so a feed
    with 500 ms heartbeats was taken for dead only after 3 s; a timeout given is kept,
    but never under three intervals (a shorter one would call a quiet feed dead)."""
    core = FeedCore(["ACME"], heartbeat_timeout_s=given)
    assert core.silence_limit_s == before  # no heartbeat yet: its interval is unknown
    hb = Heartbeat(0, 1, 500, [SymbolSeqs("ACME", 0, 0, 0, 0)])
    core.on_message(HEARTBEAT_TOPIC, msgspec.msgpack.encode(hb))
    assert core.silence_limit_s == after


def test_not_ready_is_asked_again_and_unknown_symbol_is_reported() -> None:
    core = FeedCore(["ACME"])
    req = core.outbox.pop()
    core.on_reply(msgspec.msgpack.encode(SnapshotError(req.id, "not_ready", "wait")))
    again = core.outbox.pop()
    events = core.on_reply(msgspec.msgpack.encode(SnapshotError(again.id, "unknown_symbol", "x")))
    assert events[0].reason == "unknown_symbol"  # type: ignore[union-attr]


def test_trades_report_gaps_and_skip_repeats() -> None:
    core = FeedCore(["ACME"], channels=(Channel.TRADE,), replay_trades=False)
    assert core.outbox == []  # no book wanted, no snapshot
    recs = np.zeros(3, MD_DTYPE)
    recs["kind"], recs["seq"] = MdKind.TRADE, [1, 2, 4]
    t = topic("trade", "ACME")
    (ev,) = core.on_message(t, recs[:2].tobytes())
    assert isinstance(ev, Trades) and ev.records["seq"].tolist() == [1, 2]
    assert core.on_message(t, recs[1:2].tobytes()) == []
    gap, trades = core.on_message(t, recs[2:].tobytes())
    assert gap == Gap("ACME", Channel.TRADE, 3, 4) and isinstance(trades, Trades)


def test_bbo_changes_carry_the_newest_record_and_skip_older_ones() -> None:
    from tradsys.client.md_feed import BboChange

    core = FeedCore(["ACME"], channels=(Channel.BBO,))
    recs = np.zeros(3, MD_DTYPE)
    recs["kind"], recs["symbol_id"], recs["seq"] = MdKind.BBO, 1, [1, 2, 3]
    recs["price"], recs["quantity"] = [99, 98, 97], [5, 6, 7]
    recs["ask_price"], recs["ask_quantity"], recs["time_ns"] = [101, 102, 103], [1, 2, 3], 42
    t = topic("bbo", "ACME")
    assert core.on_message(t, recs[:2].tobytes()) == [BboChange("ACME", 2, 98, 6, 102, 2, 42)]
    assert core.on_message(t, recs[:1].tobytes()) == []  # older than what was seen
    assert core.on_message(t, recs[2:].tobytes()) == [BboChange("ACME", 3, 97, 7, 103, 3, 42)]


CONT, HALT, AUCT = Phase.CONTINUOUS, Phase.HALTED, Phase.AUCTION


def status(*rows: tuple[int, int, int, int]) -> bytes:
    """(seq, phase, previous, reason) rows as a status payload of symbol 1."""
    out = np.zeros(len(rows), MD_DTYPE)
    for r, (seq, phase, before, reason) in zip(out, rows, strict=True):
        r["kind"], r["symbol_id"], r["seq"], r["time_ns"] = MdKind.STATUS, 1, seq, 77
        r["price"], r["quantity"], r["ask_price"], r["order_count"] = phase, before, -1, reason
    return out.tobytes()


def test_status_from_the_snapshot_then_from_the_feed_with_gaps_reported() -> None:
    core = FeedCore(["ACME"])
    req = core.outbox.pop()
    t = topic("status", "ACME")
    snap = BookSnapshot(req.id, "ACME", 1, 0, 0, 0, [], [], 0, status_seq=2, phase=HALT)
    (learnt, synced) = core.on_reply(msgspec.msgpack.encode(snap))
    assert learnt == StatusChange("ACME", 1, 2, HALT, None, None, -1, 0)
    assert isinstance(synced, Synced) and core.books["ACME"].phase == HALT
    assert core.on_message(t, status((2, HALT, CONT, StatusReason.HALT))) == []  # already known
    assert core.on_message(t, status((3, AUCT, HALT, StatusReason.AUCTION_START))) == [
        StatusChange("ACME", 1, 3, AUCT, HALT, StatusReason.AUCTION_START, -1, 77)
    ]
    gap, change = core.on_message(t, status((5, CONT, AUCT, StatusReason.AUCTION_UNCROSS)))
    assert gap == Gap("ACME", Channel.STATUS, 4, 5)
    assert isinstance(change, StatusChange) and core.books["ACME"].phase == CONT
    # a heartbeat naming a later status seq: the last change was lost, ask the snapshot
    hb = Heartbeat(0, 1, 100, [SymbolSeqs("ACME", 1, 0, 0, 0, 6)])
    assert core.on_message(HEARTBEAT_TOPIC, msgspec.msgpack.encode(hb)) == [
        Gap("ACME", Channel.STATUS, 6, 7)
    ]
    assert len(core.outbox) == 1


def trade_payload(*seqs: int) -> bytes:
    recs = np.zeros(len(seqs), MD_DTYPE)
    recs["kind"], recs["symbol_id"], recs["seq"] = MdKind.TRADE, 1, seqs
    return recs.tobytes()


def delivered(events: list[object]) -> list[int]:
    return [int(s) for e in events if isinstance(e, Trades) for s in e.records["seq"]]


def test_trades_waiting_behind_a_snapshot_reply_are_delivered() -> None:
    """A snapshot names the last trade published when it was taken; trades up to it may
    still wait on the feed socket (the reply came on the other socket), and they were
    dropped without a gap. The snapshot only says where gaps are counted from."""
    core = FeedCore(["ACME"])
    t = topic("trade", "ACME")
    seen = core.on_message(t, trade_payload(1, 2, 3))
    seen += core.on_reply(
        msgspec.msgpack.encode(BookSnapshot(core.outbox.pop().id, "ACME", 1, 0, 8, 0, [], [], 0))
    )
    for seq in (4, 5, 6, 7, 8, 9):
        seen += core.on_message(t, trade_payload(seq))
    assert delivered(seen) == list(range(1, 10))
    assert not [e for e in seen if isinstance(e, Gap)]


def test_before_any_trade_gaps_count_from_the_snapshots_last_trade() -> None:
    t = topic("trade", "ACME")
    core = FeedCore(["ACME"], replay_trades=False)
    core.on_reply(
        msgspec.msgpack.encode(BookSnapshot(core.outbox.pop().id, "ACME", 1, 0, 8, 0, [], [], 0))
    )
    gap, trades = core.on_message(t, trade_payload(11))
    assert gap == Gap("ACME", Channel.TRADE, 9, 11) and delivered([trades]) == [11]
    # a heartbeat past the snapshot's last trade, with none seen: the tail was lost
    core = FeedCore(["ACME"], replay_trades=False)
    core.on_reply(
        msgspec.msgpack.encode(BookSnapshot(core.outbox.pop().id, "ACME", 1, 0, 8, 0, [], [], 0))
    )
    hb = Heartbeat(0, 1, 100, [SymbolSeqs("ACME", 1, 9, 0, 0)])
    assert core.on_message(HEARTBEAT_TOPIC, msgspec.msgpack.encode(hb)) == [
        Gap("ACME", Channel.TRADE, 9, 10)
    ]


def test_a_snapshot_with_no_trade_yet_counts_gaps_from_zero() -> None:
    core = FeedCore(["ACME"], replay_trades=False)
    core.on_reply(
        msgspec.msgpack.encode(BookSnapshot(core.outbox.pop().id, "ACME", 1, 0, 0, 0, [], [], 0))
    )
    gap, trades = core.on_message(topic("trade", "ACME"), trade_payload(3))
    assert gap == Gap("ACME", Channel.TRADE, 1, 3) and delivered([trades]) == [3]
    # no snapshot (trades alone): the first trade a subscriber sees is no gap
    only_trades = FeedCore(["ACME"], channels=(Channel.TRADE,), replay_trades=False)
    assert delivered(only_trades.on_message(topic("trade", "ACME"), trade_payload(3))) == [3]


def test_a_book_waiting_for_its_snapshot_keeps_a_bounded_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The oldest buffered updates go; the snapshot covers them, or the gap they leave
    is found and asked for again."""
    monkeypatch.setattr(md_feed, "BUFFER_MAX_MESSAGES", 3)
    core = FeedCore(["ACME"])
    req = core.outbox.pop()
    for seq in range(1, 11):
        core.on_message(topic("l2", "ACME"), l2((seq, 1, 100, seq, 1)))
    assert len(core.books["ACME"]._buffer) == 3
    # a snapshot at 7 covers what went: the last three apply
    core.on_reply(snapshot(req.id, 7, [(100, 7, 1)]))
    assert core.books["ACME"].l2_seq == 10 and core.books["ACME"].levels(Side.BUY) == [(100, 10, 1)]
    # a snapshot at 5 does not: the gap 6..8 asks again
    core = FeedCore(["ACME"])
    req = core.outbox.pop()
    for seq in range(1, 11):
        core.on_message(topic("l2", "ACME"), l2((seq, 1, 100, seq, 1)))
    events = core.on_reply(snapshot(req.id, 5, [(100, 5, 1)]))
    assert Gap("ACME", Channel.L2, 6, 8) in events and len(core.outbox) == 1


def test_a_symbol_removed_forgets_its_request_and_drops_what_still_arrives() -> None:
    core = FeedCore(["ACME"])
    asked = core.outbox.pop()
    core.add_symbol("ZETA")
    core.add_symbol("ZETA")  # already followed: nothing more
    assert [r.symbol for r in core.outbox] == ["ZETA"]
    core.remove_symbol("ACME")
    assert sorted(core.books) == ["ZETA"] and core.symbols == ["ZETA"]
    assert core.on_reply(snapshot(asked.id, 3, [])) == [], "its reply is ignored"
    assert core.on_message(topic("trade", "ACME"), trade_payload(1)) == []
    core.remove_symbol("ACME")  # not followed: nothing
