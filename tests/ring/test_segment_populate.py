"""A segment is mapped whole when it is created and when it is attached, so that no
ring's first records take page faults on the hot path (``tradsys/ring/segment.py``)."""

from __future__ import annotations

import os

from tests.resident import address_of, resident_bytes
from tradsys.ring.segment import Segment

SIZE = 4 << 20


def test_a_segment_is_mapped_whole_on_create_and_on_attach() -> None:
    name = f"/tradsys.populate{os.getpid()}.test.0"
    made = Segment.create(name, SIZE)
    try:
        assert resident_bytes(address_of(made.memory)) == SIZE
        other = Segment.attach(name)
        try:
            assert resident_bytes(address_of(other.memory)) == SIZE
        finally:
            other.close()
    finally:
        made.close()
