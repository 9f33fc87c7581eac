"""The md feed's heartbeat: every symbol's last published seqs, so a subscriber notices a
lost last message on a quiet symbol and tells a silent market from a dead feed
(docs/marketdata.md, "Heartbeat")."""

from __future__ import annotations

import time
from typing import Any

from tradsys.marketdata.l2store import L2Store
from tradsys.marketdata.protocol import Heartbeat, heartbeat_encoder


def heartbeat_payload(
    store: L2Store, names: list[str], symbol_ids: list[int], feed_id: int, interval_ms: int
) -> bytes:
    """The msgpack Heartbeat of the seqs in ``store`` now."""
    s = store
    # (symbol, symbol_id, trade, l2, bbo, status) tuples, which msgspec encodes as the
    # array-like SymbolSeqs they decode to: a struct per symbol cost 250 µs of the
    # sidecar's loop per heartbeat with 1 000 symbols, the tuples 77 µs
    # (tests/marketdata/test_heartbeat_rows.py holds the bytes equal)
    rows: list[Any] = list(
        zip(
            names,
            symbol_ids,
            s.trade_seq.tolist(),
            s.l2_seq.tolist(),
            s.bbo_seq.tolist(),
            s.status_seq.tolist(),
            strict=True,
        )
    )
    return heartbeat_encoder.encode(Heartbeat(time.time_ns(), feed_id, interval_ms, rows))
