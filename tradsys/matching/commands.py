"""Builders for command records, so callers never fill a 64-byte struct by hand.

Each returns a one-element ``COMMAND_DTYPE`` array; concatenate them (or fill a larger
array directly) to make a batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tradsys.wire import (
    COMMAND_DTYPE,
    CommandKind,
    ControlCode,
    OrderType,
    Side,
    StpMode,
    TimeInForce,
)

Commands = np.ndarray[Any, np.dtype[np.void]]


def _record(**fields: int) -> Commands:
    rec = np.zeros(1, COMMAND_DTYPE)
    for name, value in fields.items():
        rec[name] = value
    return rec


def new_order(
    order_id: int,
    symbol_id: int,
    account_id: int,
    side: Side,
    quantity: int,
    price: int = 0,
    order_type: OrderType = OrderType.LIMIT,
    tif: TimeInForce = TimeInForce.GTC,
    *,
    post_only: bool = False,
    stp_mode: StpMode = StpMode.NONE,
    stop_price: int = 0,
    display_qty: int = 0,
    expire_ns: int = 0,
) -> Commands:
    return _record(
        kind=CommandKind.NEW_ORDER,
        order_id=order_id,
        symbol_id=symbol_id,
        account_id=account_id,
        side=side,
        quantity=quantity,
        price=price,
        order_type=order_type,
        tif=tif,
        flags=1 if post_only else 0,
        stp_mode=stp_mode,
        stop_price=stop_price,
        display_qty=display_qty,
        time_ns=expire_ns,
    )


def cancel(order_id: int, symbol_id: int, account_id: int, flags: int = 0) -> Commands:
    """``flags``: OrderFlag.DISCONNECT for the gateway's cancel-on-disconnect."""
    return _record(
        kind=CommandKind.CANCEL,
        order_id=order_id,
        symbol_id=symbol_id,
        account_id=account_id,
        flags=flags,
    )


def replace(order_id: int, symbol_id: int, account_id: int, price: int, quantity: int) -> Commands:
    """Change an order's price and/or total quantity (FIX cancel/replace semantics)."""
    return _record(
        kind=CommandKind.REPLACE,
        order_id=order_id,
        symbol_id=symbol_id,
        account_id=account_id,
        price=price,
        quantity=quantity,
    )


def mass_cancel(account_id: int = 0, symbol_id: int = 0, flags: int = 0) -> Commands:
    """Cancel every live order of an account and/or a symbol (0 = any). ``flags``:
    OrderFlag.KILL_SWITCH for an operator's kill switch."""
    return _record(
        kind=CommandKind.MASS_CANCEL, account_id=account_id, symbol_id=symbol_id, flags=flags
    )


def control(code: ControlCode, symbol_id: int = 0, time_ns: int = 0) -> Commands:
    """A control command for one symbol, or every symbol when ``symbol_id`` is 0."""
    return _record(kind=CommandKind.CONTROL, control=code, symbol_id=symbol_id, time_ns=time_ns)


def clock_tick(time_ns: int) -> Commands:
    return control(ControlCode.CLOCK_TICK, 0, time_ns)


def batch(*records: Commands) -> Commands:
    """Join single commands into one batch array of exactly ``COMMAND_DTYPE``.

    Not ``np.concatenate``: for dtypes with padding it returns a packed 63-byte dtype,
    which would break the 64-byte framing of rings and journals.
    """
    out = np.zeros(sum(len(r) for r in records), COMMAND_DTYPE)
    at = 0
    for rec in records:
        out[at : at + len(rec)] = rec
        at += len(rec)
    return out
