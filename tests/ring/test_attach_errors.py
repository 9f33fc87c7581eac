"""Attaching refuses anything that is not the expected ring; stale rings are found."""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Iterator

import posix_ipc
import psutil
import psutil._pslinux as psutil_linux
import pytest

from tests.conftest import Children, RingFactory
from tests.ring.child_processes import hold_a_ring
from tradsys._native import ffi, lib
from tradsys.ring import (
    Ring,
    RingAttachError,
    StaleSegment,
    find_stale,
    instance_segments,
    reclaim_stale,
)
from tradsys.wire import LAYOUT_VERSION

CHILD_TIMEOUT = 60.0


class RawSegments:
    """Plain shared-memory segments with chosen bytes, unlinked at teardown."""

    def __init__(self) -> None:
        self._names: list[str] = []

    def make(self, name: str, content: bytes, size: int | None = None) -> None:
        size = len(content) if size is None else size
        shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=size)
        self._names.append(name)
        try:
            if size:
                with mmap.mmap(shm.fd, size) as memory:
                    memory[: len(content)] = content
        finally:
            shm.close_fd()

    def unlink_all(self) -> None:
        for name in self._names:
            with contextlib.suppress(posix_ipc.ExistentialError):
                posix_ipc.unlink_shared_memory(name)


@pytest.fixture
def raw(instance: str) -> Iterator[RawSegments]:
    segments = RawSegments()
    try:
        yield segments
    finally:
        segments.unlink_all()


def ring_image(capacity: int, creator_pid: int = 1, creator_start_us: int = 0) -> bytes:
    """The bytes of a freshly initialised ring of 64-byte slots (header, empty slots)."""
    size = lib.ts_ring_bytes_needed(64, capacity)
    block = bytearray(size)
    status = lib.ts_ring_init(
        ffi.from_buffer(block), size, 64, capacity, LAYOUT_VERSION, creator_pid, creator_start_us
    )
    assert status == lib.TS_RING_OK
    return bytes(block)


def attach(name: str, **kwargs: object) -> Ring:
    args: dict = {"slot_size": 64, "layout_version": LAYOUT_VERSION, **kwargs}
    return Ring.attach(name, **args)


# ---- refusals -----------------------------------------------------------------------------


def test_missing_segment(rings: RingFactory) -> None:
    name = rings.name()
    with pytest.raises(RingAttachError, match=rf"{name} does not exist"):
        attach(name)


def test_wrong_layout_version(rings: RingFactory) -> None:
    ring = rings.create(capacity=8, layout_version=LAYOUT_VERSION + 1)
    with pytest.raises(
        RingAttachError,
        match=rf"{ring.name}.*layout version {LAYOUT_VERSION + 1}, expected {LAYOUT_VERSION}",
    ):
        attach(ring.name)


def test_wrong_slot_size(rings: RingFactory) -> None:
    ring = rings.create(capacity=8, slot_size=128)
    with pytest.raises(RingAttachError, match=rf"{ring.name}.*128-byte slots, expected 64"):
        attach(ring.name)


def test_wrong_capacity(rings: RingFactory) -> None:
    ring = rings.create(capacity=16)
    with pytest.raises(RingAttachError, match=rf"{ring.name}.*capacity 16, expected 32"):
        attach(ring.name, capacity=32)
    assert rings.attach(ring.name, capacity=16).capacity == 16, "the right capacity attaches"


def test_not_a_ring(rings: RingFactory, raw: RawSegments) -> None:
    name = rings.name()
    raw.make(name, bytes(range(256)) * 16)
    with pytest.raises(RingAttachError, match=rf"{name}.*not a TradSys ring \(bad magic\)"):
        attach(name)


def test_zeroed_segment_is_not_initialised(rings: RingFactory, raw: RawSegments) -> None:
    name = rings.name()
    raw.make(name, bytes(4096))
    with pytest.raises(RingAttachError, match=rf"{name}.*bad magic.*not initialised"):
        attach(name)


def test_segment_smaller_than_a_header(rings: RingFactory, raw: RawSegments) -> None:
    name = rings.name()
    raw.make(name, b"\xff" * 100)
    with pytest.raises(RingAttachError, match=rf"{name}.*100 bytes, too small"):
        attach(name)


def test_segment_smaller_than_its_slots(rings: RingFactory, raw: RawSegments) -> None:
    # A valid header for 16 slots, but only 4 slots' worth of memory behind it.
    name = rings.name()
    image = ring_image(capacity=16)
    truncated = image[: lib.TS_RING_HEADER_SIZE + 4 * 64]
    raw.make(name, truncated)
    with pytest.raises(RingAttachError, match=rf"{name}.*{len(truncated)} bytes, too small"):
        attach(name)


def test_empty_segment(rings: RingFactory, raw: RawSegments) -> None:
    name = rings.name()
    raw.make(name, b"", size=0)
    with pytest.raises(RingAttachError, match=rf"{name} is empty"):
        attach(name)


def test_a_good_raw_image_attaches(rings: RingFactory, raw: RawSegments) -> None:
    # The control for the refusals above: the same route with a valid image works.
    name = rings.name()
    raw.make(name, ring_image(capacity=16))
    ring = attach(name, capacity=16)
    try:
        assert ring.capacity == 16 and ring.push(bytes(64))
    finally:
        ring.close()


def test_failed_attach_does_not_unlink(rings: RingFactory) -> None:
    ring = rings.create(capacity=8, slot_size=128)
    with pytest.raises(RingAttachError):
        attach(ring.name)
    assert ring.name in instance_segments(rings.instance)


# ---- stale segments ---------------------------------------------------------------------


@pytest.mark.multiprocess
def test_ring_of_a_killed_creator_is_stale(rings: RingFactory, children: Children) -> None:
    name = rings.name()
    created, release = children.ctx.Event(), children.ctx.Event()
    proc = children.start(hold_a_ring, name, created, release)
    assert created.wait(CHILD_TIMEOUT), "the child never created its ring"
    assert find_stale(rings.instance) == [], "the creator is alive: not stale"
    proc.kill()
    proc.join(CHILD_TIMEOUT)
    assert proc.exitcode == -9
    assert instance_segments(rings.instance) == [name], "SIGKILL left the segment behind"
    assert find_stale(rings.instance) == [StaleSegment(name, proc.pid)]
    assert reclaim_stale(rings.instance) == [name]
    assert instance_segments(rings.instance) == []
    assert find_stale(rings.instance) == []


@pytest.mark.multiprocess
def test_ring_of_a_live_creator_is_not_stale(rings: RingFactory, children: Children) -> None:
    name = rings.name()
    created, release = children.ctx.Event(), children.ctx.Event()
    proc = children.start(hold_a_ring, name, created, release)
    assert created.wait(CHILD_TIMEOUT)
    mine = rings.create(capacity=8)
    assert find_stale(rings.instance) == []
    assert reclaim_stale(rings.instance) == []
    assert instance_segments(rings.instance) == sorted([name, mine.name])
    release.set()
    proc.join(CHILD_TIMEOUT)
    assert proc.exitcode == 0
    assert instance_segments(rings.instance) == [mine.name], "a clean exit unlinks"


def test_a_wall_clock_step_does_not_make_a_live_creator_stale(
    rings: RingFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wall clock steps (NTP at boot, a resumed VM, `date -s`) and /proc/stat's boot
    time, which the kernel derives from it, moves with it: a start named in wall-clock
    time (psutil's create_time) would no longer match, and a supervisor or a restarted
    gateway would unlink a live instance's rings as "stale". Time since boot does not move."""
    mine = rings.create(capacity=8)
    before = psutil.Process().create_time()
    real_boot_time = psutil_linux.boot_time
    monkeypatch.setattr(psutil_linux, "boot_time", lambda: real_boot_time() + 1.0)
    assert psutil.Process().create_time() == pytest.approx(before + 1.0), "no step seen"
    assert find_stale(rings.instance) == []
    assert reclaim_stale(rings.instance) == []
    assert instance_segments(rings.instance) == [mine.name]


def test_segments_that_are_not_rings_are_never_stale(rings: RingFactory, raw: RawSegments) -> None:
    raw.make(rings.name(), bytes(4096))
    raw.make(rings.name(), b"\x01" * 10)
    assert find_stale(rings.instance) == []
    assert reclaim_stale(rings.instance) == []
    assert len(instance_segments(rings.instance)) == 2


def test_a_dead_pid_in_a_ring_image_is_stale(rings: RingFactory, raw: RawSegments) -> None:
    # A header naming a live pid whose process started at another time is pid reuse:
    # its creator is gone, so it is stale. (pid 1 runs, but its start is named otherwise.)
    name = rings.name()
    raw.make(name, ring_image(capacity=8, creator_pid=1, creator_start_us=1))
    assert find_stale(rings.instance) == [StaleSegment(name, 1)]
    assert reclaim_stale(rings.instance) == [name]
