"""The pair of shared-memory rings each session gets: made, named and unlinked here.

Inbound (``sin``): the client (or, for TCP, the gateway's loop) produces COMMAND records,
the gateway core consumes them. Outbound (``sout``): the core produces EVENT records, the
client (or the TCP loop) consumes them. The gateway creates both, so it owns and unlinks
them: a vanished client leaves nothing in /dev/shm.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from tradsys import wire
from tradsys.ring import Ring, SegmentExistsError, segment_name
from tradsys.ring.errors import RingError
from tradsys.ring.segment import unlink_quietly
from tradsys.ring.stale import find_stale

log = logging.getLogger("tradsys.gateway")

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


@dataclass
class StaleRings:
    """What a gateway's start found of a dead gateway's, kept to be read before unlinking."""

    removed: list[str]  # unlinked already: nothing in them is anyone's
    unread: list[str]  # session outbound rings: events their clients never read
    unsent: list[str]  # session inbound rings: commands their clients sent, never taken


def is_session_ring(instance: str, name: str) -> bool:
    """Whether ``name`` is one of the instance's session rings (``sin.<n>``/``sout.<n>``)."""
    for role in (INBOUND_ROLE, OUTBOUND_ROLE):
        prefix = segment_name(instance, role, 0)[:-1]
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            return True
    return False


def reclaim_stale_keeping_unread(instance: str) -> StaleRings:
    """At a gateway's start: unlink every stale segment of the instance except a dead
    gateway's session rings -- the outbound ones, whose unread events the new gateway
    holds for the accounts first (``GatewayCore.hold_stale_ring``), and the inbound ones,
    whose commands it answers (``gateway_stale.answer_unsent``) -- each kind in session order,
    for the caller to unlink once it has read them."""
    stale = [s.name for s in find_stale(instance)]

    def of_role(role: str) -> list[str]:
        prefix = segment_name(instance, role, 0)[:-1]
        return sorted(
            (n for n in stale if n.startswith(prefix) and n[len(prefix) :].isdigit()),
            key=lambda n: int(n[len(prefix) :]),
        )

    unread, unsent = of_role(OUTBOUND_ROLE), of_role(INBOUND_ROLE)
    kept = set(unread) | set(unsent)
    return StaleRings(unlink_quietly([n for n in stale if n not in kept]), unread, unsent)


def ring_number(name: str) -> int:
    """The session number a session ring's name ends with."""
    return int(name.rsplit(".", 1)[1])


def attach_each(names: list[str], what: str) -> Iterator[tuple[str, Ring]]:
    """Each of a dead gateway's session rings, attached to be read and closed once the
    caller moves on; one that is not a ring of this layout has nothing to read in it:
    skipped, and logged as giving none of ``what``."""
    for name in names:
        try:
            ring = Ring.attach(name, slot_size=wire.RECORD_SIZE, layout_version=wire.LAYOUT_VERSION)
        except RingError as exc:
            log.warning("cannot read %s for %s: %s", name, what, exc)
            continue
        try:
            yield name, ring
        finally:
            ring.close()
