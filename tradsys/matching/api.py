"""The interface every matching engine offers: the C core and the reference model alike.

Both take commands as ``COMMAND_DTYPE`` arrays and answer with ``EVENT_DTYPE`` and
``MD_DTYPE`` arrays, so a test can feed one stream to both and compare the answers
byte for byte. The rules they implement are in docs/matching.md.
"""

from __future__ import annotations

import hashlib
from enum import IntEnum
from typing import Any, NamedTuple, Protocol, Self

import numpy as np

from tradsys.matching.instrument import Instrument
from tradsys.wire import Side

Records = np.ndarray[Any, np.dtype[np.void]]


class Phase(IntEnum):
    """A symbol's trading phase (``enum ts_phase`` of native/book.h), also what a
    ``tradsys.wire.MdKind.STATUS`` record carries. There is no closed phase: SESSION_CLOSE only
    expires DAY orders."""

    CONTINUOUS = 1
    HALTED = 2
    AUCTION = 3


class StatusReason(IntEnum):
    """What changed the phase (``enum ts_md_status_reason`` of native/book.h, a STATUS
    record's ``order_count``): the code of the control command, REOPEN_TIMER (the clock
    passed a volatility auction's reopening time), or BREAKER (a trade beyond the
    breaker band tripped the auction)."""

    REOPEN_TIMER = 1
    SESSION_OPEN = 2
    HALT = 4
    RESUME = 5
    AUCTION_START = 6
    AUCTION_UNCROSS = 7
    BREAKER = 8


class Output(NamedTuple):
    """What a batch of commands produced: execution events and market-data records."""

    events: Records
    md: Records


class Bbo(NamedTuple):
    """Best bid and offer; a missing side has price 0 and quantity 0."""

    bid_price: int
    bid_quantity: int
    ask_price: int
    ask_quantity: int


class MatchingEngine(Protocol):
    """A deterministic engine for one shard's symbols."""

    def add_instrument(self, instrument: Instrument) -> None:
        """Add a symbol (before trading it). ValueError names a bad or duplicate one."""

    def process(self, commands: Records) -> Output:
        """Apply the commands in order; return everything they produced."""

    def depth(self, symbol_id: int, side: Side, max_levels: int = 10) -> Records:
        """Displayed levels (``LEVEL_DTYPE``), best first. KeyError for an unknown symbol."""

    def bbo(self, symbol_id: int) -> Bbo: ...

    def phase(self, symbol_id: int) -> Phase: ...

    def live_orders(self) -> int:
        """Resting orders plus pending stops, all symbols."""

    def snapshot(self) -> bytes:
        """The canonical state bytes (layout in native/book.h)."""

    @classmethod
    def restore(cls, data: bytes) -> Self:
        """An engine that continues exactly where the snapshot's engine stood."""

    def digest(self) -> str:
        """Hex BLAKE2b-128 of the snapshot: equal states, equal digests."""


def snapshot_digest(snapshot: bytes) -> str:
    """The state digest both engines report."""
    return hashlib.blake2b(snapshot, digest_size=16).hexdigest()
