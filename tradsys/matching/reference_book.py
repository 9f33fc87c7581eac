"""The data of the reference model: orders, price levels, book sides and one symbol's book.

Plain Python containers chosen so that each operation the rules need is cheap and easy
to check: a level is an ``OrderedDict`` (queue order, O(1) removal anywhere and O(1)
"move to the back"), a side is a dict of levels plus one ascending price list kept with
``bisect``. The rules themselves live in :mod:`tradsys.matching.reference`; this module
only keeps the containers consistent and records which levels a command touched, the
input of the end-of-command L2 and BBO flush.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from collections.abc import Callable, Iterator

from tradsys.matching.instrument import Instrument

BUY, SELL = 1, 2
STATE_RESTING, STATE_PENDING_STOP = 1, 2
CONTINUOUS, HALTED, AUCTION = 1, 2, 3
NO_REOPEN = -1


class Order:
    """One live order: resting in a level, or a pending stop."""

    __slots__ = (
        "account_id",
        "display_qty",
        "expire_ns",
        "flags",
        "leaves",
        "order_id",
        "order_type",
        "price",
        "quantity",
        "seq",
        "side",
        "state",
        "stop_price",
        "stp_mode",
        "symbol_id",
        "tif",
        "visible",
    )

    def __init__(
        self,
        *,
        order_id: int,
        seq: int,
        symbol_id: int,
        account_id: int,
        side: int,
        order_type: int,
        tif: int,
        flags: int,
        stp_mode: int,
        price: int,
        quantity: int,
        leaves: int,
        visible: int,
        display_qty: int,
        stop_price: int,
        expire_ns: int,
        state: int,
    ) -> None:
        self.order_id = order_id
        self.seq = seq
        self.symbol_id = symbol_id
        self.account_id = account_id
        self.side = side
        self.order_type = order_type
        self.tif = tif
        self.flags = flags
        self.stp_mode = stp_mode
        self.price = price
        self.quantity = quantity
        self.leaves = leaves
        self.visible = visible
        self.display_qty = display_qty
        self.stop_price = stop_price
        self.expire_ns = expire_ns
        self.state = state

    def peak(self) -> int:
        """What shows after (re)entering the book: the iceberg peak, or everything."""
        return min(self.display_qty, self.leaves) if self.display_qty else self.leaves

    def __repr__(self) -> str:
        return (
            f"Order(id={self.order_id}, seq={self.seq}, side={self.side}, price={self.price},"
            f" qty={self.quantity}, leaves={self.leaves}, visible={self.visible})"
        )


class Level:
    """One price on one side: the queue and its displayed aggregate."""

    __slots__ = ("displayed", "orders", "price")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: OrderedDict[int, Order] = OrderedDict()
        self.displayed = 0

    def head(self) -> Order:
        return next(iter(self.orders.values()))

    def total_leaves(self) -> int:
        return sum(o.leaves for o in self.orders.values())


class BookSide:
    """The levels of one side; ``prices`` ascends, so the best bid is the last price and
    the best ask the first."""

    __slots__ = ("is_bid", "levels", "prices")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[int, Level] = {}
        self.prices: list[int] = []

    def best_level(self) -> Level | None:
        if not self.prices:
            return None
        return self.levels[self.prices[-1] if self.is_bid else self.prices[0]]

    def levels_best_first(self) -> Iterator[Level]:
        prices = reversed(self.prices) if self.is_bid else iter(self.prices)
        return (self.levels[p] for p in prices)

    def append(self, order: Order) -> None:
        level = self.levels.get(order.price)
        if level is None:
            level = self.levels[order.price] = Level(order.price)
            insort(self.prices, order.price)
        level.orders[order.order_id] = order
        level.displayed += order.visible

    def remove(self, order: Order) -> None:
        level = self.levels[order.price]
        del level.orders[order.order_id]
        level.displayed -= order.visible
        if not level.orders:
            del self.levels[order.price]
            del self.prices[bisect_left(self.prices, order.price)]


class SymbolBook:
    """One instrument: its configuration, phase, references, market-data counters, both
    sides of the book and its pending stops.

    Every change to a resting order goes through a method here that first calls
    :meth:`touch`, so the levels a command touched (and their state before it) are
    always known.
    """

    def __init__(self, instrument: Instrument, on_first_touch: Callable[[SymbolBook], None]):
        self.instrument = instrument
        self.symbol_id = instrument.symbol_id
        self.tick_size = instrument.tick_size
        self.lot_size = instrument.lot_size
        self.min_qty = instrument.min_qty
        self.max_qty = instrument.max_qty
        self.band_bps = instrument.band_bps
        self.breaker_bps = instrument.breaker_bps
        self.breaker_halt_ns = instrument.breaker_halt_ns
        self.phase = CONTINUOUS
        self.static_reference = instrument.reference_price
        self.last_trade_price = 0
        self.reopen_ns = NO_REOPEN
        self.trade_seq = 0
        self.l2_seq = 0
        self.bbo_seq = 0
        self.status_seq = 0
        self.last_bbo: tuple[int, int, int, int] = (0, 0, 0, 0)
        self.bids = BookSide(is_bid=True)
        self.asks = BookSide(is_bid=False)
        # pending stops by order id, in seq order (a stop keeps its seq for life), and
        # per side sorted by (stop_price, seq) so the triggered ones are a prefix/suffix
        self.stops: dict[int, Order] = {}
        self._buy_stops: list[tuple[int, int, int]] = []
        self._sell_stops: list[tuple[int, int, int]] = []
        # (side, price) -> (displayed, order count) when first touched in this command
        self.touched: dict[tuple[int, int], tuple[int, int]] = {}
        self._on_first_touch = on_first_touch

    # ---- views -----------------------------------------------------------------------

    def side(self, side: int) -> BookSide:
        return self.bids if side == BUY else self.asks

    def opposite(self, side: int) -> BookSide:
        return self.asks if side == BUY else self.bids

    def dynamic_reference(self) -> int:
        return self.last_trade_price or self.static_reference

    def bbo(self) -> tuple[int, int, int, int]:
        bid, ask = self.bids.best_level(), self.asks.best_level()
        return (
            bid.price if bid else 0,
            bid.displayed if bid else 0,
            ask.price if ask else 0,
            ask.displayed if ask else 0,
        )

    def is_crossed(self) -> bool:
        bid, ask = self.bids.best_level(), self.asks.best_level()
        return bid is not None and ask is not None and bid.price >= ask.price

    # ---- resting orders (each change touches its level first) -----------------------

    def touch(self, side: int, price: int) -> None:
        key = (side, price)
        if key in self.touched:
            return
        if not self.touched:
            self._on_first_touch(self)
        level = self.side(side).levels.get(price)
        self.touched[key] = (level.displayed, len(level.orders)) if level else (0, 0)

    def rest(self, order: Order) -> None:
        """Put an order at the back of its level's queue, showing its peak."""
        self.touch(order.side, order.price)
        order.state = STATE_RESTING
        order.visible = order.peak()
        self.side(order.side).append(order)

    def unrest(self, order: Order) -> None:
        self.touch(order.side, order.price)
        self.side(order.side).remove(order)

    def fill_resting(self, order: Order, qty: int) -> None:
        """Take ``qty`` from a resting order's visible part: it leaves the book when done,
        and an iceberg whose peak is used up refreshes at the back of its level."""
        self.touch(order.side, order.price)
        level = self.side(order.side).levels[order.price]
        order.leaves -= qty
        order.visible -= qty
        level.displayed -= qty
        if order.leaves == 0:
            self.side(order.side).remove(order)
        elif order.visible == 0:
            order.visible = order.peak()
            level.displayed += order.visible
            level.orders.move_to_end(order.order_id)

    def resize_in_place(self, order: Order, quantity: int, leaves: int) -> None:
        """A replace that keeps queue priority: same price, quantity not increased."""
        self.touch(order.side, order.price)
        level = self.side(order.side).levels[order.price]
        visible = min(order.visible, leaves)
        level.displayed += visible - order.visible
        order.quantity, order.leaves, order.visible = quantity, leaves, visible

    # ---- pending stops ---------------------------------------------------------------

    def add_stop(self, order: Order) -> None:
        order.state = STATE_PENDING_STOP
        order.visible = 0
        self.stops[order.order_id] = order
        insort(self._stop_list(order), (order.stop_price, order.seq, order.order_id))

    def remove_stop(self, order: Order) -> None:
        del self.stops[order.order_id]
        stops = self._stop_list(order)
        del stops[bisect_left(stops, (order.stop_price, order.seq, order.order_id))]

    def first_triggered_stop(self) -> Order | None:
        """The triggered pending stop with the lowest seq, if any: a buy stop triggers
        when the last trade is at or above its stop price, a sell stop at or below."""
        last = self.last_trade_price
        if last == 0:
            return None
        buys = self._buy_stops[: bisect_right(self._buy_stops, (last, float("inf")))]
        sells = self._sell_stops[bisect_left(self._sell_stops, (last,)) :]
        candidates = [seq_oid[1:] for seq_oid in buys + sells]
        if not candidates:
            return None
        return self.stops[min(candidates)[1]]

    def _stop_list(self, order: Order) -> list[tuple[int, int, int]]:
        return self._buy_stops if order.side == BUY else self._sell_stops

    # ---- all orders in snapshot order ------------------------------------------------

    def orders_in_snapshot_order(self) -> Iterator[Order]:
        """Bids best first (queue order), asks best first, then pending stops by seq."""
        for side in (self.bids, self.asks):
            for level in side.levels_best_first():
                yield from level.orders.values()
        yield from self.stops.values()
