"""A journal records the matching rules its commands were processed under and replays
under them: a segment written before market-type orders could carry a protection price
(rules 0, when such an order was INVALID_PRICE) rebuilds the books its clients were told
of, not what today's rules would make of the same commands (native/book.h,
TS_RULES_VERSION)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.journal.helpers import SHARD, journal
from tradsys._native import ffi, lib
from tradsys.journal import JournalCorruptError, JournalWriter, list_segments, replay
from tradsys.matching import Instrument
from tradsys.matching.commands import Commands, batch, new_order
from tradsys.wire import EventKind, OrderType, Side, TimeInForce

ACME = Instrument("ACME", 1, tick_size=1, lot_size=1, min_qty=1, reference_price=100)
RULES_OFFSET, CRC_OFFSET = 40, 60


def _stream() -> Commands:
    """An ask, then a market buy with a protection price: it trades under rules 1 and
    was refused (INVALID_PRICE) under rules 0."""
    return batch(
        new_order(1, 1, 1, Side.SELL, 5, 100),
        new_order(2, 1, 2, Side.BUY, 5, 105, OrderType.MARKET, tif=TimeInForce.IOC),
    )


def _set_rules(segment: Path, version: int) -> None:
    """Rewrite a segment header's rules version, with its checksum (as an older build,
    or a newer one, would have written it)."""
    data = bytearray(segment.read_bytes())
    struct.pack_into("<I", data, RULES_OFFSET, version)
    crc = lib.ts_crc32c(0, ffi.from_buffer(bytes(data[:CRC_OFFSET])), CRC_OFFSET)
    struct.pack_into("<I", data, CRC_OFFSET, crc)
    segment.write_bytes(bytes(data))


def _written(tmp_path: Path) -> Path:
    journal(tmp_path, _stream(), instruments=[ACME])
    (segment,) = list_segments(tmp_path, SHARD)
    return segment.path


def test_a_segment_records_the_rules_it_was_written_under(tmp_path: Path) -> None:
    segment = _written(tmp_path)
    (version,) = struct.unpack_from("<I", segment.read_bytes(), RULES_OFFSET)
    assert version == lib.TS_RULES_VERSION == 1


def test_todays_segment_replays_under_todays_rules(tmp_path: Path) -> None:
    _written(tmp_path)
    engine = replay(tmp_path, SHARD, [ACME])
    assert engine.live_orders() == 0  # the market buy took the ask


def test_an_older_segment_replays_under_its_own_rules(tmp_path: Path) -> None:
    _set_rules(_written(tmp_path), 0)
    engine = replay(tmp_path, SHARD, [ACME])
    assert engine.live_orders() == 1  # the market buy was refused: the ask rests
    # and the engine applies today's rules to what comes after the replay
    out = engine.process(_stream()[1:].copy())
    assert out.events["kind"].tolist() == [EventKind.ACCEPTED, EventKind.TRADE, EventKind.TRADE]


def test_a_segment_of_newer_rules_is_refused_by_name(tmp_path: Path) -> None:
    _set_rules(_written(tmp_path), 2)
    with pytest.raises(JournalCorruptError, match="matching rules version 2"):
        replay(tmp_path, SHARD, [ACME])


def test_appending_after_an_upgrade_starts_a_segment_of_todays_rules(tmp_path: Path) -> None:
    """A worker restarted on a new build goes on journaling where the old one stopped: in
    a segment of its own, or the commands it appended would be replayed under the old
    segment's rules (here: the protected market buy refused, the ask left resting)."""
    stream = _stream()
    journal(tmp_path, stream[:1].copy(), instruments=[ACME])
    (old,) = list_segments(tmp_path, SHARD)
    _set_rules(old.path, 0)
    engine = replay(tmp_path, SHARD, [ACME])
    live = engine.process(stream[1:].copy())
    assert engine.live_orders() == 0 and EventKind.TRADE in live.events["kind"]
    with JournalWriter(tmp_path, SHARD, next_seq=2) as writer:
        writer.append(stream[1:].copy())
    segments = list_segments(tmp_path, SHARD)
    assert [s.path == old.path for s in segments] == [True, False]
    (version,) = struct.unpack_from("<I", segments[1].path.read_bytes(), RULES_OFFSET)
    assert version == lib.TS_RULES_VERSION
    assert replay(tmp_path, SHARD, [ACME]).digest() == engine.digest()
