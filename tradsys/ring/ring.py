"""The Python face of the shared-memory SPSC ring (``native/ring.c``).

One process creates a ring (and owns its segment), another attaches; one side pushes,
the other pops. Batches move as numpy structured arrays in a single C call; single
records move as ``bytes``. The ring gives records no meaning: slot size and layout
version are the caller's (the cores pass ``tradsys.wire``'s).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import numpy as np

from tradsys._native import ffi, lib
from tradsys._ring_records import RecordPort
from tradsys.ring.errors import RingAttachError, RingError
from tradsys.ring.segment import Segment, process_alive, process_start_us
from tradsys.ring.wait import POLITE, WaitStrategy

Role = Literal["producer", "consumer"]

# Bound once: on Python 3.11 every `lib.<name>` look-up costs ~100 ns.
_readable: Callable[[Any], int] = lib.ts_ring_readable
_release: Callable[[Any, int], None] = lib.ts_ring_release

_CHECK_ERRORS = {
    lib.TS_RING_ERR_MAGIC: "is not a TradSys ring (bad magic) or is not initialised yet",
    lib.TS_RING_ERR_VERSION: "has layout version {found.layout_version}, expected {version}",
    lib.TS_RING_ERR_SLOT_SIZE: "has {found.slot_size}-byte slots, expected {slot_size}",
    lib.TS_RING_ERR_CAPACITY: "has capacity {found.capacity}, expected {capacity_wanted}",
    lib.TS_RING_ERR_TOO_SMALL: "is {size} bytes, too small for its header and slots",
}


@dataclass(frozen=True)
class RingInfo:
    """A ring's header as read at one instant: identity, owners, indices."""

    name: str
    layout_version: int
    slot_size: int
    capacity: int
    creator_pid: int
    creator_start_us: int
    producer_pid: int
    consumer_pid: int
    head: int
    tail: int

    @property
    def fill(self) -> int:
        """Records published and not yet consumed."""
        return self.head - self.tail

    @property
    def creator_alive(self) -> bool:
        return process_alive(self.creator_pid, self.creator_start_us)


def _read_info(name: str, memory: Any) -> RingInfo:
    raw = ffi.new("ts_ring_info *")
    lib.ts_ring_read_info(memory, raw)
    return RingInfo(
        name=name,
        layout_version=raw.layout_version,
        slot_size=raw.slot_size,
        capacity=raw.capacity,
        creator_pid=raw.creator_pid,
        creator_start_us=raw.creator_start_us,
        producer_pid=raw.producer_pid,
        consumer_pid=raw.consumer_pid,
        head=raw.head,
        tail=raw.tail,
    )


def _timeout_ns(timeout: float | None) -> int:
    return -1 if timeout is None else max(0, int(timeout * 1e9))


class Ring:
    """A lock-free single-producer single-consumer ring in POSIX shared memory.

    Exactly one process may push and one may pop at a time; ``role`` records which side
    this handle is (its pid goes into the header so the other side can tell whether its
    peer is alive). Close it (or use ``with``) so the owner unlinks the segment.
    """

    def __init__(self, segment: Segment, role: Role | None) -> None:
        self._segment = segment
        self._base = ffi.from_buffer(segment.memory)
        self._ring = ffi.cast("ts_ring *", self._base)
        info = _read_info(segment.name, self._base)
        self.name = segment.name
        self.slot_size: int = info.slot_size
        self.capacity: int = info.capacity
        self.layout_version: int = info.layout_version
        self.role = role
        # one record at a time: CPython methods of their own (native/ring_records.c),
        # bound onto this object so a caller's loop reaches C with nothing in between
        self._port = RecordPort(segment.memory, self.slot_size, self.name)
        self.push: Callable[[bytes | bytearray | memoryview], bool] = self._port.push
        """Publish one record of exactly ``slot_size`` bytes (``bytes`` or any buffer);
        False when the ring is full. ValueError for another size or a closed ring."""
        self.pop: Callable[[], bytes | None] = self._port.pop
        """Take one record, or None when the ring is empty."""
        if role == "producer":
            lib.ts_ring_set_producer(self._ring, os.getpid())
        elif role == "consumer":
            lib.ts_ring_set_consumer(self._ring, os.getpid())

    # ---- lifecycle -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str,
        *,
        slot_size: int,
        capacity: int,
        layout_version: int,
        role: Role | None = None,
    ) -> Ring:
        """Create a new, empty ring segment; this handle owns it and unlinks it on close.

        ``capacity`` must be a power of two and ``slot_size`` a positive multiple of 8.
        """
        if capacity <= 0 or capacity & (capacity - 1):
            raise ValueError(f"ring {name}: capacity must be a power of two, got {capacity}")
        if slot_size <= 0 or slot_size % 8:
            raise ValueError(
                f"ring {name}: slot size must be a positive multiple of 8, got {slot_size}"
            )
        size = lib.ts_ring_bytes_needed(slot_size, capacity)
        segment = Segment.create(name, size)
        try:
            base = ffi.from_buffer(segment.memory)
            status = lib.ts_ring_init(
                base, size, slot_size, capacity, layout_version, os.getpid(), process_start_us()
            )
            ffi.release(base)
            if status != lib.TS_RING_OK:
                raise RingError(f"ring {name}: initialisation failed with status {status}")
            return cls(segment, role)
        except BaseException:
            segment.close()
            raise

    @classmethod
    def attach(
        cls,
        name: str,
        *,
        slot_size: int,
        layout_version: int,
        capacity: int | None = None,
        role: Role | None = None,
    ) -> Ring:
        """Attach to an existing ring, refusing one that is not what the caller expects.

        The error names the segment and the mismatch (layout version, slot size,
        capacity, size, or not a ring at all).
        """
        segment = Segment.attach(name)
        try:
            base = ffi.from_buffer(segment.memory)
            try:
                status = lib.ts_ring_check(
                    base, segment.size, layout_version, slot_size, capacity or 0
                )
                if status != lib.TS_RING_OK:
                    found = (
                        _read_info(name, base) if segment.size >= lib.TS_RING_HEADER_SIZE else None
                    )
                    template = _CHECK_ERRORS.get(status, "failed its check (status {status})")
                    reason = template.format(
                        found=found,
                        version=layout_version,
                        slot_size=slot_size,
                        capacity_wanted=capacity or "a power of two",
                        size=segment.size,
                        status=status,
                    )
                    raise RingAttachError(f"cannot attach to ring {name}: the segment {reason}")
            finally:
                ffi.release(base)
            return cls(segment, role)
        except BaseException:
            segment.close()
            raise

    def close(self) -> None:
        """Unmap (and, for the creator, unlink) the segment. Idempotent."""
        if self._segment.memory.closed:
            return
        if self.role == "producer":
            lib.ts_ring_set_producer(self._ring, 0)
        elif self.role == "consumer":
            lib.ts_ring_set_consumer(self._ring, 0)
        self._ring = None
        self._port.release()  # before the unmap: the port holds the mapping
        ffi.release(self._base)
        self._segment.close()

    @property
    def closed(self) -> bool:
        return self._segment.memory.closed

    @property
    def is_owner(self) -> bool:
        return self._segment.owner

    @property
    def handle(self) -> Any:
        """The C ``ts_ring *``, for native code that moves records itself (the gateway
        pump). Valid until :meth:`close`; the caller must keep this object alive."""
        if self._ring is None:
            raise ValueError(f"ring {self.name} is closed")
        return self._ring

    def __enter__(self) -> Ring:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fill={self.readable}/{self.capacity}"
        return f"<Ring {self.name} slot={self.slot_size} {state} role={self.role}>"

    # ---- records -----------------------------------------------------------------------

    def _records(self, array: np.ndarray[Any, Any], writable: bool) -> Any:
        if array.dtype.itemsize != self.slot_size:
            raise ValueError(
                f"ring {self.name}: array items are {array.dtype.itemsize} bytes, "
                f"slots are {self.slot_size}"
            )
        if not array.flags.c_contiguous:
            raise ValueError(f"ring {self.name}: the array must be C-contiguous")
        return ffi.from_buffer(array, require_writable=writable)

    def push_batch(self, records: np.ndarray[Any, Any]) -> int:
        """Publish as many of ``records`` as fit, in order; return how many were taken."""
        return int(lib.ts_ring_push(self._ring, self._records(records, False), len(records)))

    def pop_batch(self, out: np.ndarray[Any, Any]) -> int:
        """Move up to ``len(out)`` records into ``out[:n]``; return n (0 when empty)."""
        return int(lib.ts_ring_pop(self._ring, self._records(out, True), len(out)))

    def peek_batch(self, out: np.ndarray[Any, Any], skip: int = 0) -> int:
        """Copy up to ``len(out)`` records into ``out[:n]``, starting ``skip`` records past
        the consumer's index, without consuming them; return n (0 when no more than
        ``skip`` are readable).

        For a consumer that must not give a record up before it is done with it: the
        slots stay taken (and the producer waits for them as for a full ring) until
        :meth:`release` gives them back, and a process that attaches the ring after this
        one died still finds them. ``skip`` is how many this consumer has already read
        and not released; records past the ring's end are copied across it."""
        return int(lib.ts_ring_peek_copy(self._ring, self._records(out, True), skip, len(out)))

    def last_published(self, out: np.ndarray[Any, Any]) -> bool:
        """Copy the newest record ever published, read or not, into ``out[0]``; False if
        nothing was. For a ring nobody pushes to any more (a dead run's): a consumer's
        release does not clear a slot, so the record stays until a push overwrites it,
        which a live producer may be doing as this copies."""
        head = self.info().head
        if head == 0:
            return False
        offset = lib.TS_RING_HEADER_SIZE + ((head - 1) & (self.capacity - 1)) * self.slot_size
        self._records(out, True)  # the size and layout checks
        memory = self._segment.memory
        out[:1].view(np.uint8)[:] = np.frombuffer(
            memory, dtype=np.uint8, count=self.slot_size, offset=offset
        )
        return True

    def release(self, k: int) -> None:
        """Consume the oldest ``k`` records (read with :meth:`peek_batch`), giving their
        slots back to the producer. ValueError for more than are readable: the consumer's
        index must never pass the producer's."""
        if k < 0 or k > _readable(self._ring):
            raise ValueError(
                f"ring {self.name}: cannot release {k} records, {self.readable} are readable"
            )
        if k:
            _release(self._ring, k)

    def push_all(
        self,
        records: np.ndarray[Any, Any],
        wait: WaitStrategy = POLITE,
        timeout: float | None = None,
    ) -> int:
        """Publish every record, waiting for room; return how many went in before the
        timeout (``len(records)`` unless it ran out)."""
        buf = self._records(records, False)
        return int(
            lib.ts_ring_push_all(self._ring, buf, len(records), wait.cdata, _timeout_ns(timeout))
        )

    def pop_wait(
        self,
        out: np.ndarray[Any, Any],
        wait: WaitStrategy = POLITE,
        timeout: float | None = None,
    ) -> int:
        """Wait for at least one record, then pop up to ``len(out)``; 0 on timeout."""
        buf = self._records(out, True)
        return int(
            lib.ts_ring_pop_wait(self._ring, buf, len(out), wait.cdata, _timeout_ns(timeout))
        )

    def wait_readable(self, wait: WaitStrategy = POLITE, timeout: float | None = None) -> int:
        """Block until a record can be popped; return how many can (0 on timeout)."""
        return int(lib.ts_ring_wait_readable(self._ring, wait.cdata, _timeout_ns(timeout)))

    def wait_writable(self, wait: WaitStrategy = POLITE, timeout: float | None = None) -> int:
        """Block until a record can be pushed; return how many slots are free (0 on timeout)."""
        return int(lib.ts_ring_wait_writable(self._ring, wait.cdata, _timeout_ns(timeout)))

    def wake(self) -> None:
        """Wake the peer if it is parked, e.g. so that it notices a stop request."""
        lib.ts_ring_wake_all(self._ring)

    # ---- state ---------------------------------------------------------------------------

    @property
    def readable(self) -> int:
        """Records waiting to be popped (exact for the consumer)."""
        return int(lib.ts_ring_readable(self._ring))

    @property
    def writable(self) -> int:
        """Free slots (exact for the producer)."""
        return int(lib.ts_ring_writable(self._ring))

    def info(self) -> RingInfo:
        return _read_info(self.name, self._base)

    def peer_alive(self) -> bool:
        """Whether a process with the other side's pid (per the header) is running. By pid
        alone: the header keeps no start time for the two sides, so a reused pid passes;
        the engine's own liveness checks go by the control blocks, which keep one."""
        info = self.info()
        pid = info.producer_pid if self.role == "consumer" else info.consumer_pid
        if pid == 0:
            return False
        return process_alive(pid, 0)
