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
from tradsys.ring.segment import unlink_quietly
from tradsys.ring.stale import find_stale

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


def reclaim_stale_keeping_unread(instance: str) -> tuple[list[str], list[str]]:
    """At a gateway's start: unlink every stale segment of the instance except a dead
    gateway's session outbound rings, whose unread events the new gateway holds for the
    accounts first (``GatewayCore.hold_stale_ring``); returns (removed, kept), the kept
    ones in session order, for the caller to unlink once it has read them."""
    stale = [s.name for s in find_stale(instance)]
    prefix = segment_name(instance, OUTBOUND_ROLE, 0)[:-1]
    kept = sorted(
        (n for n in stale if n.startswith(prefix) and n[len(prefix) :].isdigit()),
        key=lambda n: int(n[len(prefix) :]),
    )
    return unlink_quietly([n for n in stale if n not in kept]), kept
