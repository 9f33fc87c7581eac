"""The operator's channel to a running gateway: kill switches, mass cancels, account
limits reloaded from a config file, and symbols' trading phases (halt, resume, auction),
without a restart and without a trading session.

A Unix socket beside the colocated one (``<instance dir>/admin.sock``, created 0600 and
checked with SO_PEERCRED: only the gateway's own user), one JSON request and one JSON
reply per connection, each a line:

    {"op": "kill", "account": 1, "on": true}      -> {"ok": true, "done": "..."}
    {"op": "mass_cancel", "account": "alice"}      (an account by id or by name)
    {"op": "market", "action": "halt", "symbol": "ACME"}
    {"op": "reload", "accounts": [...]}            (the [[account]] sections, parsed)
    {"op": "nope"}                                 -> {"ok": false, "error": "..."}

A request is checked whole before anything is applied, and a refused one changes
nothing. ``tradsys admin`` (tradsys/cli_admin.py) is the command line for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from tradsys.config import AccountSection, Config, ConfigError, check_config
from tradsys.cores.gateway_auth import Credentials, LoginRefusedError, check_peer, peer_uid
from tradsys.cores.kill_switches import KILL_FILE, read_kill_switches, write_kill_switches
from tradsys.gateway import GatewayCore, GatewayError
from tradsys.matching.instrument import symbol_named
from tradsys.wire import ControlCode

log = logging.getLogger("tradsys.gateway")

ADMIN_SOCKET = "admin.sock"
MAX_REQUEST = 1 << 20  # a reload carries every account: generous, still bounded
TIMEOUT_S = 5.0

ACTIONS = {
    "halt": ControlCode.HALT,
    "resume": ControlCode.RESUME,
    "auction-start": ControlCode.AUCTION_START,
    "auction-uncross": ControlCode.AUCTION_UNCROSS,
    "session-open": ControlCode.SESSION_OPEN,
    "session-close": ControlCode.SESSION_CLOSE,
}


class Kill(msgspec.Struct, tag="kill", forbid_unknown_fields=True):
    """Kill switch of one account, by id or name (None: the global one); off again with
    on=False."""

    account: int | str | None = None
    on: bool = True


class MassCancel(msgspec.Struct, tag="mass_cancel", forbid_unknown_fields=True):
    """Cancel one account's resting orders, by id or name (None: every account's);
    blocks nothing."""

    account: int | str | None = None


class Reload(msgspec.Struct, tag="reload", forbid_unknown_fields=True):
    """Replace the accounts' limits and credentials, add new accounts."""

    accounts: list[AccountSection]


class Market(msgspec.Struct, tag="market", forbid_unknown_fields=True):
    """A trading-phase control (see ACTIONS) for one symbol (None: every symbol)."""

    action: str
    symbol: str | None = None


Request = Kill | MassCancel | Reload | Market
_decode = msgspec.json.Decoder(Request).decode


class AdminRefusedError(Exception):
    """A request the gateway will not carry out; the message says why."""


def admin_socket_path(config: Config) -> Path:
    return config.instance_dir / ADMIN_SOCKET


class AdminEdge:
    """Serves the admin socket for one gateway (its core, its credentials, its config)."""

    def __init__(
        self,
        config: Config,
        core: GatewayCore,
        credentials: Credentials,
        on_config: Callable[[Config], None] = lambda config: None,
        persist: Callable[[Config], object] = lambda config: None,
    ) -> None:
        self.config = config
        self.core = core
        self.credentials = credentials
        self.on_config = on_config  # told the config after a reload (stats, status)
        # writes the config a restarted gateway starts from (the instance's effective one)
        self.persist = persist
        self.requests = 0
        self.refused = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            try:
                check_peer(sock)
                line = await asyncio.wait_for(reader.readline(), TIMEOUT_S)
                reply = self.apply(line)
            except LoginRefusedError:
                pid, uid = peer_uid(sock)
                reply = {
                    "ok": False,
                    "error": f"the admin socket is for uid {os.getuid()}; "
                    f"peer pid {pid} is uid {uid}",
                }
            except (TimeoutError, ValueError, ConnectionError) as exc:
                reply = {"ok": False, "error": f"no complete request: {exc}"}
            if not reply["ok"]:
                self.refused += 1
            writer.write(msgspec.json.encode(reply) + b"\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def apply(self, line: bytes) -> dict[str, Any]:
        """Decode, check and carry out one request; the reply."""
        self.requests += 1
        try:
            request = _decode(line)
            done = self._carry_out(request)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return {"ok": False, "error": f"malformed request: {exc}"}
        except (AdminRefusedError, GatewayError) as exc:
            return {"ok": False, "error": str(exc)}
        log.info("admin: %s", done)
        return {"ok": True, "done": done}

    def _account(self, ref: int | str | None) -> tuple[int | None, str]:
        """The account a request names, among those the gateway holds: its effective
        config's, which keeps an account a reload's file left out (it still trades, so it
        must still be reachable by the kill switch)."""
        if ref is None:
            return None, "every account"
        for acc in self.config.accounts:
            if ref in (acc.id, acc.name, str(acc.id)):  # `tradsys admin kill 2` sends "2"
                return acc.id, f"account {acc.id} ({acc.name})"
        held = sorted(self.config.accounts, key=lambda a: a.id)
        names = ", ".join(f"{a.name} ({a.id})" for a in held) or "none"
        raise AdminRefusedError(f"no account {ref!r} at the gateway; it has: {names}")

    def _carry_out(self, request: Request) -> str:
        if isinstance(request, Kill):
            account, who = self._account(request.account)
            self.core.kill(account, request.on)
            # kept for every later gateway, a new run's too (tradsys.cores.kill_switches)
            path = self.config.instance_dir / KILL_FILE
            try:
                write_kill_switches(path, read_kill_switches(path).switched(account, request.on))
            except Exception as exc:  # the switch is set; only its record failed
                raise AdminRefusedError(
                    f"kill switch of {who} {'on' if request.on else 'off'} in this run, but not "
                    f"kept for a restart: {exc}"
                ) from None
            return f"kill switch of {who} {'on' if request.on else 'off'}"
        if isinstance(request, MassCancel):
            account, who = self._account(request.account)
            self.core.mass_cancel(account)
            return f"mass cancel of {who} sent"
        if isinstance(request, Market):
            return self._market(request)
        return self._reload(request)

    def _market(self, request: Market) -> str:
        control = ACTIONS.get(request.action)
        if control is None:
            raise AdminRefusedError(
                f"unknown market action {request.action!r}; one of {', '.join(ACTIONS)}"
            )
        symbol_id = None
        if request.symbol is not None:
            by_name = {ins.symbol: ins.symbol_id for ins in self.config.instruments}
            name = symbol_named(request.symbol, by_name)
            symbol_id = None if name is None else by_name[name]
            if symbol_id is None:
                raise AdminRefusedError(
                    f"unknown symbol {request.symbol!r}; the gateway routes: "
                    f"{', '.join(sorted(by_name))}"
                )
        self.core.market_control(symbol_id, control)
        return f"{request.action} sent for {request.symbol or 'every symbol'}"

    def _reload(self, request: Reload) -> str:
        ids = [a.id for a in request.accounts]
        # accounts the new file lacks keep their limits (the pump never forgets one)
        kept = [a for a in self.config.accounts if a.id not in set(ids)]
        reloaded = msgspec.structs.replace(self.config, accounts=request.accounts + kept)
        # the whole config's rules, as a config file meets them at start: a request made
        # by hand (not by `tradsys admin reload`, which reads a checked file) must not
        # write an effective config that a restarted gateway would refuse
        try:
            check_config(reloaded, "reload")
        except ConfigError as exc:
            raise AdminRefusedError(f"nothing reloaded: {exc}") from None
        # persisted first, so that a gateway the supervisor restarts starts from it: a
        # reload that cannot be is refused whole, rather than applied until the restart
        try:
            self.persist(reloaded)
        except OSError as exc:
            raise AdminRefusedError(
                f"nothing reloaded: cannot write the instance's effective config ({exc})"
            ) from None
        try:
            self.core.reload_accounts(reloaded)  # checks every account before applying any
        except Exception:
            with contextlib.suppress(OSError):
                self.persist(self.config)  # the file says again what the gateway applies
            raise
        self.credentials.accounts.update({a.id: a for a in request.accounts})
        self.config = reloaded
        self.on_config(reloaded)
        return f"limits and credentials of {len(ids)} account(s) reloaded"


def request(config: Config, message: Request, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """Send one request to the instance's running gateway; its reply. ConnectionError if
    no gateway serves the admin socket."""
    path = admin_socket_path(config)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise ConnectionError(
                f"no gateway answers at {path} ({exc.strerror}): is the instance running? "
                "(tradsys status)"
            ) from None
        sock.sendall(msgspec.json.encode(message) + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply: dict[str, Any] = msgspec.json.decode(data)
    return reply
