"""The client's command records: the order type follows from the prices, kwargs map to
the right fields, bad sides and tifs are refused by name."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradsys import wire
from tradsys.client.commands import order_bytes, order_record
from tradsys.wire import OrderType, TimeInForce


@pytest.mark.parametrize(
    ("kw", "order_type"),
    [
        ({"price": 100}, OrderType.LIMIT),
        ({}, OrderType.MARKET),
        ({"stop_price": 90}, OrderType.STOP),
        ({"stop_price": 90, "price": 89}, OrderType.STOP_LIMIT),
    ],
)
def test_order_type_follows_from_prices(kw: dict, order_type: OrderType) -> None:
    rec = order_record(7, 1, "sell", 5, **kw)
    assert rec.dtype == wire.COMMAND_DTYPE and rec.dtype.itemsize == 64
    assert rec["order_type"][0] == order_type and rec["side"][0] == wire.Side.SELL


@pytest.mark.parametrize(
    ("kw", "tif"),
    [
        ({}, TimeInForce.IOC),  # MARKET: the engine refuses GTC (INVALID_TIF)
        ({"price": 100, "order_type": OrderType.MARKET}, TimeInForce.IOC),  # protected
        ({"price": 100}, TimeInForce.GTC),
        ({"stop_price": 90}, TimeInForce.GTC),
        ({"stop_price": 90, "price": 89}, TimeInForce.GTC),
        ({"tif": "fok"}, TimeInForce.FOK),
    ],
)
def test_default_tif_follows_the_order_type(kw: dict, tif: TimeInForce) -> None:
    assert order_record(7, 1, "buy", 5, **kw)["tif"][0] == tif


def test_kwargs_fill_the_fields() -> None:
    rec = order_record(9, 2, "BUY", 100, 50, tif="fok", post_only=True, display_qty=10)[0]
    assert (rec["kind"], rec["order_id"], rec["symbol_id"]) == (wire.CommandKind.NEW_ORDER, 9, 2)
    assert (rec["quantity"], rec["price"], rec["display_qty"]) == (100, 50, 10)
    assert rec["tif"] == TimeInForce.FOK and rec["flags"] == wire.OrderFlag.POST_ONLY


def test_bad_side_and_tif_are_named() -> None:
    with pytest.raises(ValueError, match="side 'up'"):
        order_record(1, 1, "up", 1, 1)
    with pytest.raises(ValueError, match="time in force 'forever'"):
        order_record(1, 1, "buy", 1, 1, tif="forever")
    with pytest.raises(ValueError, match="3 is not a valid Side"):
        order_bytes(1, 1, 3, 1, 1)
    with pytest.raises(ValueError, match="9 is not a valid TimeInForce"):
        order_bytes(1, 1, wire.Side.SELL, 1, 1, tif=9)
    assert order_bytes(1, 1, 2, 1, 1, tif=int(TimeInForce.IOC)) == order_bytes(
        1, 1, "sell", 1, 1, tif="IOC"
    ), "sides and tifs by value and by name (any case) are the same"


def field_by_field(
    order_id: int, symbol_id: int, side: int, quantity: int, price: int, tif: int,
    post_only: bool, stop_price: int, display_qty: int, order_type: int,
) -> bytes:  # fmt: skip
    """The record made the plain numpy way, field by field: the reference for the packer."""
    rec = np.zeros(1, wire.COMMAND_DTYPE)
    rec["kind"] = wire.CommandKind.NEW_ORDER
    rec["order_id"], rec["symbol_id"], rec["side"] = order_id, symbol_id, side
    rec["quantity"], rec["price"], rec["tif"] = quantity, price, tif
    rec["flags"] = wire.OrderFlag.POST_ONLY if post_only else 0
    rec["stop_price"], rec["display_qty"], rec["order_type"] = stop_price, display_qty, order_type
    return rec.tobytes()


I64 = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=300, deadline=None)
@given(
    order_id=st.integers(0, 2**64 - 1),
    symbol_id=st.integers(0, 2**32 - 1),
    side=st.sampled_from(list(wire.Side)),
    quantity=I64,
    price=I64,
    tif=st.sampled_from(list(TimeInForce)),
    post_only=st.booleans(),
    stop_price=I64,
    display_qty=I64,
    order_type=st.sampled_from(list(OrderType)),
)
def test_packed_orders_equal_the_numpy_made_record(
    order_id: int, symbol_id: int, side: wire.Side, quantity: int, price: int,
    tif: TimeInForce, post_only: bool, stop_price: int, display_qty: int, order_type: OrderType,
) -> None:  # fmt: skip
    packed = order_bytes(
        order_id, symbol_id, side, quantity, price, tif=tif, post_only=post_only,
        stop_price=stop_price, display_qty=display_qty, order_type=order_type,
    )  # fmt: skip
    expected = field_by_field(
        order_id, symbol_id, side, quantity, price, tif, post_only, stop_price, display_qty,
        order_type,
    )  # fmt: skip
    assert packed == expected
    assert order_record(
        order_id, symbol_id, side, quantity, price, tif=tif, post_only=post_only,
        stop_price=stop_price, display_qty=display_qty, order_type=order_type,
    ).tobytes() == expected  # fmt: skip


def test_records_are_writable_arrays() -> None:
    rec = order_record(1, 1, "buy", 5, 100)
    rec["quantity"] = 7
    assert rec["quantity"][0] == 7


@pytest.mark.parametrize(
    ("kw", "named"),
    [
        ({"order_id": -1}, "order_id=-1"),
        ({"order_id": 2**64}, f"order_id={2**64}"),
        ({"symbol_id": 2**32}, f"symbol_id={2**32}"),
        ({"quantity": 2**63}, f"quantity={2**63}"),
        ({"quantity": 1.5}, "quantity=1.5"),
        ({"price": "100"}, "price='100'"),
        ({"stop_price": -(2**63) - 1}, f"stop_price={-(2**63) - 1}"),
    ],
)
def test_a_field_out_of_range_or_not_whole_is_named(kw: dict, named: str) -> None:
    args = {"order_id": 1, "symbol_id": 1, "side": "buy", "quantity": 1, "price": 100}
    args.update(kw)
    with pytest.raises(ValueError, match=rf"new_order: {re.escape(named)} is not a whole"):
        order_bytes(**args)
