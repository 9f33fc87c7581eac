"""A toy matching engine in the shard's seat for the gateway's property tests.

It answers commands the way the real engine's rules say it would (docs/matching.md:
ACCEPTED or REJECTED for a new order, CANCELLED(USER) or REJECTED(UNKNOWN_ORDER) for a
cancel, REPLACED / CANCELLED / REJECTED for a replace, CANCELLED(MASS_CANCEL) per live
order) and, when the test asks, fills or expires a live order. Its random choices come
from a seeded ``random.Random``, so a failing stream replays.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from tradsys.wire import (
    CancelReason,
    CommandKind,
    EventFlag,
    EventKind,
    OrderFlag,
    OrderType,
    RejectReason,
)

Record = dict[str, Any]


@dataclass
class _Live:
    account: int
    symbol: int
    side: int
    price: int
    qty: int
    leaves: int
    order_type: int = 1
    stop_price: int = 0


class FakeShard:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.live: dict[int, _Live] = {}
        self.exec_id = 0

    def _ev(self, kind: EventKind, oid: int, o: _Live | Record, **fields: int) -> Record:
        self.exec_id += 1
        if isinstance(o, _Live):
            base = {
                "side": o.side,
                "symbol_id": o.symbol,
                "account_id": o.account,
                "price": o.price,
            }
        else:
            base = {k: int(o[k]) for k in ("side", "symbol_id", "account_id", "price")}
        rec = {
            "kind": int(kind),
            "reason": 0,
            "flags": 0,
            "order_id": oid,
            "contra_order_id": 0,
            "quantity": 0,
            "leaves_qty": 0,
            "exec_id": self.exec_id,
        }
        return rec | base | fields

    def _final(self, kind: EventKind, oid: int, o: _Live | Record, reason: int, qty: int) -> Record:
        """An event that ends an order (or answers a command with a reject)."""
        return self._ev(kind, oid, o, reason=reason, flags=EventFlag.DONE, quantity=qty)

    def on_command(self, c: Record) -> list[Record]:
        kind, oid = c["kind"], c["order_id"]
        if kind == CommandKind.NEW_ORDER:
            if self.rng.random() < 0.1:
                return [self._final(EventKind.REJECTED, oid, c, RejectReason.HALTED, c["quantity"])]
            o = _Live(
                c["account_id"], c["symbol_id"], c["side"], c["price"], c["quantity"],
                c["quantity"], int(c["order_type"]), int(c["stop_price"]),
            )  # fmt: skip
            out = [self._ev(EventKind.ACCEPTED, oid, o, quantity=o.qty, leaves_qty=o.qty)]
            if self.rng.random() < 0.2:
                out.append(
                    self._final(EventKind.CANCELLED, oid, o, CancelReason.IOC_REMAINDER, o.leaves)
                )
            else:
                self.live[oid] = o
            return out
        if kind == CommandKind.CANCEL:
            o = self.live.pop(oid, None)
            if o is None:
                return [
                    self._ev(
                        EventKind.REJECTED,
                        oid,
                        c,
                        reason=RejectReason.UNKNOWN_ORDER,
                        flags=EventFlag.DONE,
                    )
                ]
            disconnect = c["flags"] & OrderFlag.DISCONNECT
            why = CancelReason.DISCONNECT if disconnect else CancelReason.USER
            return [self._final(EventKind.CANCELLED, oid, o, why, o.leaves)]
        if kind == CommandKind.REPLACE:
            o = self.live.get(oid)
            if o is None or self.rng.random() < 0.1:
                reason = RejectReason.UNKNOWN_ORDER if o is None else RejectReason.INVALID_PRICE
                return [self._final(EventKind.REJECTED, oid, c, reason, c["quantity"])]
            filled = o.qty - o.leaves
            if c["quantity"] <= filled:
                del self.live[oid]
                return [self._final(EventKind.CANCELLED, oid, o, CancelReason.USER, o.leaves)]
            if not (o.order_type == OrderType.STOP and c["price"] == 0):  # 0 keeps a STOP's
                o.price = c["price"]
            o.qty, o.leaves = c["quantity"], c["quantity"] - filled
            return [self._ev(EventKind.REPLACED, oid, o, quantity=o.qty, leaves_qty=o.leaves)]
        if kind == CommandKind.MASS_CANCEL:
            out = []
            for oid2 in sorted(self.live):
                o = self.live[oid2]
                if c["account_id"] in (0, o.account) and c["symbol_id"] in (0, o.symbol):
                    del self.live[oid2]
                    why = (
                        CancelReason.KILL_SWITCH
                        if c["flags"] & OrderFlag.KILL_SWITCH
                        else CancelReason.MASS_CANCEL
                    )
                    out.append(self._final(EventKind.CANCELLED, oid2, o, why, o.leaves))
            return out
        raise AssertionError(f"the gateway sent a command of kind {kind}")

    def fill(self) -> list[Record]:
        """A trade on a random live order (part or all of it)."""
        if not self.live:
            return []
        oid = self.rng.choice(sorted(self.live))
        o = self.live[oid]
        q = self.rng.randint(1, o.leaves)
        o.leaves -= q
        price = o.price or 1000
        done = EventFlag.DONE if o.leaves == 0 else 0
        if not o.leaves:
            del self.live[oid]
        return [
            self._ev(
                EventKind.TRADE,
                oid,
                o,
                price=price,
                quantity=q,
                leaves_qty=o.leaves,
                flags=done | EventFlag.MAKER,
                contra_order_id=99,
            )
        ]

    def expire(self) -> list[Record]:
        if not self.live:
            return []
        oid = self.rng.choice(sorted(self.live))
        o = self.live.pop(oid)
        return [self._final(EventKind.CANCELLED, oid, o, CancelReason.EXPIRED, o.leaves)]
