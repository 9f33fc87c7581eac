"""A stand-in for the native gateway core in in-process tests of the edge: the same
``add_session`` / ``remove_session`` face, a Python thread as the pump and an in-process
C matching engine instead of shard workers. It assigns exchange ids and maps events back
to each session's client order ids, as the real core does, so clients see real fills,
and it answers a command kind no client may send (CONTROL, a number that is no kind)
with REJECTED(INVALID_COMMAND) in the session's event stream, never passing it to the
engine, as the real core's pump does; an ORDER_STATUS it answers from the events it
routed (the session's own orders only, all of them OPEN). Its engine answers at once,
so every answer here comes in the order of the commands (the real pump's own rejects
can come ahead of the events a shard sends for earlier commands), which lets an edge
test see that the edge passed the commands on in order."""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tradsys import wire
from tradsys.config import Config
from tradsys.matching import CEngine
from tradsys.ring import Ring

CLIENT_KINDS = frozenset(
    int(k)
    for k in (
        wire.CommandKind.NEW_ORDER,
        wire.CommandKind.CANCEL,
        wire.CommandKind.REPLACE,
        wire.CommandKind.MASS_CANCEL,
    )
)


@dataclass
class _Session:
    account_id: int
    inbound: Ring
    outbound: Ring
    notify_fd: int | None
    cancel_on_disconnect: bool
    exchange_ids: dict[int, int] = field(default_factory=dict)  # client id -> exchange id
    live: dict[int, np.void] = field(default_factory=dict)  # client id -> its last event


class FakeCore:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.engine = CEngine()
        for ins in config.instruments:
            self.engine.add_instrument(ins)
        self.sessions: dict[int, _Session] = {}
        self.owner: dict[int, tuple[int, int]] = {}  # exchange id -> (session, client id)
        self._ids = itertools.count(1)
        self._exchange_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.removed: list[int] = []
        self.unread: list[tuple[int, np.ndarray[Any, Any]]] = []  # handed to remove_session
        self.unsent: list[tuple[int, np.ndarray[Any, Any]]] = []  # commands handed to it
        self.commands = 0  # every command taken from a session's ring
        self.invalid = 0  # of which answered REJECTED(INVALID_COMMAND), unseen by the engine
        self.dropped: dict[int, int] = {}  # account -> events "dropped" (take_dropped)

    def add_session(
        self,
        account_id: int,
        inbound: Ring,
        outbound: Ring,
        *,
        notify_fd: int | None = None,
        cancel_on_disconnect: bool | None = None,
    ) -> int:
        if cancel_on_disconnect is None:  # as the real core: the account's setting
            accounts = {a.id: a for a in self.config.accounts}
            cancel_on_disconnect = accounts[account_id].cancel_on_disconnect
        with self._lock:
            sid = next(self._ids)
            self.sessions[sid] = _Session(
                account_id, inbound, outbound, notify_fd, cancel_on_disconnect
            )
            return sid

    def take_dropped(self, account_id: int) -> int:
        """The real core's count of events it dropped for the account: what a test put
        in ``dropped``, once."""
        return self.dropped.pop(account_id, 0)

    def return_dropped(self, account_id: int, n: int) -> None:
        """The real core's put-back: the account's next login is told ``n`` again."""
        self.dropped[account_id] = self.dropped.get(account_id, 0) + n

    def remove_session(self, session_id: int, unread: Any = None, unsent: Any = None) -> None:
        with self._lock:
            if unread is not None:
                self.unread.append((session_id, unread.copy()))
            if unsent is not None:  # the real core takes them first, as a pass would
                self.unsent.append((session_id, unsent.copy()))
            s = self.sessions.pop(session_id)
            self.removed.append(session_id)
            if s.cancel_on_disconnect:
                for xid in s.exchange_ids.values():
                    cancel = np.zeros(1, wire.COMMAND_DTYPE)
                    cancel["kind"] = wire.CommandKind.CANCEL
                    cancel["order_id"] = xid
                    cancel["account_id"] = s.account_id
                    for sym in (1, 2):
                        cancel["symbol_id"] = sym
                        self._route(self.engine.process(cancel).events)

    def _route(self, events: np.ndarray) -> None:
        for ev in events:
            owner = self.owner.get(int(ev["order_id"]))
            if owner is None or owner[0] not in self.sessions:
                continue
            s = self.sessions[owner[0]]
            out = np.array([ev], wire.EVENT_DTYPE)
            out["order_id"] = owner[1]
            out["contra_order_id"] = 0
            if int(ev["leaves_qty"]) > 0 and int(ev["kind"]) != wire.EventKind.REJECTED:
                s.live[owner[1]] = out[0].copy()
            elif not int(ev["leaves_qty"]) and int(ev["kind"]) != wire.EventKind.TRIGGERED:
                s.live.pop(owner[1], None)
            self._deliver(s, out)

    @staticmethod
    def _deliver(s: _Session, out: np.ndarray) -> None:
        while s.outbound.push_batch(out) == 0:
            pass
        if s.notify_fd is not None:
            os.eventfd_write(s.notify_fd, 1)

    def _reject_invalid(self, s: _Session, cmd: np.void) -> None:
        """The pump's answer (gateway_pump.c, stage_reject) to a kind no client may send."""
        self.invalid += 1
        out = np.zeros(1, wire.EVENT_DTYPE)
        out["kind"] = wire.EventKind.REJECTED
        out["reason"] = wire.RejectReason.INVALID_COMMAND
        for name in ("side", "symbol_id", "order_id", "price", "quantity"):
            out[name] = cmd[name]
        out["account_id"] = s.account_id
        self._deliver(s, out)

    def _answer_status(self, s: _Session, cmd: np.void) -> None:
        """The pump's ORDER_STATUS answer (gateway_status.c), from what was routed."""
        symbol = int(cmd["symbol_id"])
        rows = [e for cid, e in sorted(s.live.items()) if symbol in (0, int(e["symbol_id"]))]
        out = np.zeros(len(rows) + 1, wire.EVENT_DTYPE)
        for i, e in enumerate(rows):
            for name in ("side", "symbol_id", "order_id", "price", "leaves_qty"):
                out[i][name] = e[name]
            out[i]["quantity"] = e["leaves_qty"]
            out[i]["reason"] = wire.OrderState.OPEN
        out["kind"] = wire.EventKind.ORDER_STATUS
        out["account_id"] = s.account_id
        out["contra_order_id"] = cmd["order_id"]
        out[-1]["flags"] = wire.EventFlag.LAST
        out[-1]["order_id"] = cmd["order_id"]
        out[-1]["symbol_id"] = symbol
        out[-1]["quantity"] = len(rows)
        self._deliver(s, out)

    def poll(self) -> int:
        buf = np.zeros(256, wire.COMMAND_DTYPE)
        moved = 0
        with self._lock:
            for sid, s in list(self.sessions.items()):
                n = s.inbound.pop_batch(buf)
                for cmd in buf[:n].copy():
                    # counted before it is answered: a test that has seen the answer
                    # sees the count too
                    self.commands += 1
                    cmd["account_id"] = s.account_id
                    client_id = int(cmd["order_id"])
                    if cmd["kind"] == wire.CommandKind.ORDER_STATUS:
                        self._answer_status(s, cmd)
                        continue
                    if int(cmd["kind"]) not in CLIENT_KINDS:
                        self._reject_invalid(s, cmd)
                        continue
                    if cmd["kind"] == wire.CommandKind.NEW_ORDER:
                        xid = next(self._exchange_ids)
                        s.exchange_ids[client_id] = xid
                        self.owner[xid] = (sid, client_id)
                        cmd["order_id"] = xid
                    elif cmd["kind"] in (wire.CommandKind.CANCEL, wire.CommandKind.REPLACE):
                        cmd["order_id"] = s.exchange_ids.get(client_id, 0)
                    self._route(self.engine.process(np.array([cmd], wire.COMMAND_DTYPE)).events)
                moved += n
        return moved

    def start(self) -> None:
        def pump() -> None:
            while not self._stop.is_set():
                if not self.poll():
                    self._stop.wait(0.0005)

        self._thread = threading.Thread(target=pump, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def resume(self) -> None:
        """Start the pump again after :meth:`stop` (a test holding the commands back)."""
        self._stop.clear()
        self.start()

    def stats(self) -> dict[str, int]:
        return {"commands": self.commands, "sessions": len(self.sessions)}

    def close(self) -> None:
        self.stop()
