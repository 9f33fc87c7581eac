"""A lost BBO tail: on a quiet symbol the last BBO message may be the last message of the
symbol for a long time, so only the heartbeat's ``bbo_seq`` can reveal its loss. FeedCore
reports it once and, when the symbol's book is synced, gives the lost BBO from the book."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from tests.marketdata.md_rig import instruments
from tradsys.client.md_feed import BboChange, FeedCore, Gap, MdEvent, Synced
from tradsys.marketdata.protocol import (
    CHANNEL_OF_KIND,
    HEARTBEAT_TOPIC,
    BookSnapshot,
    Channel,
    Heartbeat,
    SymbolSeqs,
    topic,
)
from tradsys.matching import CEngine
from tradsys.matching.workload import mixed_stream
from tradsys.wire import MD_DTYPE, MdKind

Book = list[tuple[int, int, int]]


def snapshot(request_id: int, l2_seq: int, bids: Book, asks: Book, bbo_seq: int = 0) -> bytes:
    return msgspec.msgpack.encode(
        BookSnapshot(request_id, "ACME", 1, l2_seq, 0, bbo_seq, bids, asks, 0)
    )


def bbo(seq: int, bid: int, bid_qty: int, ask: int, ask_qty: int) -> bytes:
    rec = np.zeros(1, MD_DTYPE)
    rec["kind"], rec["symbol_id"], rec["seq"], rec["time_ns"] = MdKind.BBO, 1, seq, 42
    rec["price"], rec["quantity"] = bid, bid_qty
    rec["ask_price"], rec["ask_quantity"] = ask, ask_qty
    return rec.tobytes()


def heartbeat(l2_seq: int, bbo_seq: int) -> bytes:
    hb = Heartbeat(0, 1, 100, [SymbolSeqs("ACME", 1, 0, l2_seq, bbo_seq, 0)])
    return msgspec.msgpack.encode(hb)


def synced_core(l2_seq: int, bids: Book, asks: Book) -> FeedCore:
    core = FeedCore(["ACME"])
    core.on_reply(snapshot(core.outbox.pop().id, l2_seq, bids, asks))
    assert core.books["ACME"].synced
    return core


def test_a_lost_last_bbo_is_reported_once_and_given_from_the_synced_book() -> None:
    core = synced_core(7, [(99, 4, 1), (98, 2, 1)], [(101, 3, 2)])
    got = core.on_message(topic("bbo", "ACME"), bbo(5, 99, 9, 101, 3))
    assert got == [BboChange("ACME", 5, 99, 9, 101, 3, 42)]
    # seq 6 (the bid's quantity down to 4, as the book says) was lost
    assert core.on_message(HEARTBEAT_TOPIC, heartbeat(7, 6)) == [
        Gap("ACME", Channel.BBO, 6, 7),
        BboChange("ACME", 6, 99, 4, 101, 3, 0),
    ]
    assert core.outbox == [], "a BBO is a latest value: nothing to ask for"
    assert core.on_message(HEARTBEAT_TOPIC, heartbeat(7, 6)) == []  # reported once
    # the lost record arriving late is no news; the next one is
    assert core.on_message(topic("bbo", "ACME"), bbo(6, 99, 4, 101, 3)) == []
    got = core.on_message(topic("bbo", "ACME"), bbo(7, 98, 2, 101, 3))
    assert got == [BboChange("ACME", 7, 98, 2, 101, 3, 42)]


def test_an_empty_side_is_price_and_quantity_zero() -> None:
    core = synced_core(3, [(99, 4, 1)], [])
    assert core.on_message(HEARTBEAT_TOPIC, heartbeat(3, 2)) == [
        Gap("ACME", Channel.BBO, 1, 3),
        BboChange("ACME", 2, 99, 4, 0, 0, 0),
    ]


def test_without_a_synced_book_only_the_gap_is_reported() -> None:
    only_bbo = FeedCore(["ACME"], channels=(Channel.BBO,))
    only_bbo.on_message(topic("bbo", "ACME"), bbo(5, 99, 9, 101, 3))
    assert only_bbo.on_message(HEARTBEAT_TOPIC, heartbeat(0, 6)) == [Gap("ACME", Channel.BBO, 6, 7)]
    assert only_bbo.on_message(HEARTBEAT_TOPIC, heartbeat(0, 6)) == []
    assert only_bbo.outbox == []
    # the book is behind too: it is being recovered, so it cannot tell the BBO
    core = synced_core(7, [(99, 4, 1)], [(101, 3, 2)])
    core.on_message(topic("bbo", "ACME"), bbo(5, 99, 9, 101, 3))
    assert core.on_message(HEARTBEAT_TOPIC, heartbeat(8, 6)) == [
        Gap("ACME", Channel.L2, 8, 9),
        Gap("ACME", Channel.BBO, 6, 7),
    ]
    assert not core.books["ACME"].synced and len(core.outbox) == 1


def test_a_book_past_the_heartbeats_l2_seq_gives_only_the_gap() -> None:
    """A lagging subscriber found an L2 gap; its snapshot (its own socket, no backlog)
    put the book at seq 9 while a heartbeat from seq 7's time still queued on the feed.
    The book's levels are seq 9's: under BBO seq 6 they would pair a later BBO's values
    with an earlier seq. So only the gap; the next BBO message brings values."""
    core = synced_core(9, [(102, 1, 1)], [])
    core.on_message(topic("bbo", "ACME"), bbo(5, 99, 9, 101, 3))
    assert core.on_message(HEARTBEAT_TOPIC, heartbeat(7, 6)) == [Gap("ACME", Channel.BBO, 6, 7)]
    assert core.books["ACME"].synced, "a book ahead of a heartbeat is not behind"
    got = core.on_message(topic("bbo", "ACME"), bbo(7, 102, 1, 0, 0))
    assert got == [BboChange("ACME", 7, 102, 1, 0, 0, 42)]


def test_a_gap_counts_the_seqs_lost_the_same_way_however_found() -> None:
    """Trade 6 lost, found on the feed (7 came after 5) or by a heartbeat (it names 6,
    the feed gave 5): the same gap, ``got`` the seq just past the lost ones."""

    def trade(seq: int) -> bytes:
        rec = np.zeros(1, MD_DTYPE)
        rec["kind"], rec["symbol_id"], rec["seq"], rec["price"], rec["quantity"] = (
            MdKind.TRADE,
            1,
            seq,
            100,
            1,
        )
        return rec.tobytes()

    found: list[Gap] = []
    for last in (trade(7), None):
        core = FeedCore(["ACME"], channels=(Channel.TRADE,), replay_trades=False)
        core.on_message(topic("trade", "ACME"), trade(5))
        if last is not None:
            events = core.on_message(topic("trade", "ACME"), last)
        else:
            hb = Heartbeat(0, 1, 100, [SymbolSeqs("ACME", 1, 6, 0, 0, 0)])
            events = core.on_message(HEARTBEAT_TOPIC, msgspec.msgpack.encode(hb))
        found += [e for e in events if isinstance(e, Gap)]
    assert found == [Gap("ACME", Channel.TRADE, 6, 7)] * 2
    assert found[0].lost == 1


def test_a_heartbeat_at_the_seen_bbo_seq_is_quiet() -> None:
    core = synced_core(7, [(99, 4, 1)], [(101, 3, 2)])
    core.on_message(topic("bbo", "ACME"), bbo(5, 99, 4, 101, 3))
    assert core.on_message(HEARTBEAT_TOPIC, heartbeat(7, 5)) == []
    not_subscribed = FeedCore(["ACME"], channels=(Channel.L2,))
    not_subscribed.on_reply(snapshot(not_subscribed.outbox.pop().id, 7, [], []))
    assert not_subscribed.on_message(HEARTBEAT_TOPIC, heartbeat(7, 5)) == []


def engine_feed(n: int, seed: int) -> np.ndarray:
    """The md records a real engine emits for ACME alone over a mixed stream."""
    acme = next(i for i in instruments() if i.symbol == "ACME")
    with CEngine() as engine:
        engine.add_instrument(acme)
        md = engine.process(mixed_stream(n, seed, [acme])).md
    return md


# (commands, seed): a two-sided book; a crossed one in an auction call; no asks
@pytest.mark.parametrize(("n", "seed"), [(3000, 2), (1000, 2), (1000, 3)])
def test_the_bbo_given_from_the_book_is_the_engines_last_bbo_record(n: int, seed: int) -> None:
    md = engine_feed(n, seed)
    last_bbo = int(np.flatnonzero(md["kind"] == MdKind.BBO)[-1])
    core = FeedCore(["ACME"])
    events: list[MdEvent] = core.on_reply(snapshot(core.outbox.pop().id, 0, [], []))
    assert events and isinstance(events[-1], Synced)
    for k, rec in enumerate(md):
        if k != last_bbo:  # lost at the publisher's high-water mark
            channel = CHANNEL_OF_KIND[int(rec["kind"])]
            events += core.on_message(topic(channel, "ACME"), md[k : k + 1].tobytes())
    # the heartbeat names the last seq of every channel, the lost BBO's included
    last = {
        c: int(md["seq"][md["kind"] == kind].max(initial=0)) for kind, c in CHANNEL_OF_KIND.items()
    }
    row = (last[c] for c in (Channel.TRADE, Channel.L2, Channel.BBO, Channel.STATUS))
    hb = Heartbeat(0, 1, 100, [SymbolSeqs("ACME", 1, *row)])
    got = core.on_message(HEARTBEAT_TOPIC, msgspec.msgpack.encode(hb))
    assert not [e for e in events if isinstance(e, Gap)], "only the last BBO was lost"
    lost = md[last_bbo]
    assert got == [
        Gap("ACME", Channel.BBO, int(lost["seq"]), int(lost["seq"]) + 1),
        BboChange(
            "ACME",
            int(lost["seq"]),
            int(lost["price"]),
            int(lost["quantity"]),
            int(lost["ask_price"]),
            int(lost["ask_quantity"]),
            0,
        ),
    ]


def test_a_late_joiner_learns_the_bbo_from_its_book_without_a_gap() -> None:
    """Its snapshot says BBO 4 was published before it came: nothing was lost, but on a
    quiet market the heartbeat is the first it hears of it."""
    core = FeedCore(["ACME"])
    core.on_reply(snapshot(core.outbox.pop().id, 7, [(99, 4, 1)], [(101, 3, 2)], bbo_seq=4))
    assert core.on_message(HEARTBEAT_TOPIC, heartbeat(7, 4)) == [
        BboChange("ACME", 4, 99, 4, 101, 3, 0)
    ]
    assert core.on_message(HEARTBEAT_TOPIC, heartbeat(7, 5)) == [
        Gap("ACME", Channel.BBO, 5, 6),
        BboChange("ACME", 5, 99, 4, 101, 3, 0),
    ]
    # with no snapshot (BBO alone) where the feed began is not known: no gap either
    only_bbo = FeedCore(["ACME"], channels=(Channel.BBO,))
    assert only_bbo.on_message(HEARTBEAT_TOPIC, heartbeat(0, 4)) == []
