"""Records of a symbol id the sidecar does not know are dropped, counted and named in the
log once per id, on the quiet (scalar) path and the batch path alike; the records of known
symbols around them are still published."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from tests.marketdata.md_rig import md_config
from tradsys.cores.md import SMALL_BATCH, MdSidecar
from tradsys.cores.md_unknown_symbols import IDS_LOGGED_MAX
from tradsys.marketdata.stats import PublishStats
from tradsys.wire import MD_DTYPE, MdKind, Side

UNKNOWN = (901, 902)
RECORDS = 600  # of each unknown id


def stream(known_id: int) -> np.ndarray:
    """Trades of two unknown symbol ids, interleaved with one known symbol's trades."""
    n = 3 * RECORDS
    out = np.zeros(n, MD_DTYPE)
    out["kind"], out["side"], out["price"], out["quantity"] = MdKind.TRADE, Side.BUY, 100, 1
    out["symbol_id"] = np.tile([UNKNOWN[0], known_id, UNKNOWN[1]], RECORDS)
    known = out["symbol_id"] == known_id
    out["seq"][known] = np.arange(1, RECORDS + 1)
    return out


def scalar(sidecar: MdSidecar, records: np.ndarray) -> None:
    """As the loop drains a quiet market: a few records at a time, the scalar path."""
    for a in range(0, len(records), SMALL_BATCH):
        part = records[a : a + SMALL_BATCH]
        sidecar._buf[: len(part)] = part
        assert sidecar._publish_small(len(part))


def batched(sidecar: MdSidecar, records: np.ndarray) -> None:
    """As the loop drains under load: big batches, the batch path."""
    for a in range(0, len(records), 500):
        sidecar.handle(records[a : a + 500])


def unknown_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tradsys.md" and r.levelno == logging.WARNING
    ]


@pytest.mark.parametrize("path", [scalar, batched], ids=["scalar", "batch"])
def test_unknown_symbols_are_named_once_per_id_and_counted(
    ctx: zmq.Context[Any],
    instance: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    path: Any,
) -> None:
    """Before, the scalar path logged a warning for every such record (a flood: 1 200
    here) and the batch path one per batch; neither counted them."""
    config = md_config(instance, tmp_path)
    sidecar = MdSidecar(config)
    sidecar.store.ready[:] = True  # no refresh image: the books start empty
    known = config.instruments[0]
    sidecar.pub = ctx.socket(zmq.PUB)
    sidecar.pub.bind(f"inproc://{instance}-pub")
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.connect(f"inproc://{instance}-pub")  # inproc: connected (and subscribed) at once
    sidecar.pub.setsockopt(zmq.SNDHWM, 0)
    caplog.set_level(logging.WARNING, logger="tradsys.md")
    try:
        path(sidecar, stream(known.symbol_id))
        published = 0
        while sub.poll(0):
            _topic, payload = sub.recv_multipart()
            ids = set(np.frombuffer(payload, MD_DTYPE)["symbol_id"].tolist())
            assert ids == {known.symbol_id}
            published += len(payload) // MD_DTYPE.itemsize
    finally:
        sub.close()
        sidecar.pub.close()
    warnings = unknown_warnings(caplog)
    assert len(warnings) == len(UNKNOWN), warnings
    for symbol_id, line in zip(UNKNOWN, sorted(warnings), strict=True):
        assert f"symbol id {symbol_id}," in line
    assert sidecar.stats.unknown_symbol_records == len(UNKNOWN) * RECORDS
    assert sidecar.stats.doc()["unknown_symbol_records"] == len(UNKNOWN) * RECORDS
    assert published == sum(sidecar.stats.records) == RECORDS  # the known symbol's, all


def test_an_id_named_on_one_path_is_not_named_again_on_the_other(
    instance: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sidecar = MdSidecar(md_config(instance, tmp_path))
    caplog.set_level(logging.WARNING, logger="tradsys.md")
    records = np.zeros(110, MD_DTYPE)
    records["kind"], records["symbol_id"] = MdKind.TRADE, UNKNOWN[0]
    scalar(sidecar, records[:10])  # no known symbol: nothing reaches the (absent) socket
    batched(sidecar, records[10:])
    assert len(unknown_warnings(caplog)) == 1
    assert sidecar.stats.unknown_symbol_records == 110


def test_a_stream_of_garbage_ids_cannot_flood_the_log(
    instance: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Batches of nothing but unknown symbols: before, each was a warning, and then the
    sidecar failed grouping the empty rest (IndexError: it exited and was restarted)."""
    sidecar = MdSidecar(md_config(instance, tmp_path))
    caplog.set_level(logging.WARNING, logger="tradsys.md")
    records = np.zeros(5000, MD_DTYPE)
    records["kind"] = MdKind.TRADE
    records["symbol_id"] = np.arange(100_000, 105_000)
    batched(sidecar, records)
    warnings = unknown_warnings(caplog)
    assert len(warnings) == IDS_LOGGED_MAX + 1  # the ids named, then one line saying so
    assert "not logged" in warnings[-1]
    assert sidecar.stats.unknown_symbol_records == 5000


def test_the_count_is_zero_in_a_fresh_stats_file() -> None:
    assert PublishStats([0]).doc()["unknown_symbol_records"] == 0
