"""Packing a drained batch of market-data records into PUB messages, vectorised.

A batch from a shard's md ring is grouped by (symbol, channel) with one stable sort, so
each group keeps its sequence order; each group becomes one message (or several of at
most ``max_records`` records). Under load a batch holds thousands of records and a few
dozen messages leave; when quiet a batch is one record and so is its message. No Python
object is made per record: the payloads are slices of one bytes object.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from tradsys.marketdata.protocol import CHANNELS, Channel, topic
from tradsys.wire import RECORD_SIZE, MdKind

# kind -> channel number (index in CHANNELS); -1 for kinds that are not published
_CHANNEL_NO = np.full(256, -1, np.int64)
for _kind, _ch in ((MdKind.TRADE, Channel.TRADE), (MdKind.BBO, Channel.BBO),
                   (MdKind.L2_UPDATE, Channel.L2)):  # fmt: skip
    _CHANNEL_NO[int(_kind)] = CHANNELS.index(_ch)


class FramePacker:
    """Topic table and grouping for a fixed set of symbols (dense indices)."""

    def __init__(self, symbols: list[str], max_records: int = 1024) -> None:
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        self.max_records = max_records
        self.topics = [topic(ch, sym) for sym in symbols for ch in CHANNELS]

    def frames(self, batch: np.ndarray, sym: np.ndarray) -> Iterator[tuple[bytes, memoryview]]:
        """(topic, payload) for every message of a batch of publishable records;
        ``sym`` holds their dense symbol indices."""
        n = len(batch)
        if n == 0:
            return
        key = sym.astype(np.int64) * len(CHANNELS) + _CHANNEL_NO[batch["kind"]]
        raw = memoryview(batch.tobytes()) if n == 1 else None
        if raw is not None:
            yield self.topics[int(key[0])], raw
            return
        order = np.argsort(key, kind="stable")
        key = key[order]
        raw = memoryview(batch[order].tobytes())
        bounds = np.flatnonzero(key[1:] != key[:-1]) + 1
        starts = [0, *bounds.tolist()]
        ends = [*bounds.tolist(), n]
        step = self.max_records
        topics = self.topics
        for s, e in zip(starts, ends, strict=True):
            t = topics[int(key[s])]
            for a in range(s, e, step):
                b = min(a + step, e)
                yield t, raw[a * RECORD_SIZE : b * RECORD_SIZE]
