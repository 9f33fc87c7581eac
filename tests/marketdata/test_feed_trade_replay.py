"""The subscriber asks again for the trade prints it lost (FeedCore, frame by frame): the
later prints wait, every print is delivered once and in seq order, and what the sidecar
no longer keeps -- or never answers for -- is reported as a trade-channel Gap."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradsys.client import md_feed
from tradsys.client.md_feed import REPLAY_TRIES, SNAPSHOT_RETRY_S, FeedCore, FeedError, Gap, Trades
from tradsys.marketdata.protocol import (
    HEARTBEAT_TOPIC,
    Channel,
    Heartbeat,
    SnapshotError,
    SymbolSeqs,
    TradeReplay,
    TradeReplayRequest,
    topic,
)
from tradsys.wire import MD_DTYPE, MdKind

T = topic("trade", "ACME")


def prints(*seqs: int) -> np.ndarray:
    out = np.zeros(len(seqs), MD_DTYPE)
    out["kind"], out["symbol_id"], out["seq"] = MdKind.TRADE, 1, seqs
    out["price"] = out["seq"] * 10
    return out


def feed(core: FeedCore, *seqs: int) -> list[Any]:
    return core.on_message(T, prints(*seqs).tobytes())


def answer(req: TradeReplayRequest, kept: list[int], published: int, limit: int = 10**9) -> bytes:
    """The sidecar's reply: the kept prints of the asked range, up to ``published``."""
    last = min(req.last, published, req.first + limit - 1)
    found = prints(*[s for s in kept if req.first <= s <= last])
    reply = TradeReplay(req.id, req.symbol, 1, req.first, last, published, found.tobytes())
    return msgspec.msgpack.encode(reply)


def delivered(events: list[Any]) -> list[int]:
    return [int(s) for e in events if isinstance(e, Trades) for s in e.records["seq"]]


def gaps(events: list[Any]) -> list[Gap]:
    return [e for e in events if isinstance(e, Gap)]


def only_request(core: FeedCore) -> TradeReplayRequest:
    (req,) = core.outbox
    core.outbox.clear()
    assert isinstance(req, TradeReplayRequest)
    return req


def trade_core() -> FeedCore:
    core = FeedCore(["ACME"], channels=(Channel.TRADE,))
    assert delivered(feed(core, 1, 2)) == [1, 2]
    return core


def test_lost_prints_come_back_in_order_before_the_later_ones() -> None:
    core = trade_core()
    assert feed(core, 5, 6) == []  # 3 and 4 lost: 5 and 6 wait for them
    req = only_request(core)
    assert (req.symbol, req.first, req.last) == ("ACME", 3, 4)
    assert feed(core, 7) == []
    events = core.on_reply(answer(req, [3, 4], published=7))
    assert delivered(events) == [3, 4, 5, 6, 7] and not gaps(events)
    replayed = [e.replayed for e in events if isinstance(e, Trades)]
    assert replayed == [True, False, False]
    assert feed(core, 7) == []  # a repeat is still dropped
    assert delivered(feed(core, 8)) == [8]


def test_prints_no_longer_kept_are_reported_lost_in_their_place() -> None:
    core = trade_core()
    feed(core, 9)
    events = core.on_reply(answer(only_request(core), [4, 5, 7], published=9))
    summary = [(e.expected, e.got) if isinstance(e, Gap) else delivered([e]) for e in events]
    assert summary == [
        (3, 4),
        [4, 5],
        (6, 7),
        [7],
        (8, 9),
        [9],
    ]


def test_a_bounded_reply_is_followed_by_a_request_for_the_rest() -> None:
    core = trade_core()
    feed(core, 20)
    first = only_request(core)
    events = core.on_reply(answer(first, list(range(3, 20)), published=20, limit=5))
    assert delivered(events) == [3, 4, 5, 6, 7]
    rest = only_request(core)
    assert (rest.first, rest.last) == (8, 19)
    events = core.on_reply(answer(rest, list(range(3, 20)), published=20))
    assert delivered(events) == list(range(8, 21)) and not gaps(events)


def test_a_heartbeat_naming_later_prints_asks_for_them() -> None:
    core = trade_core()
    hb = Heartbeat(0, 1, 100, [SymbolSeqs("ACME", 1, 4, 0, 0, 0)])
    assert core.on_message(HEARTBEAT_TOPIC, msgspec.msgpack.encode(hb)) == []
    req = only_request(core)
    assert (req.first, req.last) == (3, 4)
    core.on_message(HEARTBEAT_TOPIC, msgspec.msgpack.encode(hb))
    assert core.outbox == []  # asked once, not again on each heartbeat
    assert delivered(core.on_reply(answer(req, [3, 4], published=4))) == [3, 4]
    assert delivered(feed(core, 5)) == [5]


def test_an_unanswered_replay_is_retried_then_reported_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(md_feed.time, "monotonic", lambda: now[0])
    core = trade_core()
    feed(core, 6)
    asked = [only_request(core)]
    for _ in range(REPLAY_TRIES - 1):
        now[0] += SNAPSHOT_RETRY_S + 0.1
        assert not gaps(core.on_timer())
        asked.append(only_request(core))
    assert {(r.first, r.last) for r in asked} == {(3, 5)}
    assert len({r.id for r in asked}) == REPLAY_TRIES
    now[0] += SNAPSHOT_RETRY_S + 0.1
    events = core.on_timer()
    assert gaps(events) == [Gap("ACME", Channel.TRADE, 3, 6)] and delivered(events) == [6]
    # an answer to a request given up on changes nothing
    assert core.on_reply(answer(asked[0], [3, 4, 5], published=6)) == []
    assert delivered(feed(core, 7)) == [7]


def test_a_sidecar_without_history_ends_the_replay_at_once() -> None:
    core = trade_core()
    feed(core, 4)
    req = only_request(core)
    error = SnapshotError(req.id, "no_trade_history", "keeps none")
    events = core.on_reply(msgspec.msgpack.encode(error))
    assert events[0] == FeedError("ACME", "no_trade_history", "keeps none")
    assert gaps(events) == [Gap("ACME", Channel.TRADE, 3, 4)] and delivered(events) == [4]


def test_unsubscribing_forgets_a_replay_under_way() -> None:
    core = trade_core()
    feed(core, 4)
    req = only_request(core)
    core.remove_symbol("ACME")
    assert core.on_reply(answer(req, [3], published=4)) == []


def test_replay_off_reports_the_gap_and_asks_nothing() -> None:
    core = FeedCore(["ACME"], channels=(Channel.TRADE,), replay_trades=False)
    feed(core, 1)
    events = feed(core, 4)
    assert gaps(events) == [Gap("ACME", Channel.TRADE, 2, 4)] and delivered(events) == [4]
    assert core.outbox == []


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 120),
    depth=st.integers(1, 150),
    cuts=st.lists(st.integers(1, 12), min_size=1, max_size=40),
    drops=st.lists(st.booleans(), min_size=40, max_size=40),
    delays=st.lists(st.integers(0, 3), min_size=40, max_size=40),
    limit=st.integers(1, 50),
)
def test_every_print_is_delivered_once_in_order_or_reported_lost(
    n: int,
    depth: int,
    cuts: list[int],
    drops: list[bool],
    delays: list[int],
    limit: int,
) -> None:
    """A model feed: prints 1..n in messages of random sizes, some dropped, then a
    heartbeat naming the last; a model sidecar keeps the last ``depth`` and answers each
    replay after a random number of further messages, at most ``limit`` prints a reply.
    Delivered in order with the Gaps, every seq appears exactly once; a seq is reported
    lost only if the sidecar no longer kept it."""
    core = FeedCore(["ACME"], channels=(Channel.TRADE,))
    kept = list(range(max(1, n - depth + 1), n + 1))
    order: list[int] = []
    pending: list[tuple[int, TradeReplayRequest]] = []

    def take(events: list[Any]) -> None:
        for e in events:
            if isinstance(e, Gap):
                assert all(s not in kept for s in range(e.expected, e.got))
                order.extend(range(e.expected, e.got))
            elif isinstance(e, Trades):
                order.extend(delivered([e]))

    def serve(due_now: bool) -> None:
        for r in core.outbox:
            assert isinstance(r, TradeReplayRequest)
            pending.append((delays[len(pending) % len(delays)], r))
        core.outbox.clear()
        still = []
        for wait, r in pending:
            if wait == 0 or due_now:
                take(core.on_reply(answer(r, kept, published=n, limit=limit)))
            else:
                still.append((wait - 1, r))
        pending[:] = still

    seq, k = 0, 0
    while seq < n:
        size = min(cuts[k % len(cuts)], n - seq)
        batch = list(range(seq + 1, seq + size + 1))
        seq += size
        # the first message always arrives: gaps are counted from the first print seen
        if k == 0 or not drops[k % len(drops)]:
            take(feed(core, *batch))
        k += 1
        serve(due_now=False)
    hb = Heartbeat(0, 1, 100, [SymbolSeqs("ACME", 1, n, 0, 0, 0)])
    take(core.on_message(HEARTBEAT_TOPIC, msgspec.msgpack.encode(hb)))
    for _ in range(2 * n + 2):  # replies until nothing is asked
        serve(due_now=True)
        if not pending and not core.outbox:
            break
    assert order == list(range(1, n + 1))


def test_delivered_prints_are_the_bytes_the_feed_carried() -> None:
    """Dropping repeats by a boolean mask copied the fields only: the padding bytes of
    what was delivered came out as whatever the heap held, so prints a user hashed or
    stored differed from run to run (found by the end-to-end replay tests)."""
    core = trade_core()
    payload = bytearray(prints(2, 3, 4).tobytes())
    for row in range(3):  # padding: bytes 2-3 and 52-55 of each record
        payload[row * 64 + 2 : row * 64 + 4] = b"\xab\xcd"
        payload[row * 64 + 52 : row * 64 + 56] = b"\x12\x34\x56\x78"
    (trades,) = core.on_message(T, bytes(payload))
    assert trades.records.tobytes() == bytes(payload[64:])  # seq 2 dropped, 3 and 4 kept
    feed(core, 7)  # 5 and 6 lost: a replay brings 5 with padding of its own
    req = only_request(core)
    reply_rows = bytearray(prints(4, 5, 6).tobytes())  # 4 is outside the range asked
    reply_rows[64 + 2 : 64 + 4] = b"\xee\xff"
    reply = TradeReplay(req.id, "ACME", 1, 5, 6, 7, bytes(reply_rows))
    events = core.on_reply(msgspec.msgpack.encode(reply))
    replayed = next(e for e in events if isinstance(e, Trades) and e.replayed)
    assert replayed.records.tobytes() == bytes(reply_rows[64:])


def test_seqs_past_what_the_sidecar_published_are_reported_not_skipped() -> None:
    """A reply whose sidecar says it published less than was asked (a sidecar of
    another life of the engine) ended the replay with the rest neither delivered nor
    reported: every seq asked must come out as a print or a Gap."""
    core = trade_core()
    feed(core, 9)
    req = only_request(core)
    events = core.on_reply(answer(req, [3, 4, 5], published=5))
    assert delivered(events) == [3, 4, 5, 9]
    assert gaps(events) == [Gap("ACME", Channel.TRADE, 6, 9)]
