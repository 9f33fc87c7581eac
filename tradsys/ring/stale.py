"""Finding and reclaiming ring segments whose creator died without unlinking them.

A process killed with SIGKILL cannot clean up, so its segments outlive it in /dev/shm.
Each ring header records its creator's pid and start time; a segment whose creator no
longer runs (or whose pid now belongs to another process) is stale and safe to remove.
"""

from __future__ import annotations

from dataclasses import dataclass

from tradsys._native import ffi, lib
from tradsys.ring.errors import RingAttachError
from tradsys.ring.segment import Segment, instance_segments, process_alive, unlink_quietly


@dataclass(frozen=True)
class StaleSegment:
    name: str
    creator_pid: int


def find_stale(instance: str | None = None) -> list[StaleSegment]:
    """The ring segments (of one instance, or all) whose creator is gone.

    Segments that are not rings are left alone: this module cannot judge them.
    """
    stale = []
    for name in instance_segments(instance):
        try:
            segment = Segment.attach(name)
        except RingAttachError:
            continue  # removed meanwhile, or empty
        try:
            if segment.size < lib.TS_RING_HEADER_SIZE:
                continue
            base = ffi.from_buffer(segment.memory)
            raw = ffi.new("ts_ring_info *")
            lib.ts_ring_read_info(base, raw)
            ffi.release(base)
            if raw.magic != lib.TS_RING_MAGIC:
                continue
            if not process_alive(raw.creator_pid, raw.creator_start_us):
                stale.append(StaleSegment(name, raw.creator_pid))
        finally:
            segment.close()
    return stale


def reclaim_stale(instance: str | None = None) -> list[str]:
    """Unlink every stale ring segment (of one instance, or all); return their names."""
    return unlink_quietly([s.name for s in find_stale(instance)])
