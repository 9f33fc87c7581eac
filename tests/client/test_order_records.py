"""The client's command records: the order type follows from the prices, kwargs map to
the right fields, bad sides and tifs are refused by name."""

from __future__ import annotations

import pytest

from tradsys import wire
from tradsys.client.orders import order_record
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
