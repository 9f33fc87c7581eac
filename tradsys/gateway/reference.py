"""A plain-Python model of the gateway's risk gate and routing, for differential tests.

It states the rules of ``native/risk.c`` and ``native/gateway_pump.c`` once more, as
directly as Python allows and with no concern for speed (Python's integers are exact, as
the C side's 128-bit sums are): what each command is checked
against (first failure wins), what it holds of its account's exposure, how each shard
event changes the account and where it is routed. The property tests feed the C pump and
this model the same streams and require the same records out and the same state.

Records are plain dicts keyed by the ``tradsys.wire`` field names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tradsys.config import AccountSection
from tradsys.wire import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    CancelReason,
    CommandKind,
    EventFlag,
    EventKind,
    OrderFlag,
    OrderState,
    OrderType,
    RejectReason,
    Side,
)

Record = dict[str, Any]
TOKEN = 1_000_000_000
HELD_EVENTS = 4096  # TS_GW_HELD_EVENTS
EPOCH_SHIFT = 40
PENDING_NEW, LIVE, DONE = 1, 2, 3
INT64_MAX = 2**63 - 1
_MARKET_TYPES = (OrderType.MARKET, OrderType.STOP)  # their price is a protection price


@dataclass
class RefOrder:
    exch_id: int
    client_id: int
    session: int | None
    account: int
    symbol: int
    side: int
    qty: int
    price: int = 0  # the risk price
    limit: int = 0  # the engine's price: a limit, or a market-type order's protection
    order_type: int = 0
    stop_price: int = 0
    leaves: int = 0
    res_qty: int = 0
    res_notional: int = 0
    pend_qty: int = 0
    pend_notional: int = 0
    pend_price: int = 0  # the highest risk price the replaces in flight were checked at
    pending: int = 0
    state: int = PENDING_NEW
    indexed: bool = True  # its client id is taken (not done, and the id known)
    orphan: bool = False  # waiting for the account's next session
    # cancelled at its session's disconnect: no amend reaches it, but its client id stays
    # taken until it is done (its last events still carry the id)
    given_up: bool = False


@dataclass
class RefAccount:
    limits: AccountSection
    killed: bool = False
    tokens: int = -1  # the account-wide throttle bucket (-1: full, set in __post_init__)
    last_ns: int = 0
    open_orders: int = 0
    open_notional: int = 0
    filled_notional: int = 0
    position: dict[int, int] = field(default_factory=dict)
    open_buy: dict[int, int] = field(default_factory=dict)
    open_sell: dict[int, int] = field(default_factory=dict)
    held: list[Record] = field(default_factory=list)  # events kept for the next session
    replay_to: int | None = None  # the session they go to, at its next pass

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = _account_depth(self.limits)


@dataclass
class RefSession:
    account: int
    cancel_on_disconnect: bool
    tokens: int
    last_ns: int
    explicit_cod: bool = False  # chosen at login, not following the account's setting


def _depth(limits: AccountSection) -> int:
    return (limits.throttle_burst or limits.throttle_per_s) * TOKEN


def _account_depth(limits: AccountSection) -> int:
    return (limits.account_throttle_burst or limits.account_throttle_per_s) * TOKEN


def _slot(sid: int) -> int:
    return sid & 0xFFFFFFFF


class ReferenceGateway:
    """The gateway's rules over dicts: ``command`` and ``event`` say what leaves."""

    def __init__(
        self,
        instruments: dict[int, tuple[int, int]],
        accounts: list[AccountSection],
        *,
        epoch: int,
        max_orders: int,
        ring_capacity: int = 1 << 30,
    ) -> None:
        """``instruments``: symbol_id → (shard id, reference price); ``ring_capacity``:
        the records a session's event ring holds (an ORDER_STATUS answer's bound)."""
        self.shard_of = {sym: shard for sym, (shard, _) in instruments.items()}
        self.reference = {sym: ref for sym, (_, ref) in instruments.items()}
        self.last_trade: dict[int, int] = {}
        self.accounts = {a.id: RefAccount(a) for a in accounts}
        self.global_kill = False
        self.next_id = (epoch << EPOCH_SHIFT) + 1
        self.max_orders = max_orders
        self.ring_capacity = ring_capacity
        self.orders: dict[int, RefOrder] = {}
        self.by_client: dict[tuple[int, int], int] = {}
        self.sessions: dict[int, RefSession] = {}
        self.shards = sorted(set(self.shard_of.values()))

    # ---- control -----------------------------------------------------------------------

    def add_session(self, sid: int, account: int, cod: bool | None, now: int) -> None:
        acc = self.accounts[account]
        c = acc.limits.cancel_on_disconnect if cod is None else cod
        self.sessions[sid] = RefSession(account, c, _depth(acc.limits), now, cod is not None)
        for o in self.orders.values():  # the account's orders without a session come here
            if o.orphan and o.account == account:
                o.orphan, o.session = False, sid
        if acc.held and acc.replay_to is None:
            acc.replay_to = sid

    def take_held(self) -> dict[int, list[Record]]:
        """The held events a pass delivers (at its start, before the shards' events): all
        of each account's, to the session that took its orders."""
        out: dict[int, list[Record]] = {}
        for acc in self.accounts.values():
            if acc.replay_to is not None and acc.held:
                out.setdefault(acc.replay_to, []).extend(acc.held)
                acc.held, acc.replay_to = [], None
        return out

    def set_limits(self, limits: AccountSection, now: int) -> None:
        acc = self.accounts.get(limits.id)
        if acc is None:
            self.accounts[limits.id] = RefAccount(limits)
            return
        old, acc.limits = acc.limits, limits
        for s in self.sessions.values():
            if s.account == limits.id and not s.explicit_cod:
                s.cancel_on_disconnect = limits.cancel_on_disconnect
        if (old.throttle_per_s, old.throttle_burst) != (
            limits.throttle_per_s,
            limits.throttle_burst,
        ):
            for s in self.sessions.values():
                if s.account == limits.id:
                    s.tokens, s.last_ns = _depth(limits), now
        if (old.account_throttle_per_s, old.account_throttle_burst) != (
            limits.account_throttle_per_s,
            limits.account_throttle_burst,
        ):
            acc.tokens, acc.last_ns = _account_depth(limits), now

    def kill(self, account: int | None, on: bool) -> dict[int, list[Record]]:
        if account is None:
            self.global_kill = on
        else:
            self.accounts[account].killed = on
        if not on:
            return {}
        mc = _cmd(
            kind=CommandKind.MASS_CANCEL, account_id=account or 0, flags=OrderFlag.KILL_SWITCH
        )
        return {shard: [mc] for shard in self.shards}

    def remove_session(
        self, sid: int, last: Sequence[Record] = (), now: int = 0
    ) -> dict[int, list[Record]]:
        """A session ends: the commands its client sent that the gateway had not taken
        (``last``) are taken first, as a pass would (sent ahead of any disconnect cancel;
        their rejects held for the account ahead of what it holds already); then, with
        cancel-on-disconnect, a CANCEL for each of its live orders. Returns what goes to
        each shard."""
        out: dict[int, list[Record]] = {}
        rejects: list[Record] = []
        for c in last:
            sent, evs = self.command(sid, c, now, leaving=True)
            for shard, recs in sent.items():
                out.setdefault(shard, []).extend(recs)
            rejects += evs
        s = self.sessions.pop(sid)
        mine = [o for o in self.orders.values() if o.session == sid]
        acc = self.accounts[s.account]
        # its orders and the account's held events go to the other session the held
        # events already go to, else to the one with the lowest slot, else wait
        heirs = [h for h, x in self.sessions.items() if x.account == s.account]
        if acc.replay_to is not None and acc.replay_to != sid:
            heir: int | None = acc.replay_to
        else:
            heir = min(heirs, key=_slot) if heirs else None
        acc.held[:0] = rejects[: HELD_EVENTS - len(acc.held)]
        acc.replay_to = heir if acc.held else None
        if not s.cancel_on_disconnect:
            # the orders stay the account's: its other session with the lowest slot takes
            # them, or its next session does
            for o in mine:
                o.session, o.orphan = heir, heir is None
            return out
        for o in sorted(mine, key=lambda o: -o.exch_id):  # cancels newest first
            if o.state != DONE:
                c = _cmd(
                    kind=CommandKind.CANCEL,
                    symbol_id=o.symbol,
                    account_id=o.account,
                    flags=OrderFlag.DISCONNECT,
                )
                c["order_id"] = o.exch_id
                out.setdefault(self.shard_of[o.symbol], []).append(c)
                o.pending += 1
                o.given_up = True
            # what it does before the cancel lands, and the cancel, are the account's
            o.session, o.orphan = heir, heir is None
        return out

    def _unindex(self, o: RefOrder) -> None:
        if o.indexed:
            del self.by_client[(o.account, o.client_id)]
            o.indexed = False

    def restart(self, epoch: int, live: list[Record]) -> None:
        """A new gateway where this one died (``tradsys.gateway.recovery``): the sessions
        are gone; the live orders are rebuilt from the shards' images (``live``: records
        with the ``ts_live_order`` fields) with their client ids from the ledger, each
        its account's until a session of the account comes; positions, filled notional,
        last trade prices and kill switches are kept; the throttles start full."""
        client_of = {o.exch_id: o.client_id for o in self.orders.values()}
        self.sessions.clear()
        self.orders.clear()
        self.by_client.clear()
        self.next_id = (epoch << EPOCH_SHIFT) + 1
        for acc in self.accounts.values():
            acc.held, acc.replay_to = [], None  # events held by the dead gateway are lost
            acc.open_orders = acc.open_notional = 0
            acc.open_buy.clear()
            acc.open_sell.clear()
            acc.tokens, acc.last_ns = _account_depth(acc.limits), 0
        for r in live:
            owner = self.accounts.get(r["account_id"])
            sym = r["symbol_id"]
            if owner is None or sym not in self.shard_of:
                continue
            exch, client = r["order_id"], client_of.get(r["order_id"], 0)
            o = RefOrder(exch, client, None, r["account_id"], sym, r["side"], r["quantity"])
            o.leaves, o.state, o.orphan = r["leaves_qty"], LIVE, True
            o.order_type, o.limit, o.stop_price = r["order_type"], r["price"], r["stop_price"]
            o.price = self._risk_price(sym, o.order_type, o.limit, o.stop_price)
            o.indexed = bool(client) and (o.account, client) not in self.by_client
            if o.indexed:
                self.by_client[(o.account, client)] = exch
            self.orders[exch] = o
            owner.open_orders += 1
            self._rereserve(o)

    # ---- intake --------------------------------------------------------------------------

    def command(
        self, sid: int, c: Record, now: int, leaving: bool = False
    ) -> tuple[dict[int, list[Record]], list[Record]]:
        """One client command: (commands per shard, events for the session). A leaving
        session's ORDER_STATUS is not answered (its client is gone)."""
        s = self.sessions[sid]
        kind = c["kind"]
        try:
            if kind == CommandKind.ORDER_STATUS:
                return {}, [] if leaving else self._status(s, c)
            if kind == CommandKind.NEW_ORDER:
                return self._new(sid, s, c, now), []
            if kind in (CommandKind.CANCEL, CommandKind.REPLACE):
                return self._amend(sid, s, c, now), []
            if kind == CommandKind.MASS_CANCEL:
                mc = _cmd(kind=kind, symbol_id=c["symbol_id"], account_id=s.account)
                if not c["symbol_id"]:
                    return {shard: [mc] for shard in self.shards}, []
                if c["symbol_id"] not in self.shard_of:
                    raise _RejectError(RejectReason.UNKNOWN_SYMBOL)
                return {self.shard_of[c["symbol_id"]]: [mc]}, []
            raise _RejectError(RejectReason.INVALID_COMMAND)
        except _RejectError as r:
            return {}, [self._reject(s, c, r.reason)]

    def _status(self, s: RefSession, c: Record) -> list[Record]:
        """ORDER_STATUS: the account's live orders (in the symbol asked for, or all) by
        client order id, then the closing record; the whole answer or a reject."""
        symbol = c["symbol_id"]
        if symbol and symbol not in self.shard_of:
            raise _RejectError(RejectReason.UNKNOWN_SYMBOL)
        live = [
            o
            for o in self.orders.values()
            if o.account == s.account and o.state != DONE and symbol in (0, o.symbol)
        ]
        if len(live) + 1 > self.ring_capacity // 2:  # a client may hold half the ring
            raise _RejectError(RejectReason.STATUS_TOO_LARGE)
        # the events held for this session go first (they are older than the answer)
        acc = self.accounts[s.account]
        out: list[Record] = []
        if acc.held and acc.replay_to is not None and self.sessions.get(acc.replay_to) is s:
            out, acc.held, acc.replay_to = acc.held, [], None
        for o in sorted(live, key=lambda o: (o.client_id, o.exch_id)):
            if o.state == PENDING_NEW:
                state = OrderState.PENDING_NEW
            elif o.pending or o.given_up:
                state = OrderState.AMENDING
            else:
                state = OrderState.OPEN
            out.append(
                _event(
                    kind=EventKind.ORDER_STATUS,
                    side=o.side,
                    reason=state,
                    symbol_id=o.symbol,
                    account_id=s.account,
                    order_id=o.client_id,
                    contra_order_id=c["order_id"],
                    price=o.limit,
                    quantity=o.qty,
                    leaves_qty=o.leaves,
                )
            )
        out.append(
            _event(
                kind=EventKind.ORDER_STATUS,
                flags=EventFlag.LAST,
                symbol_id=symbol,
                account_id=s.account,
                order_id=c["order_id"],
                contra_order_id=c["order_id"],
                quantity=len(live),
            )
        )
        return out

    def _reject(self, s: RefSession, c: Record, reason: RejectReason) -> Record:
        new = c["kind"] == CommandKind.NEW_ORDER
        return _event(
            kind=EventKind.REJECTED,
            side=c["side"],
            reason=reason,
            flags=EventFlag.DONE if new else 0,
            symbol_id=c["symbol_id"],
            account_id=s.account,
            order_id=c["order_id"],
            price=c["price"],
            quantity=c["quantity"],
        )

    def _throttle(self, s: RefSession, now: int) -> None:
        """The session's bucket, then the account's (shared by all its sessions): a token
        from each, or a reject that takes none."""
        acc = self.accounts[s.account]
        lim = acc.limits
        rate, acc_rate = lim.throttle_per_s, lim.account_throttle_per_s
        if rate and now > s.last_ns:
            s.tokens = min(_depth(lim), (now - s.last_ns) * rate + s.tokens)
            s.last_ns = now
        if acc_rate and now > acc.last_ns:
            acc.tokens = min(_account_depth(lim), (now - acc.last_ns) * acc_rate + acc.tokens)
            acc.last_ns = now
        if rate and s.tokens < TOKEN:
            raise _RejectError(RejectReason.THROTTLED)
        if acc_rate and acc.tokens < TOKEN:
            raise _RejectError(RejectReason.ACCOUNT_THROTTLED)
        if rate:
            s.tokens -= TOKEN
        if acc_rate:
            acc.tokens -= TOKEN

    def _ref(self, symbol: int) -> int:
        return self.last_trade.get(symbol) or self.reference[symbol]

    def _market_base(self, symbol: int, stop_price: int) -> int:
        """A market order's reference; a stop's (a market order once triggered) the higher
        of its stop price and the reference."""
        ref = self._ref(symbol)
        return max(stop_price, ref) if stop_price > 0 else ref

    def _risk_price(self, symbol: int, order_type: int, price: int, stop_price: int) -> int:
        """What an order's exposure is counted at: a limit order's price; a market-type
        order's base or, when higher, its protection price."""
        if order_type in _MARKET_TYPES:
            return max(price, self._market_base(symbol, stop_price))
        return price if price > 0 else self._market_base(symbol, stop_price)

    def _protection_base(self, symbol: int, order_type: int, side: int, stop_price: int) -> int:
        """Where a market-type order will trade: the reference; a buy STOP at or above
        the higher of its stop price and the reference, a sell STOP at or below the lower."""
        ref = self._ref(symbol)
        if order_type != OrderType.STOP or stop_price <= 0:
            return ref
        if side == Side.BUY:
            return max(stop_price, ref)
        return ref if 0 < ref < stop_price else stop_price

    def _collar_ref(self, symbol: int, order_type: int, side: int, stop_price: int) -> int:
        if order_type in _MARKET_TYPES:
            return self._protection_base(symbol, order_type, side, stop_price)
        return self._ref(symbol)

    def _protection(self, lim: AccountSection, c: Record) -> int:
        """The price a market-type order without one is sent with: the far edge of the
        account's collar around its protection base (0 = none)."""
        if c["order_type"] not in _MARKET_TYPES or c["price"] != 0 or not lim.price_collar_bps:
            return 0
        base = self._protection_base(c["symbol_id"], c["order_type"], c["side"], c["stop_price"])
        if base <= 0:
            return 0
        room = base * lim.price_collar_bps // 10000
        if c["side"] == Side.BUY:
            return min(base + room, INT64_MAX)
        return max(base - room, 1)

    def _collar(self, lim: AccountSection, ref: int, price: int) -> None:
        if not lim.price_collar_bps or price <= 0:
            return
        if ref > 0 and abs(price - ref) * 10000 > ref * lim.price_collar_bps:
            raise _RejectError(RejectReason.PRICE_COLLAR)

    def _position(self, acc: RefAccount, symbol: int, side: int, was: int, held: int) -> None:
        lim = acc.limits
        if not lim.max_position:
            return
        pos = acc.position.get(symbol, 0)
        if side == Side.BUY:
            worst = pos + acc.open_buy.get(symbol, 0) - was + held
        else:
            worst = acc.open_sell.get(symbol, 0) - was + held - pos
        if worst > lim.max_position:
            raise _RejectError(RejectReason.MAX_POSITION)

    def _credit(self, acc: RefAccount, was: int, held: int) -> None:
        lim = acc.limits
        if (
            lim.credit_limit
            and acc.open_notional - was + held + acc.filled_notional > lim.credit_limit
        ):
            raise _RejectError(RejectReason.CREDIT_LIMIT)

    def _new(self, sid: int, s: RefSession, c: Record, now: int) -> dict[int, list[Record]]:
        acc = self.accounts[s.account]
        lim = acc.limits
        if c["order_id"] == 0:
            raise _RejectError(RejectReason.INVALID_COMMAND)
        if self.global_kill or acc.killed:
            raise _RejectError(RejectReason.KILL_SWITCH)
        self._throttle(s, now)
        if (s.account, c["order_id"]) in self.by_client:
            raise _RejectError(RejectReason.DUPLICATE_CLIENT_ID)
        sym = c["symbol_id"]
        if sym not in self.shard_of:
            raise _RejectError(RejectReason.UNKNOWN_SYMBOL)
        if c["side"] not in (Side.BUY, Side.SELL):
            raise _RejectError(RejectReason.INVALID_SIDE)
        qty = c["quantity"]
        if qty <= 0:
            raise _RejectError(RejectReason.INVALID_QUANTITY)
        if c["price"] < 0 or c["stop_price"] < 0:
            raise _RejectError(RejectReason.INVALID_PRICE)
        if c["price"] == 0 and c["order_type"] in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            raise _RejectError(RejectReason.INVALID_PRICE)  # not valued as a market order
        send_price = self._protection(lim, c) or c["price"]
        rp = self._risk_price(sym, c["order_type"], send_price, c["stop_price"])
        n = rp * qty
        if lim.max_order_qty and qty > lim.max_order_qty:
            raise _RejectError(RejectReason.MAX_ORDER_QTY)
        if lim.max_order_notional and (rp == 0 or n > lim.max_order_notional):
            raise _RejectError(RejectReason.MAX_NOTIONAL)
        self._collar(
            lim, self._collar_ref(sym, c["order_type"], c["side"], c["stop_price"]), c["price"]
        )
        if lim.max_open_orders and acc.open_orders >= lim.max_open_orders:
            raise _RejectError(RejectReason.MAX_OPEN_ORDERS)
        self._position(acc, sym, c["side"], 0, qty)
        if lim.credit_limit and rp == 0:
            raise _RejectError(RejectReason.CREDIT_LIMIT)
        self._credit(acc, 0, n)
        if len(self.orders) >= self.max_orders:
            raise _RejectError(RejectReason.GATEWAY_CAPACITY)
        o = RefOrder(self.next_id, c["order_id"], sid, s.account, sym, c["side"], qty)
        self.next_id += 1
        self.orders[o.exch_id] = o
        self.by_client[(s.account, o.client_id)] = o.exch_id
        o.price, o.leaves = rp, qty
        o.order_type, o.limit, o.stop_price = c["order_type"], send_price, c["stop_price"]
        acc.open_orders += 1
        self._rereserve(o)
        out = dict(c) | {"account_id": s.account, "order_id": o.exch_id, "price": send_price}
        return {self.shard_of[sym]: [out]}

    def _amend(self, sid: int, s: RefSession, c: Record, now: int) -> dict[int, list[Record]]:
        acc = self.accounts[s.account]
        lim = acc.limits
        replace = c["kind"] == CommandKind.REPLACE
        if replace:
            if self.global_kill or acc.killed:
                raise _RejectError(RejectReason.KILL_SWITCH)
            self._throttle(s, now)
        exch = self.by_client.get((s.account, c["order_id"]))
        if exch is None or self.orders[exch].given_up:
            raise _RejectError(RejectReason.UNKNOWN_CLIENT_ID)
        if c["symbol_id"] and self.orders[exch].symbol != c["symbol_id"]:
            raise _RejectError(RejectReason.UNKNOWN_CLIENT_ID)  # none live in that symbol
        o = self.orders[exch]
        out = _cmd(kind=c["kind"], side=o.side, symbol_id=o.symbol, account_id=s.account)
        out["order_id"] = o.exch_id
        if not replace:
            o.session, o.orphan = sid, False  # the amending session takes the order over
            o.pending += 1
            return {self.shard_of[o.symbol]: [out]}
        qty, price = c["quantity"], c["price"]
        if qty <= 0:
            raise _RejectError(RejectReason.INVALID_QUANTITY)
        if price < 0:
            raise _RejectError(RejectReason.INVALID_PRICE)
        rp = self._risk_price(o.symbol, o.order_type, price or o.limit, o.stop_price)
        if lim.max_order_qty and qty > lim.max_order_qty:
            raise _RejectError(RejectReason.MAX_ORDER_QTY)
        if lim.max_order_notional and (rp == 0 or rp * qty > lim.max_order_notional):
            raise _RejectError(RejectReason.MAX_NOTIONAL)
        self._collar(lim, self._collar_ref(o.symbol, o.order_type, o.side, o.stop_price), price)
        est = max(0, qty - (o.qty - o.leaves))
        est_n = rp * est
        rq, rn = max(o.res_qty, est), max(o.res_notional, est_n)
        self._position(acc, o.symbol, o.side, o.res_qty, rq)
        self._credit(acc, o.res_notional, rn)
        if not o.pending:
            o.pend_qty = o.pend_notional = o.pend_price = 0
        o.pend_qty, o.pend_notional = max(o.pend_qty, est), max(o.pend_notional, est_n)
        o.pend_price = max(o.pend_price, rp)
        o.pending += 1
        o.session, o.orphan = sid, False
        self._set_reserve(o, rq, rn)
        out["price"], out["quantity"] = price, qty
        return {self.shard_of[o.symbol]: [out]}

    # ---- accounting ------------------------------------------------------------------------

    def _set_reserve(self, o: RefOrder, rq: int, rn: int) -> None:
        acc = self.accounts[o.account]
        book = acc.open_buy if o.side == Side.BUY else acc.open_sell
        book[o.symbol] = book.get(o.symbol, 0) + rq - o.res_qty
        acc.open_notional += rn - o.res_notional
        o.res_qty, o.res_notional = rq, rn

    def _rereserve(self, o: RefOrder) -> None:
        rq, rn = o.leaves, (o.price * o.leaves)
        if o.pending and o.pend_qty:
            rq, rn = max(rq, o.pend_qty), max(rn, o.pend_notional)
        self._set_reserve(o, rq, rn)

    def _finish(self, o: RefOrder) -> None:
        if o.state == DONE:
            return
        o.state, o.leaves = DONE, 0
        self.accounts[o.account].open_orders -= 1
        self._set_reserve(o, 0, 0)
        self._unindex(o)

    def event(self, ev: Record) -> tuple[int | None, Record | None]:
        """One shard event: (session, the record it gets) — (None, None) when dropped."""
        o = self.orders.get(ev["order_id"])
        kind = ev["kind"]
        if kind == EventKind.TRADE and ev["price"] > 0 and ev["symbol_id"] in self.shard_of:
            self.last_trade[ev["symbol_id"]] = ev["price"]
        if o is None:
            return None, None
        acc = self.accounts[o.account]
        # the engine answers an order's NEW first: a REJECTED after that answers a CANCEL
        # or REPLACE, and never carries DONE to the client, even when a fill has finished
        # the order meanwhile (its client id may already name a new order)
        answers_amend = kind == EventKind.REJECTED and o.state != PENDING_NEW
        # a given-up order's last command is the gateway's disconnect cancel: with one
        # amend pending, a reject answers it, and no client sent that cancel
        own_cancel = answers_amend and o.given_up and o.pending == 1
        if kind == EventKind.ACCEPTED:
            if o.state == PENDING_NEW:
                o.state = LIVE
        elif kind == EventKind.REJECTED:
            if o.state == PENDING_NEW:
                self._finish(o)
            elif o.pending:
                o.pending -= 1
                if o.state != DONE:
                    self._rereserve(o)
        elif kind == EventKind.TRADE:
            q = ev["quantity"]
            acc.position[o.symbol] = acc.position.get(o.symbol, 0) + (
                q if o.side == Side.BUY else -q
            )
            acc.filled_notional = acc.filled_notional + ev["price"] * q
            if o.state != DONE:
                o.state, o.leaves = LIVE, ev["leaves_qty"]
                if ev["flags"] & EventFlag.DONE or ev["leaves_qty"] <= 0:
                    self._finish(o)
                else:
                    self._rereserve(o)
        elif kind == EventKind.CANCELLED:
            if ev["reason"] in (CancelReason.USER, CancelReason.DISCONNECT) and o.pending:
                o.pending -= 1
            self._finish(o)
        elif kind == EventKind.REPLACED:
            booked = o.pending > 0
            if o.pending:
                o.pending -= 1
            if o.state != DONE:
                o.qty, o.leaves = ev["quantity"], ev["leaves_qty"]
                if ev["price"] > 0:
                    o.limit = ev["price"]
                # a market-type order keeps the highest risk price its replaces in flight
                # were checked at, whatever the reference is now (risk.c,
                # replaced_risk_price); a limit order is valued at its limit
                if o.order_type in _MARKET_TYPES and booked and o.pend_price > 0:
                    o.price = o.pend_price
                else:
                    o.price = self._risk_price(o.symbol, o.order_type, o.limit, o.stop_price)
                self._rereserve(o)
        routed = dict(ev) | {"order_id": o.client_id, "contra_order_id": 0}
        if answers_amend:
            routed["flags"] = ev["flags"] & ~EventFlag.DONE
        if o.state == DONE and o.pending == 0:
            del self.orders[o.exch_id]
        if own_cancel:
            return None, None
        # an order with no session, or whose new session has not had the account's held
        # events yet, has its event kept (in order) for that session
        if o.orphan or (acc.held and acc.replay_to is not None and o.session == acc.replay_to):
            if len(acc.held) < HELD_EVENTS:
                acc.held.append(routed)
            return None, None
        if o.session is None:
            return None, None
        return o.session, routed


class _RejectError(Exception):
    """A check failed: the command is answered with this reason."""

    def __init__(self, reason: RejectReason) -> None:
        self.reason = reason


_COMMAND_FIELDS: tuple[str, ...] = tuple(COMMAND_DTYPE.names or ())
_EVENT_FIELDS: tuple[str, ...] = tuple(EVENT_DTYPE.names or ())


def _cmd(**fields: int) -> Record:
    return {name: int(fields.get(name, 0)) for name in _COMMAND_FIELDS}


def _event(**fields: int) -> Record:
    return {name: int(fields.get(name, 0)) for name in _EVENT_FIELDS}
