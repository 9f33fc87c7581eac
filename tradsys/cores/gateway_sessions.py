"""The session table: opening a session (its rings, its registration with the gateway
core) and closing it (deregister first — the core cancels its orders if the account asks
for cancel-on-disconnect — then unlink its rings), with the session limit and counters.

``SessionCore`` is the part of ``tradsys.gateway.GatewayCore`` this needs; tests pass a
small fake with the same two methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from tradsys.config import AccountSection
from tradsys.cores.gateway_auth import LoginRefusedError
from tradsys.cores.gateway_rings import RingMaker, SessionRings
from tradsys.protocols.binary import LoginRejectReason
from tradsys.ring import Ring


class SessionCore(Protocol):
    """What the session table asks of the native gateway core."""

    def add_session(
        self,
        account_id: int,
        inbound: Ring,
        outbound: Ring,
        *,
        notify_fd: int | None = None,
        cancel_on_disconnect: bool | None = None,
    ) -> int: ...

    def remove_session(self, session_id: int) -> None: ...


@dataclass
class OpenSession:
    """A live session: the core's id for it, whose it is, and its rings."""

    session_id: int
    account_id: int
    kind: str  # "colocated" or "tcp"
    rings: SessionRings
    closed: bool = False


@dataclass
class SessionTable:
    core: SessionCore
    rings: RingMaker
    max_sessions: int
    live: dict[int, OpenSession] = field(default_factory=dict)
    opened: int = 0
    closed: int = 0

    def open(self, account: AccountSection, kind: str, notify_fd: int | None = None) -> OpenSession:
        """Make the rings and register the session; LoginRefusedError when there is no room or
        the core refuses it (nothing is left behind either way)."""
        if len(self.live) >= self.max_sessions:
            raise LoginRefusedError(
                LoginRejectReason.SESSION_LIMIT,
                f"the gateway serves at most {self.max_sessions} sessions; all are in use",
            )
        rings = self.rings.make()
        try:
            sid = self.core.add_session(
                account.id,
                rings.inbound,
                rings.outbound,
                notify_fd=notify_fd,
                cancel_on_disconnect=account.cancel_on_disconnect,
            )
        except Exception as exc:
            rings.close()
            raise LoginRefusedError(
                LoginRejectReason.UNAVAILABLE, f"the gateway core refused the session: {exc}"
            ) from exc
        session = OpenSession(sid, account.id, kind, rings)
        self.live[sid] = session
        self.opened += 1
        return session

    def close(self, session: OpenSession) -> None:
        """Deregister (the core stops touching the rings, cancels if configured), then
        unlink the rings. Idempotent."""
        if session.closed:
            return
        session.closed = True
        self.live.pop(session.session_id, None)
        try:
            self.core.remove_session(session.session_id)
        finally:
            session.rings.close()
            self.closed += 1

    def close_all(self) -> None:
        for session in list(self.live.values()):
            self.close(session)

    def stats(self) -> dict[str, int]:
        return {
            "sessions": len(self.live),
            "sessions_opened": self.opened,
            "sessions_closed": self.closed,
        }
