"""The subscriber's side of the market-data feed without any I/O: local L2 books with
gap detection and snapshot recovery, trade sequencing with replay of lost prints, BBO
sequencing, feed liveness.

Trades (``replay_trades``, on by default): prints lost on the feed are asked again of the
sidecar's replay service; the symbol's later prints wait meanwhile, so every print is
delivered once and in seq order. A ``Gap`` on the trade channel then means lost for good
(the sidecar no longer keeps them, or never answered).

Trading status (``status`` channel): each STATUS record carries the symbol's whole
status (phase, the one before, why, a volatility auction's reopening time), so the
newest one wins; the snapshot carries the status too, so a late joiner knows the phase
before any change. A lost status message (a seq jump, or a heartbeat naming a greater
status seq) is reported; the heartbeat case asks for a snapshot to learn the phase.
A lost last BBO (a heartbeat naming a greater BBO seq) is reported once and, when the
symbol's book is synced, given from the book's best levels, which is what the BBO is.

``FeedCore`` takes the frames a SUB socket and a snapshot DEALER socket received and
returns events; the snapshot requests it wants sent wait in ``outbox``. The drivers in
``tradsys.client.marketdata`` do the ZeroMQ part (blocking or asyncio), so both share
every rule here — and tests can drive it frame by frame.

Recovery (docs/marketdata.md): a book starts unsynchronised; L2 records are buffered
while a snapshot is fetched; the snapshot's ``l2_seq`` says which buffered records it
already includes (dropped) and which follow (applied). A gap — a record whose seq is not
the next one, or a heartbeat announcing a seq the book has not reached — starts over.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from tradsys.marketdata.framing import take_records
from tradsys.marketdata.protocol import (
    BBO_BOARD_TOPIC,
    CHANNELS,
    HEARTBEAT_TOPIC,
    BookSnapshot,
    Channel,
    Heartbeat,
    SnapshotError,
    SnapshotRequest,
    TradeReplay,
    TradeReplayRequest,
    heartbeat_decoder,
    parse_topic,
    records,
    reply_decoder,
)
from tradsys.matching.api import Phase, StatusReason
from tradsys.wire import MD_DTYPE, RECORD_SIZE, MdKind, Side

Level = tuple[int, int]  # (displayed quantity, order count)
SNAPSHOT_RETRY_S = 2.0  # a snapshot request unanswered this long is sent again
# L2 messages a book waiting for its snapshot keeps: past it the oldest go (the snapshot
# may already cover them; if not, applying the rest finds the gap and asks again), so a
# snapshot service that never answers cannot grow a subscriber without bound
BUFFER_MAX_MESSAGES = 100_000
# a trade replay unanswered this many times (SNAPSHOT_RETRY_S each) is given up: its
# prints are reported lost and the prints held behind it delivered
REPLAY_TRIES = 3


def _rows(recs: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The records where ``keep`` holds, as whole 64-byte rows: a boolean mask of the
    structured array copies the fields only, and its padding bytes come out as whatever
    the heap held (records a user hashes or stores must be the bytes the feed carried)."""
    if keep.all():
        return recs
    return take_records(recs, np.flatnonzero(keep))


class LocalBook:
    """One symbol's L2 book as rebuilt from the feed, and the L2 seq it is valid at; and
    its trading status: ``phase`` (None until a snapshot or a STATUS record told it),
    ``reopen_ns`` (when a volatility auction ends by itself, engine clock; -1 = only by a
    command) as of ``status_seq``."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.symbol_id = 0
        self.bids: dict[int, Level] = {}
        self.asks: dict[int, Level] = {}
        self.l2_seq = 0
        self.synced = False
        self.phase: Phase | None = None
        self.status_seq = 0
        self.reopen_ns = -1
        self.resyncs = 0
        self._buffer: list[np.ndarray] = []
        self._request_id: int | None = None
        self._requested_at = 0.0

    def levels(self, side: Side, depth: int | None = None) -> list[tuple[int, int, int]]:
        """(price, quantity, order count), best first."""
        book = self.bids if side == Side.BUY else self.asks
        prices = sorted(book, reverse=side == Side.BUY)[:depth]
        return [(p, *book[p]) for p in prices]

    def best(self, side: Side) -> tuple[int, int] | None:
        """(price, quantity) of the best level of a side, or None when it is empty."""
        book = self.bids if side == Side.BUY else self.asks
        if not book:
            return None
        p = max(book) if side == Side.BUY else min(book)
        return p, book[p][0]

    def as_dict(self) -> dict[str, list[tuple[int, int, int]]]:
        """Both sides, best first: what tests compare with the engine's depth."""
        return {"bids": self.levels(Side.BUY), "asks": self.levels(Side.SELL)}

    def _load(self, snap: BookSnapshot, levels: bool = True) -> bool:
        """Take a snapshot (its levels only when ``levels``); True if it told a status
        newer than the one known."""
        self.symbol_id = snap.symbol_id
        if levels:
            self.bids = {p: (q, c) for p, q, c in snap.bids}
            self.asks = {p: (q, c) for p, q, c in snap.asks}
            self.l2_seq = snap.l2_seq
            self.synced = True
        if snap.phase and (self.phase is None or snap.status_seq > self.status_seq):
            self.phase, self.status_seq, self.reopen_ns = (
                Phase(snap.phase),
                snap.status_seq,
                snap.reopen_ns,
            )
            return True
        return False

    def _apply(self, recs: np.ndarray) -> None:
        bids, asks = self.bids, self.asks
        for side, price, qty, count in zip(
            recs["side"].tolist(),
            recs["price"].tolist(),
            recs["quantity"].tolist(),
            recs["order_count"].tolist(),
            strict=True,
        ):
            book = bids if side == Side.BUY else asks
            if qty == 0 and count == 0:
                book.pop(price, None)
            else:
                book[price] = (qty, count)
        self.l2_seq = int(recs["seq"][-1])


@dataclass(frozen=True)
class Trades:
    """Trade prints of one symbol, in seq order (MD_DTYPE records, side = aggressor).
    ``replayed``: lost on the feed, and these came from the replay service."""

    symbol: str
    records: np.ndarray
    replayed: bool = False


@dataclass(frozen=True)
class BboChange:
    """The newest best bid and offer of one symbol (a quantity of 0 = side empty).
    ``time_ns`` is the engine's time of the change; 0 when the BBO message was lost and
    this was taken from the synced book (the heartbeat said it was lost)."""

    symbol: str
    seq: int
    bid_price: int
    bid_quantity: int
    ask_price: int
    ask_quantity: int
    time_ns: int


class StatusChange(msgspec.Struct, frozen=True):
    """A symbol's trading status changed (or, with ``reason`` None, was learnt from a
    snapshot: ``previous`` is then None too). ``seq`` is the status channel's;
    ``reopen_ns`` is when a volatility auction ends by itself (engine clock; -1 = only
    by a command); ``time_ns`` the engine's time of the change (0 from a snapshot)."""

    symbol: str
    symbol_id: int
    seq: int
    phase: Phase
    previous: Phase | None
    reason: StatusReason | None
    reopen_ns: int
    time_ns: int


@dataclass(frozen=True)
class BookUpdate:
    """L2 records applied to ``book`` (already updated)."""

    symbol: str
    book: LocalBook
    records: np.ndarray


@dataclass(frozen=True)
class Gap:
    """Messages were lost on a channel: for L2 the book is being recovered by snapshot;
    trades are reported lost once the replay service could not give them back (or when
    replay is off). The seqs lost are ``expected`` up to, not
    including, ``got`` -- the seq that showed the gap: the first one received past it, or,
    for a gap a heartbeat revealed, the one after the heartbeat's (nothing past the gap
    was received then). Either way ``lost`` of them."""

    symbol: str
    channel: Channel
    expected: int
    got: int

    @property
    def lost(self) -> int:
        return self.got - self.expected


@dataclass(frozen=True)
class Synced:
    """The book of ``symbol`` was (re)built from a snapshot and is live at ``l2_seq``."""

    symbol: str
    l2_seq: int


@dataclass(frozen=True)
class FeedState:
    """The feed went silent beyond the heartbeat timeout (alive=False), or came back."""

    alive: bool


@dataclass(frozen=True)
class FeedError:
    """A snapshot request the sidecar refused for good (e.g. an unknown symbol)."""

    symbol: str
    reason: str
    message: str


@dataclass
class PendingReplay:
    """A symbol's prints ``first..last`` being asked again; the prints that came after
    them on the feed wait in ``held`` (each batch as it came)."""

    first: int
    last: int
    request_id: int = 0
    asked_at: float = 0.0
    tries: int = 0
    held: list[np.ndarray] = field(default_factory=list)


MdEvent = Trades | BboChange | BookUpdate | StatusChange | Gap | Synced | FeedState | FeedError


DEFAULT_SILENCE_S = 3.0  # a dead feed before the first heartbeat says its interval


@dataclass
class FeedCore:
    """Sequencing and book keeping for a set of subscribed symbols (see the module)."""

    symbols: list[str]
    channels: tuple[Channel, ...] = CHANNELS
    # silence longer than this is a dead feed: None, three heartbeat intervals (3 s until
    # the first heartbeat tells the interval); a value given, never under three intervals
    heartbeat_timeout_s: float | None = None
    books: dict[str, LocalBook] = field(default_factory=dict)
    outbox: list[SnapshotRequest | TradeReplayRequest] = field(default_factory=list)
    alive: bool = True
    last_heartbeat: Heartbeat | None = None
    replay_trades: bool = True

    def __post_init__(self) -> None:
        self.books = {}
        self._trade_seq: dict[str, int] = {}
        # the last trade (BBO) a snapshot said was published: where gaps are counted from
        # until one comes -- never a reason to drop one (those published before the
        # snapshot was taken may still be waiting on the feed socket); None: no snapshot,
        # so where this subscriber's feed began is not known
        self._trade_floor: dict[str, int | None] = {}
        self._bbo_floor: dict[str, int | None] = {}
        self._bbo_seq: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._by_id: dict[int, str] = {}
        self._replays: dict[str, PendingReplay] = {}
        # the last trade seq a heartbeat named: the lost tail a replay under way hid
        self._heard_trade_seq: dict[str, int] = {}
        self._replay_by_id: dict[int, str] = {}
        self._last_message = time.monotonic()
        self._topics: dict[bytes, tuple[Channel, str]] = {}
        symbols, self.symbols = self.symbols, []
        for symbol in symbols:
            self.add_symbol(symbol)

    def add_symbol(self, symbol: str) -> None:
        """Follow one more symbol (subscribe its topics first): a new book, asked of the
        snapshot service when L2 or status is followed. Nothing if it is followed."""
        if symbol in self.books:
            return
        self.symbols.append(symbol)
        book = self.books[symbol] = LocalBook(symbol)
        self._trade_seq[symbol] = self._bbo_seq[symbol] = 0
        self._trade_floor[symbol] = self._bbo_floor[symbol] = None
        if Channel.L2 in self.channels or Channel.STATUS in self.channels:
            self._resync(book)  # the book, and the status as it stands

    def remove_symbol(self, symbol: str) -> None:
        """Stop following a symbol: its book goes, a snapshot asked for it is forgotten,
        and what still arrives for it (an unsubscription takes effect at the publisher,
        later) is dropped. Nothing if it is not followed."""
        book = self.books.pop(symbol, None)
        if book is None:
            return
        self.symbols.remove(symbol)
        if book._request_id is not None:
            self._by_id.pop(book._request_id, None)
        self.outbox = [r for r in self.outbox if r.symbol != symbol]
        replay = self._replays.pop(symbol, None)
        if replay is not None:
            self._replay_by_id.pop(replay.request_id, None)
        self._heard_trade_seq.pop(symbol, None)
        for seqs in (self._trade_seq, self._bbo_seq, self._trade_floor, self._bbo_floor):
            del seqs[symbol]

    # ---- input -----------------------------------------------------------------------------

    def on_message(self, topic: bytes, payload: bytes) -> list[MdEvent]:
        """One PUB message (two frames)."""
        events: list[MdEvent] = []
        self._last_message = time.monotonic()
        if not self.alive:
            self.alive = True
            events.append(FeedState(True))
        if topic == HEARTBEAT_TOPIC:
            events += self._on_heartbeat(heartbeat_decoder.decode(payload))
            return events
        parsed = self._topics.get(topic)
        if parsed is None:  # one parse per topic: the set is the subscribed symbols'
            parsed = self._topics[topic] = parse_topic(topic)
        channel, symbol = parsed
        if symbol not in self.books:  # removed, and its messages still in flight
            return events
        recs = records(payload)
        if channel == Channel.L2:
            events += self._on_l2(self.books[symbol], recs)
        elif channel == Channel.TRADE:
            events += self._on_trades(symbol, recs)
        elif channel == Channel.BBO:
            events += self._on_bbo(symbol, recs)
        else:
            events += self._on_status(self.books[symbol], recs)
        return events

    def on_reply(self, body: bytes) -> list[MdEvent]:
        """One snapshot (or trade replay) reply from the DEALER socket."""
        reply = reply_decoder.decode(body)
        if reply.id in self._replay_by_id:
            return self._on_replay_reply(self._replay_by_id.pop(reply.id), reply)
        symbol = self._by_id.pop(reply.id, None)
        if symbol is None:
            return []  # the answer to a request given up on (a retry was sent)
        book = self.books[symbol]
        if reply.id != book._request_id:
            return []
        book._request_id = None
        if isinstance(reply, TradeReplay):
            return []  # not asked as a snapshot: nothing of this client's
        if isinstance(reply, SnapshotError):
            if reply.reason == "not_ready":
                self._resync(book)
                return []
            if reply.reason == "rate_limited":
                # asked too fast: the timer asks again once SNAPSHOT_RETRY_S has passed
                book._request_id = reply.id
                book._requested_at = time.monotonic()
                return []
            return [FeedError(symbol, reply.reason, reply.message)]
        return self._on_snapshot(book, reply)

    @property
    def silence_limit_s(self) -> float:
        """How long the feed may be silent before it counts as dead."""
        hb = self.last_heartbeat
        three = 3 * hb.interval_ms / 1000 if hb is not None else DEFAULT_SILENCE_S
        given = self.heartbeat_timeout_s
        return three if given is None else max(given, three if hb is not None else 0.0)

    def on_timer(self) -> list[MdEvent]:
        """Call at least every second: liveness, and snapshot requests to retry."""
        now = time.monotonic()
        events: list[MdEvent] = []
        if self.alive and now - self._last_message > self.silence_limit_s:
            self.alive = False
            events.append(FeedState(False))
        for book in self.books.values():
            if book._request_id is not None and now - book._requested_at > SNAPSHOT_RETRY_S:
                self._resync(book)
        for symbol, replay in list(self._replays.items()):
            if now - replay.asked_at > SNAPSHOT_RETRY_S:
                if replay.tries >= REPLAY_TRIES:
                    events += self._give_up_replay(symbol)
                else:
                    self._ask_replay(symbol, replay)
        return events

    def seconds_to_timer(self) -> float:
        return 0.25

    # ---- rules -----------------------------------------------------------------------------

    def _resync(self, book: LocalBook) -> None:
        book.synced = False
        request_id = next(self._ids)
        if book._request_id is not None:
            self._by_id.pop(book._request_id, None)
        book._request_id = request_id
        book._requested_at = time.monotonic()
        self._by_id[request_id] = book.symbol
        self.outbox.append(SnapshotRequest(book.symbol, request_id))

    def _on_l2(self, book: LocalBook, recs: np.ndarray) -> list[MdEvent]:
        if not book.synced:
            book._buffer.append(recs)
            if len(book._buffer) > BUFFER_MAX_MESSAGES:
                del book._buffer[0]
            return []
        seqs = recs["seq"]
        fresh = _rows(recs, seqs > book.l2_seq)
        if not len(fresh):
            return []
        first, last = int(fresh["seq"][0]), int(fresh["seq"][-1])
        if first != book.l2_seq + 1 or last - first != len(fresh) - 1:
            gap = Gap(book.symbol, Channel.L2, book.l2_seq + 1, first)
            book.resyncs += 1
            self._resync(book)
            book._buffer.append(fresh)
            return [gap]
        book._apply(fresh)
        return [BookUpdate(book.symbol, book, fresh)]

    def _on_snapshot(self, book: LocalBook, snap: BookSnapshot) -> list[MdEvent]:
        levels = Channel.L2 in self.channels
        events: list[MdEvent] = []
        if book._load(snap, levels) and book.phase is not None:
            events.append(
                StatusChange(
                    book.symbol,
                    book.symbol_id,
                    book.status_seq,
                    book.phase,
                    None,
                    None,
                    book.reopen_ns,
                    0,
                )
            )
        self._trade_floor[book.symbol] = max(self._trade_floor[book.symbol] or 0, snap.trade_seq)
        self._bbo_floor[book.symbol] = max(self._bbo_floor[book.symbol] or 0, snap.bbo_seq)
        if not levels:
            return events
        events.append(Synced(book.symbol, snap.l2_seq))
        buffered, book._buffer = book._buffer, []
        for recs in buffered:
            events += self._on_l2(book, recs)
        return events

    def _on_status(self, book: LocalBook, recs: np.ndarray) -> list[MdEvent]:
        """Each record is the whole status: apply the fresh ones in order; a seq jump
        (after a first status) lost a change, reported, but the newest record is right."""
        events: list[MdEvent] = []
        for _, _, sid, seq, phase, before, reopen, _, reason, stamp in recs.tolist():
            if seq <= book.status_seq:
                continue
            if book.phase is not None and seq != book.status_seq + 1:
                events.append(Gap(book.symbol, Channel.STATUS, book.status_seq + 1, seq))
            book.symbol_id = sid
            book.phase, book.status_seq, book.reopen_ns = Phase(phase), seq, reopen
            events.append(
                StatusChange(
                    book.symbol,
                    sid,
                    seq,
                    Phase(phase),
                    Phase(before),
                    StatusReason(reason),
                    reopen,
                    stamp,
                )
            )
        return events

    def _on_trades(self, symbol: str, recs: np.ndarray) -> list[MdEvent]:
        replay = self._replays.get(symbol)
        if replay is not None:  # later prints wait for the ones being replayed
            replay.held.append(recs)
            if len(replay.held) > BUFFER_MAX_MESSAGES:
                return self._give_up_replay(symbol)
            return []
        last = self._trade_seq[symbol]
        seqs = recs["seq"]
        if len(recs) == 1:  # a quiet market: no mask to build
            if int(seqs[0]) <= last:
                return []
            fresh = recs
        else:
            fresh = _rows(recs, seqs > last)
            if not len(fresh):
                return []
        events: list[MdEvent] = []
        first = int(fresh["seq"][0])
        base = last or self._trade_floor[symbol]
        if base is not None and first > base + 1:
            if self.replay_trades:
                self._start_replay(symbol, base + 1, first - 1, [fresh])
                return []
            events.append(Gap(symbol, Channel.TRADE, base + 1, first))
        self._trade_seq[symbol] = int(fresh["seq"][-1])
        events.append(Trades(symbol, fresh))
        return events

    # ---- trade replay ---------------------------------------------------------------------

    def _start_replay(self, symbol: str, first: int, last: int, held: list[np.ndarray]) -> None:
        replay = self._replays[symbol] = PendingReplay(first, last, held=held)
        self._ask_replay(symbol, replay)

    def _ask_replay(self, symbol: str, replay: PendingReplay) -> None:
        self._replay_by_id.pop(replay.request_id, None)
        replay.request_id = next(self._ids)
        replay.asked_at = time.monotonic()
        replay.tries += 1
        self._replay_by_id[replay.request_id] = symbol
        self.outbox.append(TradeReplayRequest(symbol, replay.first, replay.last, replay.request_id))

    def _on_replay_reply(
        self, symbol: str, reply: BookSnapshot | TradeReplay | SnapshotError
    ) -> list[MdEvent]:
        replay = self._replays.get(symbol)
        if replay is None or reply.id != replay.request_id:
            return []  # given up on, or the symbol unfollowed
        if isinstance(reply, SnapshotError):
            if reply.reason in ("not_ready", "rate_limited"):
                replay.tries -= 1  # not a lost request: the timer asks again
                return []
            events: list[MdEvent] = [FeedError(symbol, reply.reason, reply.message)]
            return events + self._give_up_replay(symbol)
        if not isinstance(reply, TradeReplay) or reply.first != replay.first:
            return []
        upto = min(reply.last, replay.last)
        events = self._replayed(symbol, records(reply.records), replay.first, upto)
        replay.first = max(replay.first, upto + 1)
        if replay.first <= replay.last:
            if upto < reply.trade_seq:
                replay.tries = 0  # the reply's limit: ask for the rest
                self._ask_replay(symbol, replay)
                return events
            # past the last print the sidecar says it published: none will come
            events.append(Gap(symbol, Channel.TRADE, replay.first, replay.last + 1))
        return events + self._end_replay(symbol)

    def _replayed(self, symbol: str, prints: np.ndarray, first: int, last: int) -> list[MdEvent]:
        """Deliver the prints of ``first..last`` a reply brought, and a Gap for each run of
        seqs it did not (no longer kept), in seq order."""
        seqs = prints["seq"]
        ok = (seqs >= first) & (seqs <= last)
        if not ok.all():
            prints, seqs = _rows(prints, ok), seqs[ok]
        events: list[MdEvent] = []
        expected, start = first, 0
        for k, seq in enumerate(seqs.tolist()):
            if seq != expected:
                if k > start:
                    events.append(Trades(symbol, prints[start:k], replayed=True))
                events.append(Gap(symbol, Channel.TRADE, expected, seq))
                start = k
            expected = seq + 1
        if len(prints) > start:
            events.append(Trades(symbol, prints[start:], replayed=True))
        if expected <= last:
            events.append(Gap(symbol, Channel.TRADE, expected, last + 1))
        return events

    def _give_up_replay(self, symbol: str) -> list[MdEvent]:
        """Report what was being replayed lost, and go on with the held prints."""
        replay = self._replays[symbol]
        events: list[MdEvent] = [Gap(symbol, Channel.TRADE, replay.first, replay.last + 1)]
        return events + self._end_replay(symbol)

    def _end_replay(self, symbol: str) -> list[MdEvent]:
        """The replay is done: the prints held behind it go through as if just received
        (one of them may find a further gap, and start a replay of its own)."""
        replay = self._replays.pop(symbol)
        self._replay_by_id.pop(replay.request_id, None)
        self._trade_seq[symbol] = max(self._trade_seq[symbol], replay.last)
        events: list[MdEvent] = []
        for recs in replay.held:
            events += self._on_trades(symbol, recs)
        heard = self._heard_trade_seq.get(symbol, 0)
        if symbol not in self._replays and heard > self._trade_seq[symbol]:
            # a heartbeat during the replay named prints past all those held: lost too
            self._start_replay(symbol, self._trade_seq[symbol] + 1, heard, [])
        return events

    def _on_bbo(self, symbol: str, recs: np.ndarray) -> list[MdEvent]:
        # only the newest matters; one .item() reads all its fields
        _, _, _, seq, bid, bid_qty, ask, ask_qty, _, stamp = recs[-1].item()
        if seq <= self._bbo_seq[symbol]:
            return []
        self._bbo_seq[symbol] = seq
        return [BboChange(symbol, seq, bid, bid_qty, ask, ask_qty, stamp)]

    def _on_heartbeat(self, hb: Heartbeat) -> list[MdEvent]:
        """A heartbeat follows everything published before it on the same connection:
        a seq it names that the book has not reached was lost."""
        self.last_heartbeat = hb
        events: list[MdEvent] = []
        for s in hb.symbols:
            book = self.books.get(s.symbol)
            if book is None:
                continue
            if Channel.L2 in self.channels and book.synced and s.l2_seq > book.l2_seq:
                events.append(Gap(s.symbol, Channel.L2, book.l2_seq + 1, s.l2_seq + 1))
                book.resyncs += 1
                self._resync(book)
            if (
                Channel.STATUS in self.channels
                and book.phase is not None
                and s.status_seq > book.status_seq
                and book._request_id is None
            ):
                # the newest status message was lost: the snapshot tells the phase
                events.append(Gap(s.symbol, Channel.STATUS, book.status_seq + 1, s.status_seq + 1))
                self._resync(book)
            self._heard_trade_seq[s.symbol] = s.trade_seq
            base = self._trade_seq[s.symbol] or self._trade_floor[s.symbol]
            if (
                Channel.TRADE in self.channels
                and base is not None
                and s.trade_seq > base
                and s.symbol not in self._replays  # those past it are held, or coming
            ):
                if self.replay_trades:
                    self._start_replay(s.symbol, base + 1, s.trade_seq, [])
                else:
                    events.append(Gap(s.symbol, Channel.TRADE, base + 1, s.trade_seq + 1))
                    self._trade_seq[s.symbol] = s.trade_seq
            # after the L2 check: a book it found behind is no longer synced
            if Channel.BBO in self.channels and s.bbo_seq > self._bbo_seq[s.symbol]:
                events += self._bbo_lost(book, s.bbo_seq, s.l2_seq)
        return events

    def _bbo_lost(self, book: LocalBook, seq: int, l2_seq: int) -> list[MdEvent]:
        """The heartbeat names a newer BBO than any this subscriber saw. Lost, and
        reported once, if it was published after the subscriber's feed began (after its
        last BBO, or after its snapshot); a late joiner's first heartbeat only tells it
        the seq. A synced book at exactly the heartbeat's L2 seq tells that BBO, as the
        engine's BBO is its best levels at the end of each command (``time_ns`` 0: when
        it changed is not known). A book at another seq does not: one rebuilt from a
        snapshot that overtook the feed (the reply comes on its own socket) is already
        newer, and its levels under this seq would pair a later BBO's values with an
        earlier seq. Then only the seq is taken; the next BBO message brings values."""
        base = self._bbo_seq[book.symbol] or self._bbo_floor[book.symbol]
        events: list[MdEvent] = []
        if base is not None and seq > base:
            events.append(Gap(book.symbol, Channel.BBO, base + 1, seq + 1))
        self._bbo_seq[book.symbol] = seq
        if Channel.L2 in self.channels and book.synced and book.l2_seq == l2_seq:
            bid = book.best(Side.BUY) or (0, 0)
            ask = book.best(Side.SELL) or (0, 0)
            events.append(BboChange(book.symbol, seq, *bid, *ask, 0))
        return events


# ---- the conflated BBO board ---------------------------------------------------------------


class Bbo(msgspec.Struct, frozen=True):
    """One symbol's latest best bid and offer (a quantity of 0 = that side is empty)."""

    symbol: str
    symbol_id: int
    seq: int
    bid_price: int
    bid_quantity: int
    ask_price: int
    ask_quantity: int
    time_ns: int


class BboBoard(msgspec.Struct, frozen=True):
    """Every symbol's latest BBO as one message carried it; a symbol that has had no
    BBO yet is absent. ``received_ns`` (CLOCK_REALTIME) is when this client took it."""

    quotes: dict[str, Bbo]
    received_ns: int


def decode_board(message: bytes, symbols: Sequence[str]) -> BboBoard:
    """A conflated-board message: ``bbo*\0`` then one MD record per symbol in the
    sidecar's symbol order (its announced ``symbols``). ValueError, naming what is wrong,
    for anything else — a board of another symbol set is not silently mislabelled."""
    if not message.startswith(BBO_BOARD_TOPIC):
        raise ValueError(f"not a BBO board message (starts {message[:8]!r})")
    body = memoryview(message)[len(BBO_BOARD_TOPIC) :]
    if len(body) % RECORD_SIZE:
        raise ValueError(f"BBO board of {len(body)} bytes is not whole 64-byte records")
    rows = np.frombuffer(body, MD_DTYPE)
    if len(rows) != len(symbols):
        raise ValueError(
            f"the BBO board has {len(rows)} symbols but this client was given "
            f"{len(symbols)}: pass the sidecar's announced symbols (md.json), in order"
        )
    quotes = {}
    for name, kind, sid, seq, bp, bq, ap, aq, t in zip(
        symbols,
        rows["kind"].tolist(),
        rows["symbol_id"].tolist(),
        rows["seq"].tolist(),
        rows["price"].tolist(),
        rows["quantity"].tolist(),
        rows["ask_price"].tolist(),
        rows["ask_quantity"].tolist(),
        rows["time_ns"].tolist(),
        strict=True,
    ):
        if kind == MdKind.BBO:
            quotes[name] = Bbo(name, sid, seq, bp, bq, ap, aq, t)
    return BboBoard(quotes, time.clock_gettime_ns(time.CLOCK_REALTIME))
