"""The stage-latency segment's life: created owner-only under the instance's name,
attached and read by others, unlinked by its creator, refused when it is something else,
and reclaimed when its creator died without unlinking it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tradsys._native import ffi, lib
from tradsys.metrics.latency_segment import (
    GATEWAY_STAGES,
    ROLE_GATEWAY,
    ROLE_WORKER,
    WORKER_STAGES,
    LatencySegment,
    find_stale_latency,
    gateway_segment_name,
    reclaim_stale_latency,
    shard_segment_name,
)
from tradsys.ring.errors import RingAttachError
from tradsys.ring.segment import Segment, process_start_us


def shm_path(name: str) -> Path:
    return Path("/dev/shm") / name.lstrip("/")


def test_create_attach_read_close_unlinks(instance: str) -> None:
    name = shard_segment_name(instance, 3)
    assert name == f"/tradsys.{instance}.lat.3"
    with LatencySegment.create(name, ROLE_WORKER, 3) as seg:
        assert stat.S_IMODE(shm_path(name).stat().st_mode) == 0o600
        assert seg.stages == WORKER_STAGES and seg.ident == 3
        hist = lib.ts_lat_segment_hist(seg.cdata, 2)
        lib.ts_lat_record(hist, 1500, 4)
        with LatencySegment.attach(name) as reader:
            copies = reader.histograms()
            assert list(copies) == list(WORKER_STAGES)
            assert copies["matched_to_event"].total == 4
            assert copies["matched_to_event"].min_ns == 1500
            assert copies["gateway_to_shard"].total == 0
            assert copies["gateway_to_shard"].min_ns == 0  # empty: no min
            with pytest.raises(IndexError, match="3 histograms"):
                reader.histogram(3)
        assert shm_path(name).exists()  # a reader's close only unmaps
    assert not shm_path(name).exists()


def test_gateway_segment_has_its_stage(instance: str) -> None:
    with LatencySegment.create(gateway_segment_name(instance), ROLE_GATEWAY, 0) as seg:
        assert seg.stages == GATEWAY_STAGES


def test_unknown_role_is_refused_and_leaves_nothing(instance: str) -> None:
    name = shard_segment_name(instance, 0)
    with pytest.raises(ValueError, match="unknown role 9"):
        LatencySegment.create(name, 9, 0)
    assert not shm_path(name).exists()


def test_attach_refuses_what_is_not_a_latency_segment(instance: str) -> None:
    name = shard_segment_name(instance, 0)
    other = Segment.create(name, 64 * 1024)  # zeroes: no magic
    try:
        with pytest.raises(RingAttachError, match="not a stage-latency segment"):
            LatencySegment.attach(name)
    finally:
        other.close()
    with pytest.raises(RingAttachError, match="does not exist"):
        LatencySegment.attach(name)


def test_stale_segment_of_a_dead_creator_is_reclaimed(instance: str) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_start = process_start_us(dead.pid)
    dead.wait()
    stale_name = shard_segment_name(instance, 0)
    live_name = shard_segment_name(instance, 1)
    raw = Segment.create(stale_name, int(lib.ts_lat_segment_size(3)))
    raw.owner = False  # stands for the dead creator's: this handle must not unlink it
    live = LatencySegment.create(live_name, ROLE_WORKER, 1)
    try:
        base = ffi.from_buffer(raw.memory)
        rc = lib.ts_lat_segment_init(base, raw.size, 3, ROLE_WORKER, 0, dead.pid, dead_start)
        ffi.release(base)
        assert rc == 0
        assert find_stale_latency(instance) == [stale_name]
        assert reclaim_stale_latency(instance) == [stale_name]
        assert not shm_path(stale_name).exists()
        assert shm_path(live_name).exists()  # its creator (this process) lives
    finally:
        raw.close()
        live.close()
    assert os.path.exists("/dev/shm") and not shm_path(live_name).exists()


def test_tradsys_shm_lists_and_reclaims_stale_latency_segments(
    instance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tradsys.cli import main

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_start = process_start_us(dead.pid)
    dead.wait()
    name = gateway_segment_name(instance)
    raw = Segment.create(name, int(lib.ts_lat_segment_size(1)))
    raw.owner = False
    try:
        base = ffi.from_buffer(raw.memory)
        lib.ts_lat_segment_init(base, raw.size, 1, ROLE_GATEWAY, 0, dead.pid, dead_start)
        ffi.release(base)
        assert main(["shm", "ls", "--instance", instance]) == 0
        assert f"{name}  (stale: creator gone)" in capsys.readouterr().out
        assert main(["shm", "reclaim", "--instance", instance]) == 0
        assert f"removed stale segment {name}" in capsys.readouterr().out
        assert not shm_path(name).exists()
    finally:
        raw.close()
