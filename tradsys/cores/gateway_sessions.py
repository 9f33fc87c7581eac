"""The session table: opening a session (its rings, its registration with the gateway
core) and closing it (deregister first — the core cancels its orders if the account asks
for cancel-on-disconnect — then unlink its rings), with the session limit and counters.

``SessionCore`` is the part of ``tradsys.gateway.GatewayCore`` this needs; tests pass a
small fake with the same two methods.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tradsys.config import AccountSection
from tradsys.cores.gateway_auth import LoginRefusedError
from tradsys.cores.gateway_rings import RingMaker, SessionRings
from tradsys.cores.session_accounts import SessionAccounts
from tradsys.protocols.binary import LoginRejectReason
from tradsys.ring import Ring
from tradsys.ring.errors import RingError
from tradsys.ring.segment import unlink_quietly

log = logging.getLogger("tradsys.gateway")

# A removed session's rings stay mapped until the pump has finished this many passes
# since the removal (see SessionTable.close).
RETIRE_AFTER_PASSES = 2
# the sessions clients log in to; "recovered" is the gateway's own, at a restart
CLIENT_KINDS = ("colocated", "tcp")


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

    def remove_session(
        self,
        session_id: int,
        unread: np.ndarray[Any, Any] | None = None,
        unsent: np.ndarray[Any, Any] | None = None,
    ) -> None: ...

    def take_dropped(self, account_id: int) -> int: ...

    def return_dropped(self, account_id: int, n: int) -> None: ...


@dataclass
class OpenSession:
    """A live session: the core's id for it, whose it is, and its rings."""

    session_id: int
    account_id: int
    kind: str  # "colocated" or "tcp"
    rings: SessionRings
    notify_fd: int | None = None
    closed: bool = False
    events_dropped: int = 0  # the account's events dropped since its last login (told)
    heard: bool = False  # the client sent something after LOGIN_ACCEPTED (the edge says)


@dataclass
class SessionTable:
    core: SessionCore
    rings: RingMaker
    max_sessions: int
    live: dict[int, OpenSession] = field(default_factory=dict)
    retired: list[tuple[int, OpenSession]] = field(default_factory=list)
    opened: int = 0
    closed: int = 0
    # whose each session's rings are, for a successor should this gateway die
    accounts: SessionAccounts | None = None

    def open(self, account: AccountSection, kind: str, notify_fd: int | None = None) -> OpenSession:
        """Make the rings and register the session; LoginRefusedError when there is no room or
        the core refuses it (nothing is left behind either way)."""
        if len(self.live) >= self.max_sessions:
            raise LoginRefusedError(
                LoginRejectReason.SESSION_LIMIT,
                f"the gateway serves at most {self.max_sessions} sessions; all are in use",
            )
        cap = account.max_sessions
        if cap and sum(s.account_id == account.id for s in self.live.values()) >= cap:
            raise LoginRefusedError(
                LoginRejectReason.SESSION_LIMIT,
                f"account {account.id} may have {cap} session(s) open at once "
                "([[account]] max_sessions); all are in use",
            )
        try:
            rings = self.rings.make()
        except (OSError, RingError) as exc:  # /dev/shm full, a name still taken
            log.error("session rings for account %s: %s", account.id, exc)
            # the reject's text holds 63 bytes: the cause in short, the log has the rest
            why = "/dev/shm is full" if getattr(exc, "errno", None) == errno.ENOSPC else str(exc)
            raise LoginRefusedError(
                LoginRejectReason.UNAVAILABLE, f"no session rings: {why}"
            ) from exc
        if self.accounts is not None:
            self.accounts.note(rings.number, account.id)
            if self.accounts.due():
                exist = [*self.live.values(), *(s for _, s in self.retired)]
                live = {s.rings.number: s.account_id for s in exist}
                self.accounts.compact({**live, rings.number: account.id})
        try:
            sid = self.core.add_session(
                account.id,
                rings.inbound,
                rings.outbound,
                notify_fd=notify_fd,
                # None: the session follows its account's setting, hot reloads included
                cancel_on_disconnect=None,
            )
        except Exception as exc:
            rings.close()
            raise LoginRefusedError(
                LoginRejectReason.UNAVAILABLE, f"the gateway core refused the session: {exc}"
            ) from exc
        session = OpenSession(sid, account.id, kind, rings, notify_fd)
        if kind in CLIENT_KINDS:  # a client's login is told; the restart's own session not
            session.events_dropped = self.core.take_dropped(account.id)
        self.live[sid] = session
        self.opened += 1
        return session

    def close(
        self,
        session: OpenSession,
        unread: np.ndarray[Any, Any] | None = None,
        unsent: np.ndarray[Any, Any] | None = None,
    ) -> None:
        """Deregister (the core first takes what the client sent -- its inbound ring's
        records, then ``unsent``, COMMAND records kept for want of room in it -- then
        cancels its orders if configured, and holds what the client did not read --
        ``unread``, EVENT records taken from the outbound ring and never delivered, then
        what the ring holds -- for the account's next session) and
        unlink the rings' names at once, so nothing of the session is left in /dev/shm.
        Idempotent.

        The memory itself (and the session's eventfd) is released only once the pump has
        finished RETIRE_AFTER_PASSES passes since (see :meth:`reap`). The core promises
        not to touch a removed session's rings; an early version did, from a park, and
        crashed the gateway -- a few hundred kilobytes held for a millisecond is a cheap
        guard against that class of bug, and against an eventfd number being reused
        while a late write is in flight."""
        if session.closed:
            return
        session.closed = True
        self.live.pop(session.session_id, None)
        if session.events_dropped and not session.heard and not session.rings.inbound.info().head:
            # nothing came from the client after LOGIN_ACCEPTED: a connection that broke
            # right after it may never have read the count, so the next login is told it
            # again (told twice costs an ORDER_STATUS; never told, a stale picture)
            self.core.return_dropped(session.account_id, session.events_dropped)
        try:
            if (unread is not None and len(unread)) or (unsent is not None and len(unsent)):
                self.core.remove_session(session.session_id, unread, unsent)
            else:
                self.core.remove_session(session.session_id)
        finally:
            unlink_quietly([session.rings.inbound.name, session.rings.outbound.name])
            self.closed += 1
            mark = self._passes()
            if mark is None:
                self._release(session)
            else:
                self.retired.append((mark, session))

    def _passes(self) -> int | None:
        stats = getattr(self.core, "stats", None)
        if not callable(stats):
            return None
        passes = stats().get("passes")
        return None if passes is None else int(passes)

    @staticmethod
    def _release(session: OpenSession) -> None:
        session.rings.close()
        if session.notify_fd is not None:
            os.close(session.notify_fd)
            session.notify_fd = None

    def reap(self, force: bool = False) -> int:
        """Release the retired sessions the pump is done with (all, with ``force``: only
        once the pump is stopped); return how many are still waiting."""
        if not self.retired:
            return 0
        passes = None if force else self._passes()
        keep = []
        for mark, session in self.retired:
            if passes is not None and passes < mark + RETIRE_AFTER_PASSES:
                keep.append((mark, session))
            else:
                self._release(session)
        self.retired = keep
        return len(keep)

    def close_all(self) -> None:
        for session in list(self.live.values()):
            self.close(session)

    def stats(self) -> dict[str, int]:
        return {
            "sessions": len(self.live),
            "sessions_opened": self.opened,
            "sessions_closed": self.closed,
            "sessions_retiring": len(self.retired),
        }
