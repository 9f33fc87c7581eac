"""Colocated sessions: the handshake over the gateway's Unix-domain socket.

A client on the same host connects, sends one LOGIN frame (``docs/protocol.md``), and is
checked twice: the kernel's SO_PEERCRED uid must be the gateway's own, and the API key's
SHA-256 must be the account's. The gateway then makes the session's two rings and answers
LOGIN_ACCEPTED with their names; from then on orders and events move only through shared
memory. The socket stays open as the liveness signal: when the client exits, dies or is
killed, the kernel closes it, and the gateway removes the session (cancelling its orders
when the account asks for cancel-on-disconnect) and unlinks its rings. A handshake not
finished within login_timeout_ms is refused and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from tradsys.cores.gateway_auth import Credentials, LoginRefusedError, check_peer
from tradsys.cores.gateway_sessions import OpenSession, SessionTable
from tradsys.protocols.binary import (
    HEADER,
    HEADER_SIZE,
    Accepted,
    EndReason,
    LoginRejectReason,
    MessageType,
    ProtocolError,
    check_header,
    decode_login,
    encode_accepted,
    encode_reason,
)

log = logging.getLogger("tradsys.gateway")


@dataclass
class ColocatedEdge:
    """The Unix-socket side of the gateway: handshakes, and the open connections that
    keep colocated sessions alive."""

    credentials: Credentials
    table: SessionTable
    login_timeout_s: float
    directory: bytes = b""  # the SYMBOLS frame(s), sent right after LOGIN_ACCEPTED
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    held: dict[int, asyncio.Task[None]] = field(default_factory=dict)  # by session id
    writers: dict[int, asyncio.StreamWriter] = field(default_factory=dict)  # by session id
    logins_refused: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            session = await self._handshake(reader, writer)
            if session is not None:
                self.held[session.session_id] = task
                self.writers[session.session_id] = writer
                try:
                    await self._hold(reader, writer, session)
                finally:
                    self.held.pop(session.session_id, None)
                    self.writers.pop(session.session_id, None)
                    self.table.close(session)
                    log.info(
                        "colocated session %d (account %d) closed",
                        session.session_id,
                        session.account_id,
                    )
        except asyncio.CancelledError:
            # end() or shutdown() (or the loop closing): the gateway ended the connection,
            # which is no error. The task is the connection's own and nothing awaits its
            # result, and it must not finish cancelled: asyncio's stream server (3.11)
            # calls a finished handler's exception(), which raises for a cancelled task,
            # and logs that as an error with its traceback.
            pass
        finally:
            self.tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> OpenSession | None:
        try:
            async with asyncio.timeout(self.login_timeout_s):
                check_peer(writer.get_extra_info("socket"))
                length, kind, _ = HEADER.unpack(await reader.readexactly(HEADER_SIZE))
                size = length + 4 - HEADER_SIZE
                check_header(kind, size)
                if kind != MessageType.LOGIN:
                    raise ProtocolError(
                        f"the first frame must be LOGIN, not {MessageType(kind).name}"
                    )
                account_id, _, key = decode_login(await reader.readexactly(size))
                account = self.credentials.check(account_id, key)
                session = self.table.open(account, "colocated")
        except LoginRefusedError as denied:
            await self._refuse(writer, denied.reason, denied.text)
            return None
        except TimeoutError:
            await self._refuse(
                writer,
                LoginRejectReason.TIMEOUT,
                f"no LOGIN within {self.login_timeout_s * 1000:.0f} ms",
            )
            return None
        except ProtocolError as exc:
            await self._refuse(writer, LoginRejectReason.MALFORMED, str(exc))
            return None
        except (asyncio.IncompleteReadError, ConnectionError):
            self.logins_refused += 1
            return None  # gone before it finished: nothing was made
        rings = session.rings
        writer.write(
            encode_accepted(
                Accepted(
                    session.session_id,
                    0,
                    session.account_id,
                    1,
                    1,
                    rings.inbound.capacity,
                    rings.inbound.name,
                    rings.outbound.name,
                    session.events_dropped,
                )
            )
            + self.directory
        )
        try:
            await writer.drain()
        except ConnectionError:
            self.table.close(session)
            return None
        log.info(
            "colocated session %d: account %d, rings %s / %s",
            session.session_id,
            session.account_id,
            rings.inbound.name,
            rings.outbound.name,
        )
        return session

    async def _refuse(self, writer: asyncio.StreamWriter, reason: int, text: str) -> None:
        self.logins_refused += 1
        log.info("colocated login refused: %s", text)
        with contextlib.suppress(ConnectionError):
            writer.write(encode_reason(MessageType.LOGIN_REJECTED, reason, text))
            await writer.drain()

    async def _hold(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: OpenSession
    ) -> None:
        """Until the client closes (or sends LOGOUT): the socket is the session's life.
        Heartbeats are tolerated; anything else ends the session, with END saying why."""
        while True:
            try:
                raw = await reader.readexactly(HEADER_SIZE)
                session.heard = True  # it read LOGIN_ACCEPTED (or its commands show)
                length, kind, _ = HEADER.unpack(raw)
                size = length + 4 - HEADER_SIZE
                check_header(kind, size)
                if size:
                    await reader.readexactly(size)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            except ProtocolError as exc:
                _say_end(writer, EndReason.PROTOCOL_ERROR, str(exc))
                return
            if kind == MessageType.LOGOUT:
                _say_end(writer, EndReason.LOGOUT, "logged out")
                return
            if kind != MessageType.HEARTBEAT:
                name = MessageType(kind).name
                text = f"a colocated client sends only HEARTBEAT or LOGOUT here, not {name}"
                _say_end(writer, EndReason.PROTOCOL_ERROR, text)
                return

    def end(self, session_id: int, reason: EndReason, text: str) -> bool:
        """End a session from the gateway's side: END says why, its socket is closed (the
        client sees the gateway end it) and the session is removed, its unread events kept
        for the account. False if it is not one of ours."""
        task = self.held.get(session_id)
        if task is None:
            return False
        _say_end(self.writers[session_id], reason, text)
        task.cancel()
        return True

    async def shutdown(self) -> None:
        for writer in self.writers.values():
            _say_end(writer, EndReason.SHUTDOWN, "the gateway is stopping")
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


def _say_end(writer: asyncio.StreamWriter, reason: EndReason, text: str) -> None:
    """END on a colocated session's socket, before it closes: the client's next look at
    the socket tells its user why (written as the socket takes it; a client already
    gone is no error)."""
    with contextlib.suppress(ConnectionError, RuntimeError):
        writer.write(encode_reason(MessageType.END, reason, text))
