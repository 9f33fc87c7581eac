"""Sequenced, checksummed 64-byte test records, made and checked with numpy.

Record ``seq`` carries the sequence number; every payload word is derived from it, and
the last word is a checksum over the other seven. A lost, duplicated or reordered record
breaks the sequence; a torn one (bytes of two different records, or half-written) breaks
a payload word or the checksum.
"""

from __future__ import annotations

import numpy as np

PAYLOAD = ("a", "b", "c", "d", "e", "f")
RECORD_DTYPE = np.dtype([("seq", "<u8"), *((name, "<u8") for name in PAYLOAD), ("checksum", "<u8")])
assert RECORD_DTYPE.itemsize == 64

# odd multipliers and arbitrary offsets: each payload word is a bijection of seq
_MUL = np.array(
    [0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB,
     0xD6E8FEB86659FD93, 0xA0761D6478BD642F, 0xE7037ED1A0B428DB],
    dtype=np.uint64,
)  # fmt: skip
_ADD = np.array(
    [0x0123456789ABCDEF, 0xFEDCBA9876543210, 0x0F1E2D3C4B5A6978,
     0x8796A5B4C3D2E1F0, 0x1111111111111111, 0xAAAAAAAAAAAAAAAB],
    dtype=np.uint64,
)  # fmt: skip
_CHECK_MUL = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime


def checksum(records: np.ndarray) -> np.ndarray:
    """FNV-style hash of the seven words before ``checksum``, per record."""
    acc = np.full(len(records), 0xCBF29CE484222325, dtype=np.uint64)
    for name in ("seq", *PAYLOAD):
        acc ^= records[name]
        acc *= _CHECK_MUL
    return acc


def make_records(start: int, n: int) -> np.ndarray:
    """Records ``start .. start+n-1``."""
    seq = np.arange(start, start + n, dtype=np.uint64)
    records = np.empty(n, dtype=RECORD_DTYPE)
    records["seq"] = seq
    for i, name in enumerate(PAYLOAD):
        records[name] = seq * _MUL[i] + _ADD[i]
    records["checksum"] = checksum(records)
    return records


def first_bad(records: np.ndarray, start: int) -> int | None:
    """Index of the first record that is not ``start + index`` intact, or None."""
    seq = np.arange(start, start + len(records), dtype=np.uint64)
    bad = records["seq"] != seq
    for i, name in enumerate(PAYLOAD):
        bad |= records[name] != seq * _MUL[i] + _ADD[i]
    bad |= records["checksum"] != checksum(records)
    hits = np.flatnonzero(bad)
    return int(hits[0]) if len(hits) else None


def describe_bad(records: np.ndarray, start: int) -> str:
    """A failure message for the first bad record (for assertions)."""
    i = first_bad(records, start)
    if i is None:
        return "all records intact"
    return (
        f"record {i} of a run from seq {start} is wrong: expected seq {start + i}, got {records[i]}"
    )


def intact(records: np.ndarray) -> np.ndarray:
    """Per record: whether its payload and checksum agree with its own ``seq``."""
    seq = records["seq"]
    ok = records["checksum"] == checksum(records)
    for i, name in enumerate(PAYLOAD):
        ok &= records[name] == seq * _MUL[i] + _ADD[i]
    return ok


class SequenceChecker:
    """Collects popped records into a buffer and checks each full buffer at once.

    ``space(k)`` is where the next pop goes (at most k records); ``took(n)`` counts
    what the pop returned. Every buffer is checked (vectorised) for intact records with
    seq continuing exactly where the previous buffer ended.
    """

    def __init__(self, chunk: int) -> None:
        self._buf = np.empty(chunk, dtype=RECORD_DTYPE)
        self._filled = 0
        self.verified = 0

    @property
    def total(self) -> int:
        return self.verified + self._filled

    def space(self, k: int) -> np.ndarray:
        if self._filled == len(self._buf):
            self.check()
        return self._buf[self._filled : self._filled + k]

    def took(self, n: int) -> None:
        self._filled += n

    def check(self) -> None:
        got = self._buf[: self._filled]
        if first_bad(got, self.verified) is not None:
            raise AssertionError(describe_bad(got, self.verified))
        self.verified += self._filled
        self._filled = 0
