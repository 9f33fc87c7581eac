"""The pair of shared-memory rings each session gets: made, named and unlinked here.

Inbound (``sin``): the client (or, for TCP, the gateway's loop) produces COMMAND records,
the gateway core consumes them. Outbound (``sout``): the core produces EVENT records, the
client (or the TCP loop) consumes them. The gateway creates both, so it owns and unlinks
them: a vanished client leaves nothing in /dev/shm.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from tradsys import wire
from tradsys.ring import Ring, SegmentExistsError, segment_name

INBOUND_ROLE = "sin"
OUTBOUND_ROLE = "sout"


@dataclass
class SessionRings:
    number: int
    inbound: Ring
    outbound: Ring

    def close(self) -> None:
        """Unmap and unlink both. Idempotent."""
        self.inbound.close()
        self.outbound.close()


class RingMaker:
    """Makes session ring pairs under one instance name with increasing numbers."""

    def __init__(self, instance: str, capacity: int) -> None:
        self.instance = instance
        self.capacity = capacity
        self._numbers = itertools.count()

    def _create(self, role: str, n: int) -> Ring:
        return Ring.create(
            segment_name(self.instance, role, n),
            slot_size=wire.RECORD_SIZE,
            capacity=self.capacity,
            layout_version=wire.LAYOUT_VERSION,
        )

    def make(self) -> SessionRings:
        """A fresh pair; a number still taken (a previous gateway's live client) is
        skipped, never reused."""
        for _ in range(1 << 16):
            n = next(self._numbers)
            try:
                inbound = self._create(INBOUND_ROLE, n)
            except SegmentExistsError:
                continue
            try:
                outbound = self._create(OUTBOUND_ROLE, n)
            except SegmentExistsError:
                inbound.close()
                continue
            except BaseException:
                inbound.close()
                raise
            return SessionRings(n, inbound, outbound)
        raise SegmentExistsError(f"no free session ring number for instance {self.instance}")
