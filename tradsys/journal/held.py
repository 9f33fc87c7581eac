"""What a shard's books hold, read from its newest good snapshot without restoring it.

Why: a start must compare the configuration with the state on disk before any process
changes that state (a worker adds new instruments and snapshots them at once). Restoring
every shard's engine in the supervisor would double the restart time; the snapshot's
symbol records, walked with a seek past each symbol's orders, say everything the check
needs: which symbols each shard holds, each one's instrument settings (fixed when its
book was made: they only change at a start, and a start snapshots them) and how many
orders rest there. The file is crc-checked first, as recovery checks it.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tradsys.journal.snapshots import HEADER_SIZE, SnapshotStore
from tradsys.matching import Instrument
from tradsys.matching.snapshot_layout import INSTRUMENT_DTYPE

# the engine snapshot's layout (native/book.h): ts_snap_header, then per symbol its
# ts_instrument, its ts_snap_symbol and that many ts_snap_order records
_SNAP_HEADER_BYTES = 64
_N_SYMBOLS_AT = 12
_INSTRUMENT_BYTES = INSTRUMENT_DTYPE.itemsize
_SYMBOL_BYTES = 104
_N_ORDERS_AT = 88  # in ts_snap_symbol
_ORDER_BYTES = 96

# the settings a book keeps from its instrument, as the config names them
SETTINGS: tuple[str, ...] = tuple(n for n in INSTRUMENT_DTYPE.names or () if n != "symbol_id")


@dataclass(frozen=True)
class HeldBook:
    """One symbol's book in a snapshot: its instrument settings and resting orders."""

    symbol_id: int
    settings: dict[str, int]
    orders: int
    """Live orders (resting and pending stops) at the snapshot's seq."""


@dataclass(frozen=True)
class HeldState:
    """A shard's books as its newest good snapshot has them."""

    snapshot: Path
    books: dict[int, HeldBook]  # by symbol id


def instrument_settings(ins: Instrument) -> dict[str, int]:
    """An instrument's settings as a book keeps them (the fields of ts_instrument)."""
    return {name: int(getattr(ins, name)) for name in SETTINGS}


def held_state(directory: str | Path, shard: int) -> HeldState | None:
    """The books of the newest snapshot of ``shard`` in ``directory`` that checks out
    (at one seq the snapshot, then its addition copy), or None when none does."""
    store = SnapshotStore(directory, shard)
    for _, _, path in store.candidates():
        if store.checks_out(path):
            return HeldState(path, _books(path))
    return None


def _books(path: Path) -> dict[int, HeldBook]:
    books: dict[int, HeldBook] = {}
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        (n_symbols,) = struct.unpack_from("<I", m, HEADER_SIZE + _N_SYMBOLS_AT)
        at = HEADER_SIZE + _SNAP_HEADER_BYTES
        for _ in range(n_symbols):
            ins = np.frombuffer(m, INSTRUMENT_DTYPE, count=1, offset=at)[0]
            (n_orders,) = struct.unpack_from("<Q", m, at + _INSTRUMENT_BYTES + _N_ORDERS_AT)
            symbol_id = int(ins["symbol_id"])
            books[symbol_id] = HeldBook(
                symbol_id, {name: int(ins[name]) for name in SETTINGS}, int(n_orders)
            )
            del ins  # the mmap cannot close while a view of it lives
            at += _INSTRUMENT_BYTES + _SYMBOL_BYTES + n_orders * _ORDER_BYTES
    return books
