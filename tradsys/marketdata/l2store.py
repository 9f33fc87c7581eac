"""The L2 books the md sidecar has published, kept so it can answer snapshot requests
with the exact book a subscriber would have built from the feed, and the L2 sequence
number it is valid at (the ZeroMQ guide's Clone pattern).

Kept without per-record Python work, because it sits on the publish path: L2 records
are appended as columns to a pending log, and the log is folded into the level table
(one row per live level) with a sort only when a snapshot is asked for or the log has
grown — the last update of a level wins, 0/0 removes it.

A symbol is *ready* once its book is known from the start: either its first L2 record
ever was seq 1 (an engine this sidecar saw from the beginning), or a refresh image from
its worker (MdKind.L2_REFRESH_*) arrived. Its trading status (phase, status seq, the
breaker's reopening time) is known once a STATUS record or a refresh image (whose BEGIN
and END carry it) arrived. A symbol *servable* (both known) can answer snapshots.
"""

from __future__ import annotations

import numpy as np

from tradsys.marketdata.framing import L2_CHANNEL as L2_CH
from tradsys.marketdata.framing import N_CHANNELS, STATUS_CHANNEL, Grouped, take_records
from tradsys.wire import MD_DTYPE, MdKind, Side

# aligned (32 bytes, not 25 packed): building, gathering and reading the log's rows is
# the store's main cost, and unaligned 8-byte fields made each of those slower
LEVEL_DTYPE = np.dtype(
    [("sym", "<u4"), ("side", "u1"), ("price", "<i8"), ("quantity", "<i8"), ("count", "<u4")],
    align=True,
)
FOLD_AT = 1 << 18  # pending rows that trigger a fold (bounds memory, amortises the sort)
SINGLES_AT = 4096  # scalar-path rows gathered before they join the pending log


class L2Store:
    """Every symbol's published book and last sequence numbers, by dense index."""

    def __init__(self, symbol_ids: list[int]) -> None:
        self.ids = np.array(sorted(symbol_ids), dtype=np.uint32)
        n = len(self.ids)
        self.trade_seq = np.zeros(n, np.uint64)
        self.l2_seq = np.zeros(n, np.uint64)
        self.bbo_seq = np.zeros(n, np.uint64)
        self.status_seq = np.zeros(n, np.uint64)
        self.phase = np.zeros(n, np.uint8)  # tradsys.matching.Phase; 0 until known
        self.reopen_ns = np.full(n, -1, np.int64)
        self.status_known = np.zeros(n, bool)
        self.ready = np.zeros(n, bool)
        self._refreshing = np.zeros(n, bool)
        self._levels = np.zeros(0, LEVEL_DTYPE)
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        # single L2 records (a quiet market) gather here as tuples, in order, before
        # _pending: a list append is the cheapest thing the scalar path can do per record
        self._singles: list[tuple[int, int, int, int, int]] = []
        # by CHANNELS order
        self._seqs = (self.trade_seq, self.bbo_seq, self.l2_seq, self.status_seq)
        self._lut: np.ndarray | None = None
        if n and int(self.ids[-1]) < 1 << 20:
            # symbol ids are small in practice: a lookup table beats a binary search
            self._lut = np.full(int(self.ids[-1]) + 2, -1, np.int64)
            self._lut[self.ids] = np.arange(n)

    def index(self, symbol_ids: np.ndarray) -> np.ndarray:
        """Dense indices of known symbol ids (unknown ids map to -1)."""
        if self._lut is not None:
            ids = np.minimum(symbol_ids, len(self._lut) - 1)
            return np.asarray(self._lut[ids])
        pos = np.searchsorted(self.ids, symbol_ids)
        pos = np.minimum(pos, len(self.ids) - 1)
        return np.where(self.ids[pos] == symbol_ids, pos, -1)

    def servable(self, si: int) -> bool:
        """Whether a snapshot of symbol ``si`` can be answered: book and status known."""
        return bool(self.ready[si] and self.status_known[si])

    def all_servable(self, sym: np.ndarray | slice = slice(None)) -> bool:
        return bool((self.ready[sym] & self.status_known[sym]).all())

    # ---- feeding ---------------------------------------------------------------------

    def apply(self, g: Grouped) -> None:
        """Take a grouped batch of engine records (no refresh kinds): each group's last
        record carries its symbol-channel's newest seq; the L2 records keep their order
        within a symbol, which is all the fold needs."""
        last_seq = g.records["seq"][g.ends - 1]
        ch = g.keys % N_CHANNELS
        si = g.keys // N_CHANNELS
        for c, seqs in enumerate(self._seqs):
            m = ch == c
            seqs[si[m]] = last_seq[m]
        status = g.channel == STATUS_CHANNEL
        if status.any():  # rare (a phase change): per record, in order
            rows = g.records[status]
            for s_, seq, phase, reopen in zip(
                g.sym[status].tolist(),
                rows["seq"].tolist(),
                rows["price"].tolist(),
                rows["ask_price"].tolist(),
                strict=True,
            ):
                self.apply_status(s_, seq, phase, reopen)
        l2 = g.channel == L2_CH
        if not l2.any():
            return
        rows = take_records(g.records, np.flatnonzero(l2))
        s = g.sym[l2]
        # a symbol whose first update ever is seq 1 is known from the start
        first = rows["seq"] == 1
        if first.any():
            self.ready[s[first]] = True
        if self._refreshing[s].any():
            # engine output inside a refresh: the image was cut by a worker crash and a
            # new one is coming; until it does, these books are unknown
            cut = np.unique(s[self._refreshing[s]])
            self._refreshing[cut] = False
            self.ready[cut] = False
        self._append(s, rows["side"], rows["price"], rows["quantity"], rows["order_count"])

    def apply_one(self, si: int, channel: int, rec: np.void) -> None:
        """One engine record as a numpy scalar (see :meth:`apply_scalar`)."""
        self.apply_scalar(
            si,
            channel,
            int(rec["seq"]),
            int(rec["side"]),
            int(rec["price"]),
            int(rec["quantity"]),
            int(rec["order_count"]),
        )

    def apply_scalar(
        self, si: int, channel: int, seq: int, side: int, price: int, quantity: int, count: int
    ) -> None:
        """One engine record's fields (the scalar path for a batch of a few records: a
        quiet market, where numpy's per-call cost would dominate the latency)."""
        self._seqs[channel][si] = seq
        if channel != L2_CH:
            return
        if seq == 1:
            self.ready[si] = True
        if self._refreshing[si]:
            self._refreshing[si] = False
            self.ready[si] = False
        singles = self._singles
        singles.append((si, side, price, quantity, count))
        if len(singles) >= SINGLES_AT:
            self._flush_singles()

    def apply_status(self, si: int, seq: int, phase: int, reopen_ns: int) -> None:
        """One STATUS record's fields: the symbol's phase as of ``seq``."""
        self.status_seq[si] = seq
        self.phase[si] = phase
        self.reopen_ns[si] = reopen_ns
        self.status_known[si] = True

    def status(self, si: int) -> tuple[int, int, int]:
        """(status_seq, phase, reopen_ns) of one symbol."""
        return int(self.status_seq[si]), int(self.phase[si]), int(self.reopen_ns[si])

    def _flush_singles(self) -> None:
        if self._singles:
            self._pending.append(np.array(self._singles, LEVEL_DTYPE))
            self._pending_rows += len(self._singles)
            self._singles = []

    def apply_refresh(self, image: np.ndarray, sym: np.ndarray) -> list[int]:
        """Take a run of refresh records (BEGIN / LEVEL... / END, maybe cut at either
        end by the batch boundary). Returns the symbols whose image it completed: their
        books are now the engine's, which is what the sidecar's BBO board needs to know
        (the image carries the BBO's seq, not its values)."""
        kind = image["kind"]
        starts = np.flatnonzero(kind == MdKind.L2_REFRESH_BEGIN)
        ends = np.flatnonzero(kind == MdKind.L2_REFRESH_END)
        marks = sorted([(int(i), 0) for i in starts] + [(int(i), 1) for i in ends])
        pos = 0
        done: list[int] = []
        for at, what in marks:
            self._take_levels(image[pos:at], sym[pos:at])
            si = int(sym[at])
            if what == 0:
                self._begin(si, image[at])
            elif self._refreshing[si]:
                self._refreshing[si] = False
                self.ready[si] = True
                self.reopen_ns[si] = image[at]["price"]
                done.append(si)
            pos = at + 1
        self._take_levels(image[pos:], sym[pos:])
        return done

    def _begin(self, si: int, rec: np.void) -> None:
        self.fold()
        keep = self._levels["sym"] != si
        self._levels = self._levels[keep]
        self.l2_seq[si] = rec["seq"]
        self.trade_seq[si] = max(int(self.trade_seq[si]), int(rec["ask_price"]))
        self.bbo_seq[si] = max(int(self.bbo_seq[si]), int(rec["ask_quantity"]))
        # the image is the engine's state where it stands in the ring: the phase as of
        # its status seq (its reopening time comes with END)
        self.status_seq[si] = max(int(self.status_seq[si]), int(rec["price"]))
        self.phase[si] = rec["order_count"]
        self.status_known[si] = True
        self._refreshing[si] = True
        self.ready[si] = False

    def _take_levels(self, rows: np.ndarray, sym: np.ndarray) -> None:
        m = (rows["kind"] == MdKind.L2_REFRESH_LEVEL) & self._refreshing[sym]
        if m.any():
            r = rows[m]
            self._append(sym[m], r["side"], r["price"], r["quantity"], r["order_count"])

    def _append(self, sym, side, price, quantity, count) -> None:  # type: ignore[no-untyped-def]
        self._flush_singles()  # keep the log in stream order
        rows = np.empty(len(sym), LEVEL_DTYPE)
        rows["sym"], rows["side"], rows["price"] = sym, side, price
        rows["quantity"], rows["count"] = quantity, count
        self._pending.append(rows)
        self._pending_rows += len(rows)
        if self._pending_rows >= FOLD_AT:
            self.fold()

    # ---- reading -----------------------------------------------------------------------

    def fold(self) -> None:
        """Merge the pending log into the level table (last update per level wins)."""
        self._flush_singles()
        if not self._pending:
            return
        rows = np.concatenate([self._levels, *self._pending])
        self._pending.clear()
        self._pending_rows = 0
        price = rows["price"]
        if len(rows) and int(price.min()) >= 0 and int(price.max()) < 1 << 40:
            # one int64 key (symbol, side, price). An unstable sort is 3-4x faster than a
            # stable one, and the order within a level does not matter: its last update
            # is the highest row number among its equals. Only the surviving rows (a
            # few per level) are gathered, not the whole log.
            key = (rows["sym"].astype(np.int64) << 42) | (rows["side"].astype(np.int64) << 40)
            key |= price
            order = np.argsort(key)
            key = key[order]
            starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
            rows = rows[np.maximum.reduceat(order, starts)]
        else:  # a price past 40 bits: three keys, and a stable sort keeps the last last
            order = np.lexsort((np.arange(len(rows)), price, rows["side"], rows["sym"]))
            rows = rows[order]
            key_change = (
                (rows["sym"][1:] != rows["sym"][:-1])
                | (rows["side"][1:] != rows["side"][:-1])
                | (rows["price"][1:] != rows["price"][:-1])
            )
            rows = rows[np.append(key_change, True)]
        self._levels = rows[(rows["quantity"] != 0) | (rows["count"] != 0)]

    def book(self, si: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """(bids, asks) of one symbol, each best first, as (price, quantity, count)."""
        self.fold()
        lv = self._levels
        lo, hi = np.searchsorted(lv["sym"], [si, si + 1])
        mine = lv[lo:hi]
        bids = mine[mine["side"] == Side.BUY][::-1]
        asks = mine[mine["side"] == Side.SELL]
        return _tuples(bids), _tuples(asks)

    def top(self, si: int) -> tuple[int, int, int, int]:
        """(bid price, bid quantity, ask price, ask quantity) of one symbol's best levels,
        0 and 0 for an empty side: what the engine's BBO record says of this book (it is
        computed from the same levels, native/book.c ``book_bbo``). Folds first, so ask
        for many symbols after a batch, not per record."""
        self.fold()
        lv = self._levels
        lo, hi = np.searchsorted(lv["sym"], [si, si + 1])
        mine = lv[lo:hi]  # sorted by side, then price
        n_bids = int(np.count_nonzero(mine["side"] == Side.BUY))
        return (*_side_top(mine[:n_bids][::-1]), *_side_top(mine[n_bids:]))

    def bbo_record(self, si: int) -> np.ndarray:
        """The BBO record (one MD_DTYPE row) the engine last published for this book, as
        far as the book tells it: its best levels at the last BBO seq. Right when the
        book is the engine's between commands (a refresh image): the engine sends a BBO
        at the end of every command that changed its best levels. ``time_ns`` is 0: when
        the BBO changed is not in the book."""
        rec = np.zeros(1, MD_DTYPE)
        rec["kind"], rec["symbol_id"], rec["seq"] = MdKind.BBO, self.ids[si], self.bbo_seq[si]
        rec["price"], rec["quantity"], rec["ask_price"], rec["ask_quantity"] = self.top(si)
        return rec


def _side_top(levels: np.ndarray) -> tuple[int, int]:
    """(price, displayed quantity) of a side's best level (first row), (0, 0) if empty."""
    if not len(levels):
        return 0, 0
    return int(levels["price"][0]), int(levels["quantity"][0])


def _tuples(levels: np.ndarray) -> list[tuple[int, int, int]]:
    return list(
        zip(
            levels["price"].tolist(),
            levels["quantity"].tolist(),
            levels["count"].tolist(),
            strict=True,
        )
    )
