"""The integer rules of docs/matching.md as pure functions over a book, and the plain-int
spellings of the wire enums the reference model compares against (an IntEnum attribute
lookup per comparison adds up over a million commands).

Every comparison is exact: Python integers do not overflow, where the C engine needs
128-bit products for the band and breaker tests.
"""

from __future__ import annotations

from tradsys.matching.instrument import QTY_MAX
from tradsys.matching.reference_book import BUY, SymbolBook
from tradsys.matching.reference_records import Command
from tradsys.wire import OrderType, StpMode, TimeInForce

INT64_MAX = 2**63 - 1

LIMIT, MARKET, STOP, STOP_LIMIT = (int(t) for t in OrderType)
GTC, DAY, IOC, FOK, GTD = (int(t) for t in TimeInForce)
RESTING_TIFS = (GTC, DAY, GTD)
POST_ONLY = 1
DISCONNECT = 2  # a CANCEL sent for cancel-on-disconnect
KILL_SWITCH = 4  # a MASS_CANCEL sent for an operator's kill switch
STP_NONE, STP_CANCEL_RESTING, STP_CANCEL_INCOMING, STP_CANCEL_BOTH = (int(m) for m in StpMode)


def quantity_ok(book: SymbolBook, qty: int) -> bool:
    """Rule 7 for a quantity: positive, at most QTY_MAX, whole lots, within min/max."""
    return (
        0 < qty <= QTY_MAX
        and qty % book.lot_size == 0
        and qty >= book.min_qty
        and (book.max_qty == 0 or qty <= book.max_qty)
    )


def price_ok(book: SymbolBook, order_type: int, price: int) -> bool:
    """Rule 8: limit prices positive and on the tick; a market-type order's price is its
    protection price, 0 (none) or any positive bound."""
    if order_type in (LIMIT, STOP_LIMIT):
        return price > 0 and price % book.tick_size == 0
    return price >= 0


def inside_band(book: SymbolBook, order_type: int, price: int) -> bool:
    """Rule 10: a limit price within band_bps of the static reference (exact integers)."""
    ref = book.static_reference
    if book.band_bps == 0 or ref <= 0 or order_type not in (LIMIT, STOP_LIMIT):
        return True
    return abs(price - ref) * 10_000 <= ref * book.band_bps


def trips_breaker(book: SymbolBook, ref: int, price: int) -> bool:
    """Would a fill at ``price`` print outside the breaker band around ``ref``?"""
    return book.breaker_bps > 0 and ref > 0 and abs(price - ref) * 10_000 > ref * book.breaker_bps


def acceptable(side: int, limit: int, price: int) -> bool:
    """Is an opposite price at or better than a limit?"""
    return price <= limit if side == BUY else price >= limit


def would_take(book: SymbolBook, side: int, price: int) -> bool:
    level = book.opposite(side).best_level()
    return level is not None and acceptable(side, price, level.price)


def fok_fillable(book: SymbolBook, c: Command) -> bool:
    """Walk the opposite side as matching would, summing what could fill.

    As the rule is written, an order outside the breaker band adds nothing but does
    not end the walk (only an own-account order can). So a FOK whose first level is
    priced beyond the band on the near side is accepted and then trips the breaker
    unfilled, CANCELLED(HALT).
    """
    need = c.quantity
    ref = book.dynamic_reference()
    stp = c.stp_mode or STP_CANCEL_INCOMING
    for level in book.opposite(c.side).levels_best_first():
        if c.price > 0 and not acceptable(c.side, c.price, level.price):
            break
        in_band = not trips_breaker(book, ref, level.price)
        hidden = 0  # icebergs' hidden parts: met again only behind the whole level
        for resting in level.orders.values():
            if resting.account_id == c.account_id:
                if stp == STP_CANCEL_RESTING:
                    continue
                return False
            if in_band:
                need -= resting.visible
                if need <= 0:
                    return True
                hidden += resting.leaves - resting.visible
        need -= hidden
        if need <= 0:
            return True
    return False


def auction_price(book: SymbolBook) -> tuple[int, int]:
    """(price, executable volume) of the uncross: most volume, then least imbalance, then
    nearest the static reference (when set), then the lower price. Volume 0: no price."""
    bids = {lv.price: lv.total_leaves() for lv in book.bids.levels.values()}
    asks = {lv.price: lv.total_leaves() for lv in book.asks.levels.values()}
    ref = book.static_reference
    bid_at_or_above = sum(bids.values())
    ask_at_or_below = 0
    best: tuple[int, int, int, int] | None = None
    for price in sorted(bids.keys() | asks.keys()):
        ask_at_or_below += asks.get(price, 0)
        volume = min(bid_at_or_above, ask_at_or_below)
        key = (-volume, abs(bid_at_or_above - ask_at_or_below), abs(price - ref) if ref else 0)
        if best is None or (*key, price) < best:
            best = (*key, price)
        bid_at_or_above -= bids.get(price, 0)
    if best is None or best[0] == 0:
        return 0, 0
    return best[3], -best[0]
