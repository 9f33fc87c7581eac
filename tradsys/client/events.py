"""The friendly face of execution events: one typed msgspec struct per kind, and the
exceptions the order client raises.

Event records (``tradsys.wire.EVENT_DTYPE``) carry the client's own order id in
``order_id``; :func:`to_event` turns one into an ``Ack``, ``Reject``, ``Fill``,
``Cancelled``, ``Replaced``, ``Triggered``, or one record of an ORDER_STATUS answer
(``OrderStatus``, then ``StatusEnd``). Code that needs speed reads the records
themselves (``OrderClient.poll_records``) and never builds these.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tradsys.wire import (
    REJECT_TEXT,
    CancelReason,
    EventFlag,
    EventKind,
    OrderState,
    RejectReason,
    Side,
)


class Ack(msgspec.Struct, frozen=True):
    """The order is accepted (resting, or about to trade)."""

    order_id: int
    symbol_id: int
    side: Side
    price: int
    quantity: int
    leaves_qty: int


class Reject(msgspec.Struct, frozen=True):
    """A command was refused; ``reason`` names why and nothing changed."""

    order_id: int
    symbol_id: int
    reason: RejectReason

    @property
    def text(self) -> str:
        """The reason in a few words."""
        return REJECT_TEXT.get(self.reason, "")


class Fill(msgspec.Struct, frozen=True):
    """Part or all of the order traded."""

    order_id: int
    symbol_id: int
    side: Side
    price: int
    quantity: int
    leaves_qty: int
    exec_id: int
    maker: bool

    @property
    def done(self) -> bool:
        return self.leaves_qty == 0


class Cancelled(msgspec.Struct, frozen=True):
    order_id: int
    symbol_id: int
    reason: CancelReason
    quantity: int


class Replaced(msgspec.Struct, frozen=True):
    order_id: int
    symbol_id: int
    price: int
    quantity: int
    leaves_qty: int


class Triggered(msgspec.Struct, frozen=True):
    """A stop order's trigger price was reached; it now executes."""

    order_id: int
    symbol_id: int
    price: int
    quantity: int


class OrderStatus(msgspec.Struct, frozen=True):
    """One live order of the account, as the gateway holds it at the answer's place in
    the event stream (``OrderClient.order_status``)."""

    order_id: int
    symbol_id: int
    side: Side
    state: OrderState
    price: int  # the price the engine holds (0: a market-type order without protection)
    quantity: int  # its total quantity
    leaves_qty: int
    request_id: int


class StatusEnd(msgspec.Struct, frozen=True):
    """The end of an ORDER_STATUS answer: ``count`` orders came before it."""

    request_id: int
    symbol_id: int
    count: int

    @property
    def order_id(self) -> int:
        """The request's id, where other events carry an order's (so ``wait_for``
        finds it)."""
        return self.request_id


Event = Ack | Reject | Fill | Cancelled | Replaced | Triggered | OrderStatus | StatusEnd


def _enum(kind: type[Any], value: int) -> Any:
    try:
        return kind(value)
    except ValueError:
        return value  # a newer gateway's code: keep the number rather than fail


def to_event(rec: Any) -> Event:
    """One EVENT record (a numpy void or a row of a structured array) as a struct."""
    kind = int(rec["kind"])
    oid, sym = int(rec["order_id"]), int(rec["symbol_id"])
    if kind == EventKind.ACCEPTED:
        return Ack(
            oid,
            sym,
            _enum(Side, int(rec["side"])),
            int(rec["price"]),
            int(rec["quantity"]),
            int(rec["leaves_qty"]),
        )
    if kind == EventKind.REJECTED:
        return Reject(oid, sym, _enum(RejectReason, int(rec["reason"])))
    if kind == EventKind.TRADE:
        return Fill(
            oid,
            sym,
            _enum(Side, int(rec["side"])),
            int(rec["price"]),
            int(rec["quantity"]),
            int(rec["leaves_qty"]),
            int(rec["exec_id"]),
            bool(int(rec["flags"]) & EventFlag.MAKER),
        )
    if kind == EventKind.CANCELLED:
        return Cancelled(oid, sym, _enum(CancelReason, int(rec["reason"])), int(rec["quantity"]))
    if kind == EventKind.REPLACED:
        return Replaced(oid, sym, int(rec["price"]), int(rec["quantity"]), int(rec["leaves_qty"]))
    if kind == EventKind.TRIGGERED:
        return Triggered(oid, sym, int(rec["price"]), int(rec["quantity"]))
    if kind == EventKind.ORDER_STATUS:
        if int(rec["flags"]) & EventFlag.LAST:
            return StatusEnd(int(rec["contra_order_id"]), sym, int(rec["quantity"]))
        return OrderStatus(
            oid,
            sym,
            _enum(Side, int(rec["side"])),
            _enum(OrderState, int(rec["reason"])),
            int(rec["price"]),
            int(rec["quantity"]),
            int(rec["leaves_qty"]),
            int(rec["contra_order_id"]),
        )
    raise ValueError(f"unknown event kind {kind} for order {oid}")


class OrderClientError(Exception):
    """Base of the order client's errors."""


class LoginFailed(OrderClientError):  # noqa: N818  (the name the API promises)
    """The gateway refused the login; ``reason`` is its LoginRejectReason code."""

    def __init__(self, reason: int, text: str) -> None:
        super().__init__(f"login refused ({reason}): {text}")
        self.reason = reason
        self.text = text


class Disconnected(OrderClientError):  # noqa: N818
    """The session is over: the gateway ended it, or the connection broke."""


class OrderRejected(OrderClientError):  # noqa: N818
    """A command this client waited on was rejected."""

    def __init__(self, reject: Reject) -> None:
        reason = reject.reason
        if isinstance(reason, RejectReason):
            why = f"{reason.name} ({REJECT_TEXT.get(reason, '')})"
        else:
            why = f"reason {reason}"
        super().__init__(f"order {reject.order_id} rejected: {why}")
        self.reject = reject
        self.reason = reason
