"""The order image a worker writes for a restarting gateway: exactly the engine's live
orders (resting, replaced, partly filled, pending stops), and a reader that refuses a
file that is torn, of another shard or answering another request."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradsys.cores.order_image import OrderImageError, image_path, read_image, write_image
from tradsys.journal.snapshots import engine_pointer
from tradsys.matching import CEngine, Instrument
from tradsys.matching.commands import batch, cancel, new_order, replace
from tradsys.wire import OrderType, Side

ACME = Instrument("ACME", 1, reference_price=100)
ZETA = Instrument("ZETA", 2, reference_price=50)


def test_the_image_is_the_engines_live_orders(tmp_path: Path) -> None:
    with CEngine() as e:
        e.add_instrument(ACME)
        e.add_instrument(ZETA)
        e.process(
            batch(
                new_order(1, 1, 7, Side.SELL, 10, 101),
                new_order(2, 1, 8, Side.BUY, 4, 101),  # fills 4 of order 1
                new_order(3, 2, 7, Side.BUY, 5, 49),
                new_order(4, 2, 9, Side.BUY, 3, 0, order_type=OrderType.STOP, stop_price=60),
                new_order(5, 1, 7, Side.SELL, 2, 105),
                replace(3, 2, 7, 48, 6),
                cancel(5, 1, 7),
            )
        )
        assert write_image(engine_pointer(e), tmp_path, 3, 11, 99) == 3
    img = read_image(tmp_path, 3, 11)
    got = sorted(
        (int(r["order_id"]), int(r["symbol_id"]), int(r["account_id"]), int(r["side"]),
         int(r["price"]), int(r["stop_price"]), int(r["quantity"]), int(r["leaves_qty"]))
        for r in img
    )  # fmt: skip
    assert got == [
        (1, 1, 7, Side.SELL, 101, 0, 10, 6),
        (3, 2, 7, Side.BUY, 48, 0, 6, 6),
        (4, 2, 9, Side.BUY, 0, 60, 3, 3),
    ]


def test_a_bad_image_file_is_refused(tmp_path: Path) -> None:
    with CEngine() as e:
        e.add_instrument(ACME)
        e.process(new_order(1, 1, 7, Side.SELL, 10, 101))
        write_image(engine_pointer(e), tmp_path, 0, 5, 1)
    with pytest.raises(OrderImageError, match="request 5, not 6"):
        read_image(tmp_path, 0, 6)
    with pytest.raises(OrderImageError, match="not an order image of shard 1"):
        read_image(tmp_path, 1, 5)
    data = image_path(tmp_path).read_bytes()
    image_path(tmp_path).write_bytes(data[:-8])
    with pytest.raises(OrderImageError, match="do not hold 1 orders"):
        read_image(tmp_path, 0, 5)
    with pytest.raises(OrderImageError, match="cannot read"):
        read_image(tmp_path / "missing", 0, 5)
