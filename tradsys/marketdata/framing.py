"""Packing a drained batch of market-data records into PUB messages, vectorised.

A batch from a shard's md ring is grouped by (symbol, channel) with one stable sort on a
small integer key (numpy's radix sort), so each group keeps its sequence order; each
group becomes one message (or several of at most ``max_records`` records). Under load a
batch holds thousands of records and a few dozen messages leave; when quiet a batch is
one record and so is its message. No Python object is made per record: the payloads are
slices of one bytes object. The grouping also tells the sidecar each group's last
sequence number, so its book keeping needs no per-record work either.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from tradsys.marketdata.protocol import CHANNELS, Channel, topic
from tradsys.wire import MD_DTYPE, RECORD_SIZE, MdKind

N_CHANNELS = len(CHANNELS)
L2_CHANNEL = CHANNELS.index(Channel.L2)
STATUS_CHANNEL = CHANNELS.index(Channel.STATUS)
# kind -> channel number (index in CHANNELS); only publishable kinds reach the packer
CHANNEL_NO = np.zeros(256, np.uint16)
for _kind, _ch in ((MdKind.TRADE, Channel.TRADE), (MdKind.BBO, Channel.BBO),
                   (MdKind.L2_UPDATE, Channel.L2), (MdKind.STATUS, Channel.STATUS)):  # fmt: skip
    CHANNEL_NO[int(_kind)] = CHANNELS.index(_ch)


@dataclass(frozen=True)
class Grouped:
    """A batch sorted by (symbol, channel): ``records[starts[g]:ends[g]]`` is group g,
    whose key is ``keys[g]`` (= symbol index * N_CHANNELS + channel number)."""

    records: np.ndarray
    raw: memoryview
    keys: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    channel: np.ndarray  # per record (sorted order)
    sym: np.ndarray  # per record (sorted order)


def take_records(records: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``records[index]`` for MD_DTYPE rows, as rows of eight uint64 through np.take:
    3-4x faster than a fancy index of the 2-D view, and 10x a boolean mask of the
    structured array (measured on 32 k-record batches)."""
    n = len(index)
    return np.take(records.view(np.uint64).reshape(-1, 8), index, axis=0).view(MD_DTYPE).reshape(n)


def group(batch: np.ndarray, sym: np.ndarray) -> Grouped:
    """Sort a batch of publishable records by (symbol, channel), stably."""
    n = len(batch)
    channel = CHANNEL_NO[batch["kind"]]
    key = sym.astype(np.uint32) * N_CHANNELS + channel
    if n > 1 and key.max() < 1 << 16:
        key = key.astype(np.uint16)  # a radix sort
    if n == 1 or bool((key[1:] == key[:-1]).all()):
        records = batch
    else:
        order = np.argsort(key, kind="stable")
        key, channel, sym = key[order], channel[order], sym[order]
        records = take_records(batch, order)
    bounds = np.flatnonzero(key[1:] != key[:-1]) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [n]))
    # no copy: ZeroMQ copies each payload as it is sent (send's default copy=True)
    raw = np.ascontiguousarray(records).view(np.uint8).data
    return Grouped(records, raw, key[starts], starts, ends, channel, sym)


class FramePacker:
    """The topic table for a fixed set of symbols (dense indices), and the messages of
    a grouped batch."""

    def __init__(self, symbols: list[str], max_records: int = 1024) -> None:
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        self.max_records = max_records
        self.topics = [topic(ch, sym) for sym in symbols for ch in CHANNELS]

    def spans(self, g: Grouped) -> Iterator[tuple[int, int, int]]:
        """(key, first, end) record indices of every message of a grouped batch."""
        step = self.max_records
        for k, s, e in zip(g.keys.tolist(), g.starts.tolist(), g.ends.tolist(), strict=True):
            for a in range(s, e, step):
                yield k, a, min(a + step, e)

    def frames(self, g: Grouped) -> Iterator[tuple[bytes, memoryview]]:
        """(topic, payload) for every message of a grouped batch."""
        topics, raw = self.topics, g.raw
        for k, a, b in self.spans(g):
            yield topics[k], raw[a * RECORD_SIZE : b * RECORD_SIZE]
