"""Seeded workloads of perf/engine_bench.py, and the file format of its C driver.

Each scenario is a command stream for one symbol: an untimed prefix that builds the book,
then the timed commands. ``venue`` is ``tradsys.matching.workload.venue_stream`` as it is;
the others come from :class:`_Sim`, which builds commands a chunk at a time with numpy
and runs every chunk through a ``CEngine`` as it goes, so that cancels and replaces name
orders that really rest (what rests is read back from the events: ACCEPTED adds, DONE
removes). Within a chunk the resting set is the one at the chunk's start, so now and then
a cancel names an order that a trade of the same chunk has just filled and is rejected
``UNKNOWN_ORDER`` -- as at a real venue, where cancels race fills.

Common to the generated scenarios: a random-walk mid (a tick every 128 commands on average,
restarted from the book's own mid every chunk and pulled back towards the start), new
orders at a power-law distance from the mid (the touch is busiest), quantities of 1..19
lots of 100, 2000 accounts; a book held near its starting depth (more adds when it is
thinner, more cancels when it is thicker: trades take orders out too), but for
cancel_heavy.

Workload file (read by native/bench/bench_engine.c), little-endian: a 64-byte header
(magic ``TSENGBN1``, u32 version 1, u32 n_instruments, u64 n_prefix, u64 n_commands with
the prefix, 32 zero bytes), the ``ts_instrument`` records, then the ``ts_command`` records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tradsys.matching import CEngine
from tradsys.matching.instrument import Instrument
from tradsys.matching.snapshot_layout import INSTRUMENT_DTYPE
from tradsys.matching.workload import venue_stream
from tradsys.wire import (
    COMMAND_DTYPE,
    CommandKind,
    EventFlag,
    EventKind,
    OrderType,
    Side,
    TimeInForce,
)

Commands = np.ndarray[Any, np.dtype[np.void]]

SYMBOL_ID = 1
MID = 100_000
LOT = 100
ACCOUNTS = 2000
CANCEL_STORM_MAX = 500_000  # timed commands of cancel_heavy, at most
DEEP_LEVELS = 2000  # deep_book's prefix: levels a side
INSTRUMENT = Instrument(
    "VENUE", SYMBOL_ID, tick_size=1, lot_size=LOT, min_qty=LOT, reference_price=MID
)

FILE_MAGIC = b"TSENGBN1"
FILE_VERSION = 1
HEADER_DTYPE = np.dtype(
    {
        "names": ["magic", "version", "n_instruments", "n_prefix", "n_commands"],
        "formats": ["S8", "<u4", "<u4", "<u8", "<u8"],
        "offsets": [0, 8, 12, 16, 24],
        "itemsize": 64,
    }
)

# command types of a generated chunk
ADD, CANCEL, IOC, SWEEP, REPLACE = range(5)


@dataclass(frozen=True)
class Workload:
    name: str
    what: str  # one line for the table's notes
    commands: Commands  # prefix then timed
    n_prefix: int
    instruments: list[Instrument] = field(default_factory=lambda: [INSTRUMENT])

    @property
    def prefix(self) -> Commands:
        return self.commands[: self.n_prefix]

    @property
    def timed(self) -> Commands:
        return self.commands[self.n_prefix :]

    def write(self, path: Path) -> None:
        """The workload file of native/bench/bench_engine.c."""
        header = np.zeros(1, HEADER_DTYPE)
        header["magic"] = FILE_MAGIC
        header["version"] = FILE_VERSION
        header["n_instruments"] = len(self.instruments)
        header["n_prefix"] = self.n_prefix
        header["n_commands"] = len(self.commands)
        ins = np.zeros(len(self.instruments), INSTRUMENT_DTYPE)  # zeros: pads stay clean
        for i, x in enumerate(self.instruments):
            for name in INSTRUMENT_DTYPE.names or ():
                ins[i][name] = getattr(x, name)
        cmds = np.ascontiguousarray(self.commands)
        if cmds.dtype != COMMAND_DTYPE:
            raise TypeError(f"{self.name}: commands are {cmds.dtype}, not COMMAND_DTYPE")
        with open(path, "wb") as f:
            header.tofile(f)
            ins.tofile(f)
            cmds.tofile(f)


@dataclass(frozen=True)
class Mix:
    """Shares of the timed commands, and how cancels and replaces pick their orders."""

    add: float
    cancel: float
    ioc: float
    sweep: float
    replace: float
    # Hold the book near this many resting orders (more adds below it, more cancels
    # above), or None to let it go where the mix takes it.
    target_depth: int | None
    # Share of cancel/replace targets picked among the newest resting orders (mean age
    # `recent_mean` orders); the others are picked uniformly over the whole book.
    recent_share: float = 0.0
    recent_mean: float = 2000.0
    sweep_lots: tuple[int, int] = (100, 600)  # quantity of a sweep, in lots
    sweep_reach: int = 50  # ticks past the mid a sweep's limit price reaches
    add_scale: float = 2.0  # new orders' distance from the mid: power_law_distance
    add_alpha: float = 1.5
    mid_move: float = 1 / 128  # chance per command that the mid moves a tick


def power_law_distance(
    rng: np.random.Generator, k: int, scale: float, alpha: float, cap: int
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Ticks from the mid, 1..cap: 1 + floor(scale * Lomax(alpha)) (venue_stream's
    distance is scale 2, alpha 1.5)."""
    d = 1 + np.floor(scale * rng.pareto(alpha, k)).astype(np.int64)
    return np.minimum(d, cap)


class _Sim:
    """Builds a stream chunk by chunk against a live CEngine (see the module doc)."""

    def __init__(self, seed: int, max_orders: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.engine = CEngine()
        self.engine.add_instrument(INSTRUMENT)
        size = max_orders + 2
        self.acct = np.zeros(size, np.uint32)  # by order id
        self.price = np.zeros(size, np.int64)
        self.side = np.zeros(size, np.uint8)
        self.alive = np.zeros(size, bool)
        self.rest = np.zeros(0, np.int64)  # resting order ids, oldest first
        self.next_id = 1
        self.mid = MID
        self.chunks: list[Commands] = []

    def _apply(self, cmds: Commands) -> None:
        for i in range(0, len(cmds), 65536):
            ev = self.engine.process(cmds[i : i + 65536]).events
            kind, flags, oid = ev["kind"], ev["flags"], ev["order_id"].astype(np.int64)
            accepted = oid[kind == EventKind.ACCEPTED]
            self.alive[accepted] = True
            done = ((flags & EventFlag.DONE) != 0) & (kind != EventKind.REJECTED)
            self.alive[oid[done]] = False
            keep = self.rest[self.alive[self.rest]]
            self.rest = np.concatenate([keep, accepted[self.alive[accepted]]])
        self.chunks.append(cmds)

    def _new_orders(self, cmds: Commands, idx: np.ndarray, side: np.ndarray) -> None:
        ids = self.next_id + np.arange(len(idx), dtype=np.int64)
        self.next_id += len(idx)
        acct = self.rng.integers(1, ACCOUNTS + 1, len(idx))
        cmds["kind"][idx] = CommandKind.NEW_ORDER
        cmds["order_type"][idx] = OrderType.LIMIT
        cmds["side"][idx] = side
        cmds["order_id"][idx] = ids
        cmds["account_id"][idx] = acct
        self.acct[ids] = acct
        self.side[ids] = side
        self.price[ids] = cmds["price"][idx]

    def build_book(
        self, n: int, scale: float = 0.0, alpha: float = 1.0, cap: int = 1000, flat: bool = False
    ) -> None:
        """n resting GTC orders around the mid, none crossing (the untimed prefix), at a
        power-law distance from the mid, or (flat) uniformly over 1..cap ticks."""
        rng = self.rng
        cmds = np.zeros(n, COMMAND_DTYPE)
        cmds["symbol_id"] = SYMBOL_ID
        side = rng.integers(1, 3, n).astype(np.uint8)
        if flat:
            dist = rng.integers(1, cap + 1, n)
        else:
            dist = power_law_distance(rng, n, scale, alpha, cap)
        cmds["price"] = np.where(side == Side.BUY, self.mid - dist, self.mid + dist)
        cmds["quantity"] = rng.integers(1, 20, n) * LOT
        cmds["tif"] = TimeInForce.GTC
        self._new_orders(cmds, np.arange(n), side)
        self._apply(cmds)

    def _mid_path(self, k: int, rate: float) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The mid through the next k commands: from the book's mid (the middle of its
        best bid and ask), one-tick moves at `rate` per command, biased so that the
        expected drift over the chunk takes back a quarter of the distance from MID."""
        rng = self.rng
        bbo = self.engine.bbo(SYMBOL_ID)
        if bbo.bid_quantity and bbo.ask_quantity:
            # start from the book's own mid: orders are placed around where it trades
            self.mid = (bbo.bid_price + bbo.ask_price) // 2
        moves = max(k * rate, 1.0)
        up = float(np.clip(0.5 - (self.mid - MID) / (8 * moves), 0.3, 0.7))
        move = rng.random(k) < rate
        step = np.where(rng.random(k) < up, 1, -1) * move
        path = self.mid + np.cumsum(step)
        self.mid = int(path[-1])
        return path

    def _targets(self, k: int, mix: Mix) -> np.ndarray[Any, np.dtype[np.int64]]:
        """k distinct resting order ids (fewer only when fewer rest): with probability
        recent_share among the newest (an exponential age), else uniformly."""
        n = len(self.rest)
        if n == 0 or k == 0:
            return np.zeros(0, np.int64)
        k = min(k, n)
        rng = self.rng
        picked = np.zeros(0, np.int64)
        for _ in range(8):  # redraw the duplicates
            want = k - len(picked)
            if want == 0:
                break
            pos = rng.integers(0, n, want)
            recent = rng.random(want) < mix.recent_share
            age = np.floor(rng.exponential(mix.recent_mean, want)).astype(np.int64)
            pos = np.where(recent, np.maximum(n - 1 - age, 0), pos)
            both = np.concatenate([picked, pos])
            _, first = np.unique(both, return_index=True)
            picked = both[np.sort(first)]
        return self.rest[picked]

    def run(self, n: int, mix: Mix, chunk: int = 4096) -> None:
        rng = self.rng
        shares = np.array([mix.add, mix.cancel, mix.ioc, mix.sweep, mix.replace], float)
        done = 0
        while done < n:
            k = min(chunk, n - done)
            p = shares.copy()
            if mix.target_depth:
                f = float(np.clip((mix.target_depth / max(len(self.rest), 1)) ** 8, 0.25, 4.0))
                p[ADD] *= f
                p[CANCEL] /= f
            kinds = rng.choice(5, k, p=p / p.sum())
            mids = self._mid_path(k, mix.mid_move)
            cmds = np.zeros(k, COMMAND_DTYPE)
            cmds["symbol_id"] = SYMBOL_ID

            # cancels and replaces: distinct resting orders; any left without one add
            old = np.flatnonzero((kinds == CANCEL) | (kinds == REPLACE))
            targets = self._targets(len(old), mix)
            kinds[old[len(targets) :]] = ADD
            old = old[: len(targets)]
            cmds["order_id"][old] = targets
            cmds["account_id"][old] = self.acct[targets]
            cx = old[kinds[old] == CANCEL]
            cmds["kind"][cx] = CommandKind.CANCEL
            rp = old[kinds[old] == REPLACE]
            rp_ids = cmds["order_id"][rp].astype(np.int64)
            cmds["kind"][rp] = CommandKind.REPLACE
            cmds["quantity"][rp] = rng.integers(1, 20, len(rp)) * LOT
            # half keep their price (new size only), half re-quote at a new distance
            move = rng.random(len(rp)) < 0.5
            dist = power_law_distance(rng, len(rp), mix.add_scale, mix.add_alpha, 1000)
            requote = np.where(self.side[rp_ids] == Side.BUY, mids[rp] - dist, mids[rp] + dist)
            new_px = np.where(move, requote, self.price[rp_ids])
            cmds["price"][rp] = new_px
            self.price[rp_ids] = new_px

            # new orders, in command order: GTC adds, small IOCs at the touch, sweeps
            new = np.flatnonzero((kinds == ADD) | (kinds == IOC) | (kinds == SWEEP))
            nk = kinds[new]
            side = rng.integers(1, 3, len(new)).astype(np.uint8)
            sign = np.where(side == Side.BUY, 1, -1)
            add_dist = power_law_distance(rng, len(new), mix.add_scale, mix.add_alpha, 1000)
            reach = np.where(nk == SWEEP, mix.sweep_reach, 2)
            m = mids[new]
            cmds["price"][new] = np.where(nk == ADD, m - sign * add_dist, m + sign * reach)
            lots = np.where(
                nk == ADD,
                rng.integers(1, 20, len(new)),
                np.where(
                    nk == SWEEP,
                    rng.integers(mix.sweep_lots[0], mix.sweep_lots[1] + 1, len(new)),
                    rng.integers(1, 10, len(new)),
                ),
            )
            cmds["quantity"][new] = lots * LOT
            cmds["tif"][new] = np.where(nk == ADD, TimeInForce.GTC, TimeInForce.IOC)
            self._new_orders(cmds, new, side)
            self._apply(cmds)
            done += k

    def workload(self, name: str, what: str, n_prefix: int) -> Workload:
        self.engine.close()
        # (np.concatenate would pack the dtype, dropping the wire layout's pads)
        out = np.zeros(sum(len(c) for c in self.chunks), COMMAND_DTYPE)
        at = 0
        for c in self.chunks:
            out[at : at + len(c)] = c
            at += len(c)
        return Workload(name, what, out, n_prefix)


# ---- the scenarios --------------------------------------------------------------------

SCENARIOS = ("venue", "sweeps", "cancel_heavy", "deep_book")


def venue(n: int, seed: int) -> Workload:
    depth = 20_000
    cmds = venue_stream(depth + n, seed, symbol_id=SYMBOL_ID, depth=depth)
    return Workload(
        "venue",
        f"tradsys.matching.workload.venue_stream (book built by the first {depth:,})",
        cmds,
        depth,
    )


def sweeps(n: int, seed: int) -> Workload:
    depth = 20_000
    sim = _Sim(seed, depth + n)
    sim.build_book(depth, scale=3.0, alpha=1.3, cap=1000)
    mix = Mix(
        add=0.50,
        cancel=0.30,
        ioc=0.08,
        sweep=0.02,
        replace=0.10,
        target_depth=depth,
        recent_share=0.8,
        sweep_lots=(50, 200),
        sweep_reach=50,
        add_scale=3.0,
        add_alpha=1.3,
    )
    sim.run(n, mix)
    return sim.workload(
        "sweeps",
        f"~{depth // 1000}k-order book; 2% IOC sweeps of 50-200 lots (4x venue's), 8% small IOCs",
        depth,
    )


def cancel_heavy(n: int, seed: int) -> Workload:
    # 74% cancels cannot be a steady state (an order is cancelled at most once): a
    # cancel storm pulls down a book built in the prefix, big enough to last the storm.
    # The storm is at most 500k commands, so that the book stays an ordinary one (a
    # 10^6-order book is deep_book's subject).
    n = min(n, CANCEL_STORM_MAX)
    depth = int(0.7 * n) + 20_000
    sim = _Sim(seed, depth + n)
    sim.build_book(depth, scale=3.0, alpha=1.3, cap=1000)
    mix = Mix(
        add=0.20,
        cancel=0.74,
        ioc=0.04,
        sweep=0.0,
        replace=0.02,
        target_depth=None,
        recent_share=0.8,
        recent_mean=10_000,
    )
    sim.run(n, mix)
    return sim.workload(
        "cancel_heavy",
        f"cancel storm: {n:,} commands, 74% cancels (80% of recent orders, 20% anywhere) "
        f"pull down a {depth:,}-order book",
        depth,
    )


def deep_book(n: int, seed: int, depth: int = 1_000_000) -> Workload:
    sim = _Sim(seed, depth + n)
    sim.build_book(depth, flat=True, cap=DEEP_LEVELS)
    mix = Mix(
        add=0.45,
        cancel=0.35,
        ioc=0.08,
        sweep=0.005,
        replace=0.115,
        target_depth=depth,
        recent_share=0.9,
        recent_mean=5000,
        sweep_lots=(50, 200),
    )
    sim.run(n, mix)
    return sim.workload(
        "deep_book",
        f"{depth:,} orders spread evenly over {DEEP_LEVELS:,} levels a side; venue-like "
        f"activity at the top",
        depth,
    )


def build(name: str, n: int, seed: int, deep_depth: int = 1_000_000) -> Workload:
    if name == "venue":
        return venue(n, seed)
    if name == "sweeps":
        return sweeps(n, seed)
    if name == "cancel_heavy":
        return cancel_heavy(n, seed)
    if name == "deep_book":
        return deep_book(n, seed, deep_depth)
    raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
