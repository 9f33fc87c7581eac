"""Shared-memory SPSC rings: create/attach, single and batch push/pop, waits, clean-up.

This package knows nothing of orders; it moves fixed-size records between processes.
"""

from tradsys.ring.errors import RingAttachError, RingError, SegmentExistsError
from tradsys.ring.ring import Ring, RingInfo, Role
from tradsys.ring.segment import instance_segments, segment_name
from tradsys.ring.stale import StaleSegment, find_stale, reclaim_stale
from tradsys.ring.wait import POLITE, WaitKind, WaitStrategy

__all__ = [
    "POLITE",
    "Ring",
    "RingAttachError",
    "RingError",
    "RingInfo",
    "Role",
    "SegmentExistsError",
    "StaleSegment",
    "WaitKind",
    "WaitStrategy",
    "find_stale",
    "instance_segments",
    "reclaim_stale",
    "segment_name",
]
