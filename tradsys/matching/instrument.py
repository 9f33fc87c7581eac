"""Instruments: what a symbol's book needs to know to validate and band its orders."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

SYMBOL_NAME_MAX = 40
"""The longest symbol name, in bytes: what a SYMBOLS entry of the binary protocol holds
(tradsys.protocols.binary) -- a longer one would reach TCP clients cut short."""

INT64_MAX = 2**63 - 1

QTY_MAX = 2**31 - 1
"""The largest quantity of one order (docs/matching.md, rule 7), native/book.h's
TS_QTY_MAX: 31 bits, as the share fields of OUCH or iLink. With fewer than 2^32 orders
resting, no sum of their quantities (a level, a side of a book) can overflow int64."""


def symbol_named(typed: str, names: Iterable[str]) -> str | None:
    """The configured symbol a person or program named: the exact name, else the one
    name equal to it but for case (names are case-sensitive in the config, so
    ``Initech.b`` is valid, yet people type ``ACME`` as ``acme``); None for none, or
    for a case-blind match that two names share."""
    names = list(names)
    if typed in names:
        return typed
    folded = [n for n in names if n.casefold() == typed.casefold()]
    return folded[0] if len(folded) == 1 else None


class Instrument(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One tradable symbol. Prices are integer price units, quantities integer lots.

    ``band_bps`` bounds order prices around the static reference (``reference_price``,
    then each auction's price); ``breaker_bps`` bounds trade prices around the dynamic
    reference (the last trade) and trips a call phase of ``breaker_halt_ns`` when a trade
    would print outside it. 0 turns either off. See docs/matching.md.
    """

    symbol: str
    symbol_id: int
    tick_size: int = 1
    lot_size: int = 1
    min_qty: int = 1
    max_qty: int = 0
    reference_price: int = 0
    band_bps: int = 0
    breaker_bps: int = 0
    breaker_halt_ns: int = 0

    def problems(self) -> list[str]:
        """Every way this configuration is invalid, each naming the field; [] if valid."""
        out = []
        where = f"instrument {self.symbol!r}"
        if not self.symbol:
            out.append("instrument symbol must not be empty")
        elif not (self.symbol.isascii() and self.symbol.isprintable()) or " " in self.symbol:
            # a NUL or a space would break the market-data topics and a person's CLI
            out.append(f"{where}: symbol must be printable ASCII without spaces")
        elif len(self.symbol) > SYMBOL_NAME_MAX:
            out.append(f"{where}: symbol must be at most {SYMBOL_NAME_MAX} characters")
        if not 0 < self.symbol_id < 2**32:
            out.append(f"{where}: symbol_id must be in 1..2^32-1, got {self.symbol_id}")
        for name in ("tick_size", "lot_size"):
            if getattr(self, name) <= 0:
                out.append(f"{where}: {name} must be > 0, got {getattr(self, name)}")
        for name in ("min_qty", "max_qty", "reference_price", "breaker_halt_ns"):
            if getattr(self, name) < 0:
                out.append(f"{where}: {name} must be >= 0, got {getattr(self, name)}")
        for name in ("tick_size", "lot_size", "reference_price", "breaker_halt_ns"):
            if getattr(self, name) > INT64_MAX:  # an int64_t of ts_instrument
                out.append(f"{where}: {name} must be at most 2^63-1, got {getattr(self, name)}")
        for name in ("min_qty", "max_qty"):
            if getattr(self, name) > QTY_MAX:
                out.append(f"{where}: {name} must be at most {QTY_MAX}, got {getattr(self, name)}")
        if self.max_qty and self.max_qty < self.min_qty:
            out.append(f"{where}: max_qty {self.max_qty} is below min_qty {self.min_qty}")
        for name in ("band_bps", "breaker_bps"):
            if not 0 <= getattr(self, name) <= 1_000_000:
                out.append(f"{where}: {name} must be in 0..1000000, got {getattr(self, name)}")
        return out

    def validate(self) -> Instrument:
        """Return self, or raise ValueError listing every problem."""
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self
