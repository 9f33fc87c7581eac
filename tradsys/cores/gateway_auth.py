"""Who may open a session: an account's API key (checked against its SHA-256) and, for a
colocated client, the uid of the process at the other end of the Unix socket."""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct

from tradsys.config import AccountSection, Config
from tradsys.protocols.binary import LoginRejectReason

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class LoginRefusedError(Exception):
    """A login that must be refused; carries the reason code sent to the client."""

    def __init__(self, reason: LoginRejectReason, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


def key_digest(api_key: str) -> str:
    """The hex SHA-256 of an API key: what ``[[account]] api_key_sha256`` stores."""
    return hashlib.sha256(api_key.encode()).hexdigest()


class Credentials:
    """The accounts of a config, looked up by id; one check per login."""

    def __init__(self, config: Config) -> None:
        self.accounts: dict[int, AccountSection] = {a.id: a for a in config.accounts}

    def check(self, account_id: int, api_key: str) -> AccountSection:
        """The account, or LoginRefusedError. The same answer for an unknown account and a wrong
        key, so a client cannot probe which accounts exist."""
        account = self.accounts.get(account_id)
        # compare even for an unknown account, so the two cases take the same time
        digest = key_digest(api_key)
        wanted = account.api_key_sha256 if account else "0" * 64
        if not hmac.compare_digest(digest, wanted) or account is None:
            raise LoginRefusedError(
                LoginRejectReason.BAD_CREDENTIALS, f"account {account_id}: bad credentials"
            )
        return account


def peer_uid(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process on the other end of a Unix-domain socket (SO_PEERCRED:
    set by the kernel at connect time, so it cannot be forged by the client)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, _ = _PEERCRED.unpack(raw)
    return pid, uid


def check_peer(sock: socket.socket) -> int:
    """The peer's pid if its uid is this process's uid, else LoginRefusedError."""
    pid, uid = peer_uid(sock)
    if uid != os.getuid():
        raise LoginRefusedError(
            LoginRejectReason.NOT_PERMITTED,
            f"colocated sessions are for uid {os.getuid()}; peer pid {pid} is uid {uid}",
        )
    return pid
