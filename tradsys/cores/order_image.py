"""Order images: a shard's live orders, written by its worker for a restarting gateway.

A gateway that died lost its table of the orders it had sent. The engines still hold
them, so a new gateway asks each worker for an image (``WorkerControl.request_order_image``)
and rebuilds its table from it (``tradsys.gateway.recovery``). The worker answers at a
quiescent point with its inbound ring empty (``native/worker.h``), so the image is exact
as of the last event in its event ring; it is written to ``orders.image`` in the shard's
data directory (a temporary file renamed into place, so a reader never sees half of one)
and then ``order_images_served`` is set to the request it answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tradsys._native import ffi, lib
from tradsys.files import replace_file

IMAGE_FILE = "orders.image"
IMAGE_MAGIC = 0x31474D4944524F54
"""``TS_ORDER_IMAGE_MAGIC`` ("TORDIMG1"), which cffi does not export (a 64-bit define)."""

LIVE_ORDER_DTYPE = np.dtype(
    {
        "names": [
            "order_id",
            "symbol_id",
            "account_id",
            "side",
            "order_type",
            "price",
            "stop_price",
            "quantity",
            "leaves_qty",
        ],
        "formats": ["<u8", "<u4", "<u4", "u1", "u1", "<i8", "<i8", "<i8", "<i8"],
        "offsets": [0, 8, 12, 16, 17, 24, 32, 40, 48],
        "itemsize": 56,
    }
)
"""``ts_live_order`` (native/order_image.h)."""

HEADER_DTYPE = np.dtype(
    {
        "names": ["magic", "shard_id", "request", "last_exec_id", "count"],
        "formats": ["<u8", "<u4", "<u4", "<u8", "<u8"],
        "offsets": [0, 8, 12, 16, 24],
        "itemsize": 64,
    }
)
"""``ts_order_image_header``."""


class OrderImageError(Exception):
    """An image file that is missing, torn or not the one asked for."""


def image_path(shard_dir: str | Path) -> Path:
    return Path(shard_dir) / IMAGE_FILE


def write_image(
    engine: Any, shard_dir: str | Path, shard_id: int, request: int, last_exec_id: int
) -> int:
    """Write the engine's live orders (``engine``: a ``ts_engine *``) for ``request``;
    returns how many. The worker must be quiescent (it returned IMAGE_DUE)."""
    n = int(lib.ts_order_image_count(engine))
    records = np.zeros(n, dtype=LIVE_ORDER_DTYPE)
    if n:
        buf = ffi.cast("ts_live_order *", ffi.from_buffer(records))
        if int(lib.ts_order_image(engine, buf, n)) != n:
            raise OrderImageError(f"shard {shard_id}: the order image changed size")
    header = np.zeros(1, dtype=HEADER_DTYPE)
    header[0] = (IMAGE_MAGIC, shard_id, request, last_exec_id, n)
    path = image_path(shard_dir)
    replace_file(path, header.tobytes() + records.tobytes())
    return n


def read_image(shard_dir: str | Path, shard_id: int, request: int) -> np.ndarray[Any, Any]:
    """The records of the image answering ``request``."""
    path = image_path(shard_dir)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OrderImageError(f"shard {shard_id}: cannot read {path}: {exc}") from None
    if len(data) < HEADER_DTYPE.itemsize:
        raise OrderImageError(f"{path}: {len(data)} bytes, shorter than its header")
    h = np.frombuffer(data, HEADER_DTYPE, count=1)[0]
    if int(h["magic"]) != IMAGE_MAGIC or int(h["shard_id"]) != shard_id:
        raise OrderImageError(f"{path}: not an order image of shard {shard_id}")
    if int(h["request"]) != request:
        raise OrderImageError(f"{path}: answers request {int(h['request'])}, not {request}")
    n = int(h["count"])
    if len(data) != HEADER_DTYPE.itemsize + n * LIVE_ORDER_DTYPE.itemsize:
        raise OrderImageError(f"{path}: {len(data)} bytes do not hold {n} orders")
    return np.frombuffer(data, LIVE_ORDER_DTYPE, count=n, offset=HEADER_DTYPE.itemsize).copy()
