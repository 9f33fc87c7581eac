"""Stage-latency histograms in shared memory (``native/latency_hist.h``): create, attach,
copy out, and reclaim a dead creator's segment.

Each process that records stage latencies (a shard worker, the gateway) writes into its
own segment; the supervisor creates them all (``/tradsys.<instance>.lat.<shard>`` and
``/tradsys.<instance>.latgw.0``) and keeps them across restarts, so a crashed worker's
figures survive it and the supervisor's stop unlinks every one. Readers (/metrics,
``tradsys latency``) attach and copy a histogram's counts out: the copy is what the
HdrHistogram code and the Prometheus export work on (:mod:`tradsys.metrics.latency_export`).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradsys._native import ffi, lib
from tradsys.ring.errors import RingAttachError
from tradsys.ring.segment import (
    MappedStruct,
    Segment,
    instance_segments,
    process_alive,
    process_start_us,
    segment_name,
    unlink_quietly,
)

HEADER_SIZE: int = lib.TS_LAT_HEADER_SIZE
COUNTS_LEN: int = lib.TS_LAT_COUNTS_LEN
HIGHEST_NS: int = lib.TS_LAT_HIGHEST
LOWEST_NS: int = lib.TS_LAT_LOWEST
SIGNIFICANT_DIGITS: int = lib.TS_LAT_SIGNIFICANT_DIGITS
HIST_SIZE: int = ffi.sizeof("ts_lat_hist")
_HIST_HEAD = struct.Struct("<5Q")  # total, sum_ns, min_ns, max_ns, overflow
_SEG_HEAD = struct.Struct("<QIIIIiIQ")  # magic, version, n_hists, role, id, pid, pad, start

ROLE_WORKER: int = lib.TS_LAT_ROLE_WORKER
ROLE_GATEWAY: int = lib.TS_LAT_ROLE_GATEWAY
# histogram index → stage label, per role (the enums of latency_hist.h)
WORKER_STAGES: tuple[str, ...] = ("gateway_to_shard", "shard_to_matched", "matched_to_event")
GATEWAY_STAGES: tuple[str, ...] = ("order_to_ack", "amend_to_answer")
STAGES_OF_ROLE: dict[int, tuple[str, ...]] = {
    ROLE_WORKER: WORKER_STAGES,
    ROLE_GATEWAY: GATEWAY_STAGES,
}
SHARD_ROLE_NAME = "lat"
GATEWAY_ROLE_NAME = "latgw"


def shard_segment_name(instance: str, shard_id: int) -> str:
    """Where shard ``shard_id``'s worker records its stages."""
    return segment_name(instance, SHARD_ROLE_NAME, shard_id)


def gateway_segment_name(instance: str) -> str:
    """Where the gateway records its stage."""
    return segment_name(instance, GATEWAY_ROLE_NAME, 0)


@dataclass(frozen=True)
class HistogramCopy:
    """One histogram's figures at one instant: HdrHistogram's counts array and the
    totals kept beside it. ``total`` may differ from ``counts.sum()`` by what was being
    recorded during the copy; exports use the counts, so they agree with themselves."""

    counts: np.ndarray  # uint64, COUNTS_LEN
    total: int
    sum_ns: int
    min_ns: int  # 0 when empty
    max_ns: int
    overflow: int

    @property
    def count(self) -> int:
        return int(self.counts.sum())


class LatencySegment(MappedStruct):
    """A mapped stage-latency segment (see the module docstring)."""

    def __init__(self, segment: Segment) -> None:
        self._segment = segment
        self._base = ffi.from_buffer(segment.memory)
        self.cdata: Any = ffi.cast("ts_lat_segment *", self._base)
        self.name = segment.name

    @classmethod
    def create(cls, name: str, role: int, ident: int) -> LatencySegment:
        """Create and format the segment for a process of ``role`` (this handle owns it
        and unlinks it on close); the creator is this process, for stale reclaim."""
        stages = STAGES_OF_ROLE.get(role)
        if stages is None:
            raise ValueError(f"latency segment {name}: unknown role {role}")
        size = int(lib.ts_lat_segment_size(len(stages)))
        segment = Segment.create(name, size)
        try:
            handle = cls(segment)
            rc = lib.ts_lat_segment_init(
                handle._base, size, len(stages), role, ident, os.getpid(), process_start_us()
            )
            if rc != 0:
                raise ValueError(f"latency segment {name}: cannot format {size} bytes")
            return handle
        except BaseException:
            segment.close()
            raise

    @classmethod
    def attach(cls, name: str) -> LatencySegment:
        """Map an existing segment, refusing one that is not a latency segment of this
        version and layout."""
        segment = Segment.attach(name)
        try:
            base = ffi.from_buffer(segment.memory)
            ok = lib.ts_lat_segment_check(base, segment.size) > 0
            ffi.release(base)
            if not ok:
                raise RingAttachError(
                    f"cannot attach to latency segment {name}: not a stage-latency segment "
                    "of this version (or not initialised yet)"
                )
            return cls(segment)
        except BaseException:
            segment.close()
            raise

    @property
    def role(self) -> int:
        return int(self.cdata.role)

    @property
    def ident(self) -> int:
        return int(self.cdata.id)

    @property
    def stages(self) -> tuple[str, ...]:
        """The label of each histogram, in segment order."""
        return STAGES_OF_ROLE.get(self.role, ())[: int(self.cdata.n_hists)]

    def histogram(self, index: int) -> HistogramCopy:
        """A copy of histogram ``index`` (counts first, then the totals)."""
        n = int(self.cdata.n_hists)
        if not 0 <= index < n:
            raise IndexError(f"{self.name} holds {n} histograms, not #{index}")
        offset = HEADER_SIZE + index * HIST_SIZE
        memory = self._segment.memory
        counts = np.frombuffer(memory, dtype="<u8", count=COUNTS_LEN, offset=offset + 64).copy()
        total, sum_ns, min_ns, max_ns, overflow = _HIST_HEAD.unpack_from(memory, offset)
        if min_ns == 2**64 - 1:
            min_ns = 0
        return HistogramCopy(counts, total, sum_ns, min_ns, max_ns, overflow)

    def histograms(self) -> dict[str, HistogramCopy]:
        """Every histogram of the segment, by stage label."""
        return {stage: self.histogram(i) for i, stage in enumerate(self.stages)}

    # ---- life cycle ----------------------------------------------------------------------

    # close(), closed and the context manager: MappedStruct


def attach_if_present(name: str) -> LatencySegment | None:
    """The segment if the supervisor made it, else None: a process started without one
    (a test rig, an instance run by hand) simply records no stage latencies."""
    try:
        return LatencySegment.attach(name)
    except RingAttachError:
        return None


def find_stale_latency(instance: str | None = None) -> list[str]:
    """Latency segments (of one instance, or all) whose creator no longer runs: a
    supervisor killed before its stop could unlink them."""
    stale = []
    for name in instance_segments(instance):
        role = name.rsplit(".", 2)[-2]
        if role not in (SHARD_ROLE_NAME, GATEWAY_ROLE_NAME):
            continue
        try:
            segment = Segment.attach(name)
        except RingAttachError:
            continue  # removed meanwhile, or empty
        try:
            if segment.size < HEADER_SIZE:
                continue
            magic, _, _, _, _, pid, _, start_us = _SEG_HEAD.unpack_from(segment.memory, 0)
            if magic == lib.TS_LAT_MAGIC and not process_alive(pid, start_us):
                stale.append(name)
        finally:
            segment.close()
    return stale


def reclaim_stale_latency(instance: str | None = None) -> list[str]:
    """Unlink every stale latency segment (see :func:`find_stale_latency`)."""
    return unlink_quietly(find_stale_latency(instance))
