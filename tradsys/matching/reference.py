"""The reference model: a plain, obviously-correct Python implementation of
docs/matching.md, against which the C engine is checked event for event, market-data
record for market-data record and snapshot byte for snapshot byte.

Clarity comes first; speed only as far as million-command test streams need it (no scan
of every order per command, except where the rule itself is over every order: a mass
cancel, a session close). Output is gathered as tuples laid out like the wire records
and packed into ``EVENT_DTYPE`` / ``MD_DTYPE`` arrays once per :meth:`process` call.
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Iterable
from typing import Self

import numpy as np

from tradsys.matching import reference_snapshot
from tradsys.matching.api import Bbo, Output, Phase, Records, StatusReason, snapshot_digest
from tradsys.matching.instrument import Instrument
from tradsys.matching.reference_book import (
    AUCTION,
    BUY,
    CONTINUOUS,
    HALTED,
    NO_REOPEN,
    SELL,
    STATE_PENDING_STOP,
    STATE_RESTING,
    Order,
    SymbolBook,
)
from tradsys.matching.reference_records import (
    DONE,
    EV_ACCEPTED,
    EV_CANCELLED,
    EV_REJECTED,
    EV_REPLACED,
    EV_TRADE,
    EV_TRIGGERED,
    MAKER,
    MD_BBO,
    MD_L2,
    MD_STATUS,
    MD_TRADE,
    TAKER,
    Command,
    pack_events,
    pack_md,
)
from tradsys.matching.reference_rules import (
    DAY,
    DISCONNECT,
    FOK,
    GTC,
    GTD,
    INT64_MAX,
    IOC,
    KILL_SWITCH,
    LIMIT,
    MARKET,
    POST_ONLY,
    RESTING_TIFS,
    STOP,
    STOP_LIMIT,
    STP_CANCEL_BOTH,
    STP_CANCEL_INCOMING,
    STP_CANCEL_RESTING,
    acceptable,
    auction_price,
    fok_fillable,
    inside_band,
    price_ok,
    quantity_ok,
    trips_breaker,
    would_take,
)
from tradsys.matching.snapshot_layout import LEVEL_DTYPE
from tradsys.wire import (
    COMMAND_DTYPE,
    CancelReason,
    CommandKind,
    ControlCode,
    RejectReason,
    Side,
)

R = RejectReason
C = CancelReason


class RejectedError(Exception):
    """Ends a command that was answered with a reject (the REJECTED event is already
    out); not a failure of the engine."""


class ReferenceEngine:
    """The pure-Python :class:`~tradsys.matching.api.MatchingEngine` of docs/matching.md."""

    def __init__(self) -> None:
        self._books: dict[int, SymbolBook] = {}
        self._orders: dict[int, Order] = {}  # every live order: resting or pending stop
        self._gtd: list[tuple[int, int, int]] = []  # heap of (expire, seq, order id)
        self._clock = 0
        self._seq = 0
        self._exec_id = 0
        self._max_order_id = 0
        self._events: list[tuple[int, ...]] = []
        self._md: list[tuple[int, ...]] = []
        self._touched: dict[int, SymbolBook] = {}  # symbols whose levels this command touched

    # ---- configuration and queries ---------------------------------------------------

    def add_instrument(self, instrument: Instrument) -> None:
        """Add a symbol. ValueError names every problem of a bad or duplicate one."""
        problems = instrument.problems()
        for name in ("tick_size", "lot_size", "min_qty", "max_qty", "reference_price"):
            if getattr(instrument, name) > INT64_MAX:
                problems.append(f"instrument {instrument.symbol!r}: {name} exceeds int64")
        if instrument.breaker_halt_ns > INT64_MAX:
            problems.append(f"instrument {instrument.symbol!r}: breaker_halt_ns exceeds int64")
        if instrument.symbol_id in self._books:
            problems.append(
                f"instrument {instrument.symbol!r}: symbol_id {instrument.symbol_id} already added"
            )
        if problems:
            raise ValueError("; ".join(problems))
        self._books[instrument.symbol_id] = SymbolBook(instrument, self._first_touch)
        self._books = dict(sorted(self._books.items()))  # ascending symbol id, always

    def process(self, commands: Records) -> Output:
        """Apply the commands in order; return the events and market data they made.

        ``commands`` is a one-dimensional array with the fields of ``COMMAND_DTYPE`` (in
        any layout: ``np.concatenate`` packs structured dtypes); anything else is a
        TypeError, as for the C engine.
        """
        if not isinstance(commands, np.ndarray) or commands.dtype.names != COMMAND_DTYPE.names:
            got = commands.dtype if isinstance(commands, np.ndarray) else type(commands)
            raise TypeError(f"commands must be a COMMAND_DTYPE array, got {got}")
        if commands.ndim != 1:
            raise ValueError(f"commands must be one-dimensional, got shape {commands.shape}")
        self._events, self._md = [], []
        for record in commands.tolist():
            self._apply(Command._make(record))
        events, md = self._events, self._md
        self._events, self._md = [], []
        return Output(pack_events(events), pack_md(md))

    def submit(self, command: Records | np.void) -> Output:
        """Process one command record (or a one-record array)."""
        return self.process(np.asarray(command, COMMAND_DTYPE).reshape(-1))

    def depth(self, symbol_id: int, side: Side, max_levels: int = 10) -> Records:
        book = self._book(symbol_id)
        if int(side) not in (BUY, SELL):
            raise ValueError(f"side must be BUY or SELL, got {side!r}")
        rows: list[tuple[int, int, int]] = []
        for level in book.side(int(side)).levels_best_first():
            if len(rows) >= max_levels:
                break
            rows.append((level.price, level.displayed, len(level.orders)))
        out = np.zeros(len(rows), LEVEL_DTYPE)
        if rows:
            prices, quantities, counts = zip(*rows, strict=True)
            out["price"], out["quantity"], out["order_count"] = prices, quantities, counts
        return out

    def bbo(self, symbol_id: int) -> Bbo:
        return Bbo(*self._book(symbol_id).bbo())

    def phase(self, symbol_id: int) -> Phase:
        return Phase(self._book(symbol_id).phase)

    def live_orders(self) -> int:
        return len(self._orders)

    def snapshot(self) -> bytes:
        return reference_snapshot.encode(
            clock_ns=self._clock,
            max_order_id=self._max_order_id,
            last_exec_id=self._exec_id,
            last_seq=self._seq,
            books=list(self._books.values()),
        )

    @classmethod
    def restore(cls, data: bytes) -> Self:
        """An engine that continues exactly where the snapshot's engine stood.
        ValueError if the bytes are not a valid snapshot."""
        state = reference_snapshot.decode(data)
        engine = cls()
        engine._clock = state.clock_ns
        engine._max_order_id = state.max_order_id
        engine._exec_id = state.last_exec_id
        engine._seq = state.last_seq
        for restored in state.symbols:
            book = SymbolBook(restored.instrument, engine._first_touch)
            for name, value in restored.fields.items():
                setattr(book, name, value)
            for order in restored.orders:
                if order.state == STATE_RESTING:
                    book.side(order.side).append(order)
                else:
                    book.add_stop(order)
                engine._orders[order.order_id] = order
                if order.tif == GTD:
                    engine._gtd.append((order.expire_ns, order.seq, order.order_id))
            engine._books[book.symbol_id] = book
        heapq.heapify(engine._gtd)
        return engine

    def digest(self) -> str:
        return snapshot_digest(self.snapshot())

    def _book(self, symbol_id: int) -> SymbolBook:
        book = self._books.get(symbol_id)
        if book is None:
            raise KeyError(f"unknown symbol_id {symbol_id}")
        return book

    # ---- output ------------------------------------------------------------------------

    def _event(
        self,
        kind: int,
        side: int,
        symbol_id: int,
        account_id: int,
        order_id: int,
        price: int,
        quantity: int,
        leaves: int,
        *,
        reason: int = 0,
        flags: int = 0,
        contra: int = 0,
    ) -> None:
        self._exec_id += 1
        row = (kind, side, reason, flags, symbol_id, account_id, 0, order_id, contra, price,
               quantity, leaves, self._exec_id)  # fmt: skip
        self._events.append(row)

    def _reject(self, c: Command, reason: int, symbol_id: int | None = None) -> RejectedError:
        """Send the REJECTED event; the caller raises what this returns."""
        sym = c.symbol_id if symbol_id is None else symbol_id
        self._event(
            EV_REJECTED, c.side, sym, c.account_id, c.order_id, c.price, c.quantity, 0,
            reason=reason, flags=DONE,
        )  # fmt: skip
        return RejectedError()

    def _cancelled(self, order: Order, reason: int) -> None:
        """CANCELLED for whatever of the order is still open (the caller unlinks it)."""
        self._event(
            EV_CANCELLED, order.side, order.symbol_id, order.account_id, order.order_id,
            order.price, order.leaves, 0, reason=reason, flags=DONE,
        )  # fmt: skip

    def _first_touch(self, book: SymbolBook) -> None:
        self._touched[book.symbol_id] = book

    def _trade_print(self, book: SymbolBook, taker_side: int, price: int, qty: int) -> None:
        book.trade_seq += 1
        row = (MD_TRADE, taker_side, 0, book.symbol_id, book.trade_seq, price, qty, 0, 0, 0, 0,
               self._clock)  # fmt: skip
        self._md.append(row)

    def _set_phase(self, book: SymbolBook, phase: int, reason: StatusReason) -> None:
        """Every phase change goes through here: it is a STATUS record at once, in
        order with the trade prints (L2 and BBO follow at the command's end)."""
        before, book.phase = book.phase, phase
        if before == phase:
            return
        book.status_seq += 1
        row = (MD_STATUS, 0, 0, book.symbol_id, book.status_seq, phase, before, book.reopen_ns,
               0, int(reason), 0, self._clock)  # fmt: skip
        self._md.append(row)

    def _flush_md(self) -> None:
        """End of command: per touched symbol (first-touch order), its changed levels
        (first-touch order), then its BBO if it differs from the last one sent."""
        clock = self._clock
        for book in self._touched.values():
            sym = book.symbol_id
            for (side, price), before in book.touched.items():
                level = book.side(side).levels.get(price)
                after = (level.displayed, len(level.orders)) if level else (0, 0)
                if after != before:
                    book.l2_seq += 1
                    row = (MD_L2, side, 0, sym, book.l2_seq, price, after[0], 0, 0, after[1], 0,
                           clock)  # fmt: skip
                    self._md.append(row)
            book.touched.clear()
            bbo = book.bbo()
            if bbo != book.last_bbo:
                book.bbo_seq += 1
                book.last_bbo = bbo
                self._md.append((MD_BBO, 0, 0, sym, book.bbo_seq, *bbo, 0, 0, clock))
        self._touched.clear()

    # ---- dispatch ----------------------------------------------------------------------

    def _apply(self, c: Command) -> None:
        try:
            if c.kind == CommandKind.NEW_ORDER:
                self._new_order(c)
            elif c.kind == CommandKind.CANCEL:
                self._cancel(c)
            elif c.kind == CommandKind.REPLACE:
                self._replace(c)
            elif c.kind == CommandKind.MASS_CANCEL:
                self._mass_cancel(c)
            elif c.kind == CommandKind.CONTROL:
                self._control(c)
            else:
                raise self._reject(c, R.INVALID_COMMAND)
        except RejectedError:
            pass
        self._flush_md()

    # ---- new orders --------------------------------------------------------------------

    def _validate_new(self, c: Command) -> SymbolBook:
        """Rules 1-15 of "Validation of a new order", first failure wins."""
        book = self._books.get(c.symbol_id)
        if book is None:
            raise self._reject(c, R.UNKNOWN_SYMBOL)
        if c.account_id == 0:
            raise self._reject(c, R.INVALID_COMMAND)
        if c.side not in (BUY, SELL):
            raise self._reject(c, R.INVALID_SIDE)
        if c.order_type not in (LIMIT, MARKET, STOP, STOP_LIMIT):
            raise self._reject(c, R.INVALID_ORDER_TYPE)
        if c.tif not in (GTC, DAY, IOC, FOK, GTD):
            raise self._reject(c, R.INVALID_TIF)
        if c.flags & ~POST_ONLY or c.stp_mode > STP_CANCEL_BOTH:
            raise self._reject(c, R.INVALID_COMMAND)
        # 6: combinations, in the order the rule lists them
        if c.order_type == MARKET and c.tif not in (IOC, FOK):
            raise self._reject(c, R.INVALID_TIF)
        if c.order_type in (STOP, STOP_LIMIT) and c.tif not in RESTING_TIFS:
            raise self._reject(c, R.INVALID_TIF)
        for applies in (c.flags & POST_ONLY, c.display_qty != 0):
            if applies and c.order_type != LIMIT:
                raise self._reject(c, R.INVALID_ORDER_TYPE)
            if applies and c.tif not in RESTING_TIFS:
                raise self._reject(c, R.INVALID_TIF)
        # 7-10: quantity, prices, band
        if not quantity_ok(book, c.quantity) or not (
            c.display_qty == 0
            or (0 < c.display_qty <= c.quantity and c.display_qty % book.lot_size == 0)
        ):
            raise self._reject(c, R.INVALID_QUANTITY)
        if not price_ok(book, c.order_type, c.price):
            raise self._reject(c, R.INVALID_PRICE)
        if c.order_type in (STOP, STOP_LIMIT):
            if c.stop_price <= 0 or c.stop_price % book.tick_size:
                raise self._reject(c, R.INVALID_PRICE)
        elif c.stop_price != 0:
            raise self._reject(c, R.INVALID_PRICE)
        if not inside_band(book, c.order_type, c.price):
            raise self._reject(c, R.PRICE_BAND)
        # 11-13: expiry, id, phase
        if c.tif == GTD and c.time_ns <= self._clock:
            raise self._reject(c, R.INVALID_TIF)
        if c.order_id <= self._max_order_id:
            raise self._reject(c, R.DUPLICATE_ORDER_ID)
        if book.phase == HALTED:
            raise self._reject(c, R.HALTED)
        if book.phase == AUCTION and not (c.order_type == LIMIT and c.tif in RESTING_TIFS):
            raise self._reject(c, R.PHASE)
        # 14-15: only in continuous trading
        if book.phase == CONTINUOUS:
            if c.flags & POST_ONLY and would_take(book, c.side, c.price):
                raise self._reject(c, R.POST_ONLY_WOULD_TAKE)
            if c.tif == FOK and not fok_fillable(book, c):
                raise self._reject(c, R.FOK_UNFILLABLE)
        return book

    def _new_order(self, c: Command) -> None:
        book = self._validate_new(c)
        self._max_order_id = c.order_id
        self._seq += 1
        order = Order(
            order_id=c.order_id,
            seq=self._seq,
            symbol_id=c.symbol_id,
            account_id=c.account_id,
            side=c.side,
            order_type=c.order_type,
            tif=c.tif,
            flags=c.flags,
            stp_mode=c.stp_mode,
            price=c.price,
            quantity=c.quantity,
            leaves=c.quantity,
            visible=0,
            display_qty=c.display_qty,
            stop_price=c.stop_price,
            expire_ns=c.time_ns if c.tif == GTD else 0,
            state=STATE_RESTING,
        )
        self._event(
            EV_ACCEPTED, c.side, c.symbol_id, c.account_id, c.order_id, c.price, c.quantity,
            c.quantity,
        )  # fmt: skip
        if order.tif == GTD:
            # expiry is fixed for life and ids never recur, so entries of orders that are
            # gone are simply skipped when they come up
            heapq.heappush(self._gtd, (order.expire_ns, order.seq, order.order_id))
        if order.order_type in (STOP, STOP_LIMIT):
            self._link(book, order, STATE_PENDING_STOP)
        elif book.phase == AUCTION:
            self._link(book, order, STATE_RESTING)
        else:
            self._execute(book, order)
        self._run_stops(book)

    def _link(self, book: SymbolBook, order: Order, state: int) -> None:
        """Make an order live: rest it in the book or park it as a pending stop."""
        if state == STATE_RESTING:
            book.rest(order)
        else:
            book.add_stop(order)
        self._orders[order.order_id] = order

    def _unlink(self, book: SymbolBook, order: Order) -> None:
        """Take a live order out of the book (or the stops) and the order index."""
        if order.state == STATE_RESTING:
            book.unrest(order)
        else:
            book.remove_stop(order)
        del self._orders[order.order_id]

    # ---- continuous matching -----------------------------------------------------------

    def _execute(self, book: SymbolBook, order: Order) -> None:
        """An incoming (or re-entering) order in continuous trading: match it, then deal
        with its remainder as its type and tif say."""
        outcome = self._match(book, order)
        if order.leaves == 0 or outcome == "self-trade":
            return
        rests = order.order_type in (LIMIT, STOP_LIMIT) and order.tif in RESTING_TIFS
        if rests:
            self._link(book, order, STATE_RESTING)
        elif outcome == "breaker":
            self._cancelled(order, C.HALT)
        elif order.order_type in (MARKET, STOP):
            self._cancelled(order, C.MARKET_REMAINDER)
        else:
            self._cancelled(order, C.IOC_REMAINDER)

    def _match(self, book: SymbolBook, taker: Order) -> str:
        """Price-time matching of ``taker`` (not in the book) against the opposite side.
        Returns why it stopped: "done", "self-trade" (its remainder was cancelled) or
        "breaker" (the symbol tripped into the auction)."""
        ref = book.dynamic_reference()
        limited = taker.price > 0  # a limit, or a market-type order's protection price
        opposite = book.opposite(taker.side)
        stp = taker.stp_mode or STP_CANCEL_INCOMING
        while taker.leaves > 0:
            level = opposite.best_level()
            if level is None or (limited and not acceptable(taker.side, taker.price, level.price)):
                return "done"
            maker = level.head()
            if maker.account_id == taker.account_id:
                if stp in (STP_CANCEL_RESTING, STP_CANCEL_BOTH):
                    self._unlink(book, maker)
                    self._cancelled(maker, C.SELF_TRADE)
                if stp == STP_CANCEL_RESTING:
                    continue
                self._cancelled(taker, C.SELF_TRADE)
                return "self-trade"
            if trips_breaker(book, ref, level.price):
                book.reopen_ns = min(self._clock + book.breaker_halt_ns, INT64_MAX)
                self._set_phase(book, AUCTION, StatusReason.BREAKER)
                return "breaker"
            qty = min(taker.leaves, maker.visible)
            taker.leaves -= qty
            book.fill_resting(maker, qty)
            self._trade(book, taker, maker, level.price, qty)
        return "done"

    def _trade(self, book: SymbolBook, taker: Order, maker: Order, price: int, qty: int) -> None:
        """The two TRADE events (taker first) and the trade print of one fill whose
        quantities have been taken off both orders."""
        for own, contra, role in ((taker, maker, TAKER), (maker, taker, MAKER)):
            self._event(
                EV_TRADE, own.side, own.symbol_id, own.account_id, own.order_id, price, qty,
                own.leaves, flags=role | (DONE if own.leaves == 0 else 0),
                contra=contra.order_id,
            )  # fmt: skip
            if own.leaves == 0 and own.order_id in self._orders:
                del self._orders[own.order_id]
        book.last_trade_price = price
        self._trade_print(book, taker.side, price, qty)

    # ---- stops -------------------------------------------------------------------------

    def _run_stops(self, book: SymbolBook) -> None:
        """While in continuous trading and some pending stop is triggered, fire the one
        with the lowest seq (its trades may trigger more)."""
        while book.phase == CONTINUOUS:
            order = book.first_triggered_stop()
            if order is None:
                return
            self._unlink(book, order)
            self._event(
                EV_TRIGGERED, order.side, order.symbol_id, order.account_id, order.order_id,
                order.price, order.quantity, order.leaves,
            )  # fmt: skip
            self._execute(book, order)

    # ---- cancel, replace, mass cancel ------------------------------------------------

    def _owned_order(self, c: Command) -> Order:
        order = self._orders.get(c.order_id)
        if order is None or order.symbol_id != c.symbol_id:
            raise self._reject(c, R.UNKNOWN_ORDER)
        if order.account_id != c.account_id:
            raise self._reject(c, R.NOT_OWNER)
        return order

    def _cancel(self, c: Command) -> None:
        order = self._owned_order(c)
        self._unlink(self._books[order.symbol_id], order)
        self._cancelled(order, C.DISCONNECT if c.flags & DISCONNECT else C.USER)

    def _replace(self, c: Command) -> None:
        order = self._owned_order(c)
        book = self._books[order.symbol_id]
        # a stop's protection price can be changed but not dropped: 0 keeps it
        price = order.price if c.price == 0 and order.order_type == STOP else c.price
        if book.phase == HALTED:
            raise self._reject(c, R.HALTED)
        if not quantity_ok(book, c.quantity):
            raise self._reject(c, R.INVALID_QUANTITY)
        if not price_ok(book, order.order_type, price):
            raise self._reject(c, R.INVALID_PRICE)
        if not inside_band(book, order.order_type, price):
            raise self._reject(c, R.PRICE_BAND)
        if (
            order.flags & POST_ONLY
            and book.phase == CONTINUOUS
            and would_take(book, order.side, price)
        ):
            raise self._reject(c, R.POST_ONLY_WOULD_TAKE)
        filled = order.quantity - order.leaves
        if c.quantity <= filled:
            self._unlink(book, order)
            self._cancelled(order, C.USER)
        elif order.state == STATE_PENDING_STOP:
            order.price, order.quantity, order.leaves = price, c.quantity, c.quantity - filled
            self._replaced(order)
        elif price == order.price and c.quantity <= order.quantity:
            book.resize_in_place(order, c.quantity, c.quantity - filled)
            self._replaced(order)
        else:
            self._unlink(book, order)
            order.price, order.quantity, order.leaves = price, c.quantity, c.quantity - filled
            self._replaced(order)
            if book.phase == CONTINUOUS and self._match(book, order) == "self-trade":
                pass  # its remainder was cancelled
            elif order.leaves > 0:
                self._link(book, order, STATE_RESTING)
        self._run_stops(book)

    def _replaced(self, order: Order) -> None:
        self._event(
            EV_REPLACED, order.side, order.symbol_id, order.account_id, order.order_id,
            order.price, order.quantity, order.leaves,
        )  # fmt: skip

    def _mass_cancel(self, c: Command) -> None:
        if c.symbol_id and c.symbol_id not in self._books:
            raise self._reject(c, R.UNKNOWN_SYMBOL)
        self._cancel_all(
            (
                o
                for o in self._orders.values()
                if (c.account_id == 0 or o.account_id == c.account_id)
                and (c.symbol_id == 0 or o.symbol_id == c.symbol_id)
            ),
            C.KILL_SWITCH if c.flags & KILL_SWITCH else C.MASS_CANCEL,
        )

    def _cancel_all(self, orders: Iterable[Order], reason: int) -> None:
        """Cancel the given live orders in ascending seq."""
        for order in sorted(orders, key=lambda o: o.seq):
            self._unlink(self._books[order.symbol_id], order)
            self._cancelled(order, reason)

    # ---- controls ----------------------------------------------------------------------

    def _control(self, c: Command) -> None:
        """The symbol is checked first, then the code (as the rules list them); the
        clock belongs to the engine, so a CLOCK_TICK acts engine-wide whatever its
        (known) symbol_id."""
        if c.symbol_id != 0 and c.symbol_id not in self._books:
            raise self._reject(c, R.UNKNOWN_SYMBOL)
        if c.control not in tuple(ControlCode):
            raise self._reject(c, R.INVALID_COMMAND)
        if c.control == ControlCode.CLOCK_TICK:
            self._clock_tick(c)
            return
        books = [self._books[c.symbol_id]] if c.symbol_id else list(self._books.values())
        for book in books:
            # a symbol that refuses gets its REJECTED; the others still get the command
            with contextlib.suppress(RejectedError):
                self._control_symbol(c, book)

    def _control_symbol(self, c: Command, book: SymbolBook) -> None:
        code = c.control
        if code == ControlCode.SESSION_OPEN:
            if book.phase != CONTINUOUS:
                self._uncross(book, StatusReason.SESSION_OPEN)  # never reopen a crossed book
        elif code == ControlCode.SESSION_CLOSE:
            sym = book.symbol_id
            day = (o for o in self._orders.values() if o.symbol_id == sym and o.tif == DAY)
            self._cancel_all(day, C.EXPIRED)
        elif code == ControlCode.HALT:
            book.reopen_ns = NO_REOPEN
            self._set_phase(book, HALTED, StatusReason.HALT)
        elif code == ControlCode.RESUME:
            if book.phase != HALTED:
                raise self._reject(c, R.INVALID_COMMAND, book.symbol_id)
            self._uncross(book, StatusReason.RESUME)
        elif code == ControlCode.AUCTION_START:
            if book.phase == AUCTION:
                raise self._reject(c, R.INVALID_COMMAND, book.symbol_id)
            self._set_phase(book, AUCTION, StatusReason.AUCTION_START)
        elif code == ControlCode.AUCTION_UNCROSS:
            if book.phase != AUCTION:
                raise self._reject(c, R.INVALID_COMMAND, book.symbol_id)
            self._uncross(book, StatusReason.AUCTION_UNCROSS)

    def _clock_tick(self, c: Command) -> None:
        if c.time_ns < self._clock:
            raise self._reject(c, R.INVALID_COMMAND)
        self._clock = c.time_ns
        while self._gtd and self._gtd[0][0] <= self._clock:
            _, _, order_id = heapq.heappop(self._gtd)
            order = self._orders.get(order_id)
            if order is not None:  # else it traded away or was cancelled already
                self._unlink(self._books[order.symbol_id], order)
                self._cancelled(order, C.EXPIRED)
        for book in self._books.values():
            if book.phase == AUCTION and NO_REOPEN != book.reopen_ns <= self._clock:
                self._uncross(book, StatusReason.REOPEN_TIMER)

    # ---- auction -----------------------------------------------------------------------

    def _uncross(self, book: SymbolBook, reason: StatusReason) -> None:
        """Trade the crossed part of the book at the single auction price, then reopen
        continuous trading (``reason``: what ends the call or halt) and check the stops."""
        while True:
            price, volume = auction_price(book)
            if volume == 0:
                break
            while True:
                bid, ask = book.bids.best_level(), book.asks.best_level()
                if bid is None or ask is None or bid.price < price or ask.price > price:
                    break
                buy, sell = bid.head(), ask.head()
                taker, maker = (buy, sell) if buy.seq > sell.seq else (sell, buy)
                if buy.account_id == sell.account_id:
                    stp = taker.stp_mode or STP_CANCEL_INCOMING
                    if stp in (STP_CANCEL_RESTING, STP_CANCEL_BOTH):
                        self._unlink(book, maker)
                        self._cancelled(maker, C.SELF_TRADE)
                    if stp in (STP_CANCEL_INCOMING, STP_CANCEL_BOTH):
                        self._unlink(book, taker)
                        self._cancelled(taker, C.SELF_TRADE)
                    continue
                qty = min(buy.visible, sell.visible)
                book.fill_resting(taker, qty)
                book.fill_resting(maker, qty)
                self._trade(book, taker, maker, price, qty)
            book.static_reference = price
            if not book.is_crossed():
                break
        book.reopen_ns = NO_REOPEN
        self._set_phase(book, CONTINUOUS, reason)
        self._run_stops(book)
