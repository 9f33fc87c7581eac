"""GatewayCore: the Python face of the native order-entry pump (``native/gateway.h``).

The gateway process (uvloop, sessions, protocols) owns the sockets and the client
rings; this object owns the pump that moves records between those rings and the shards:

- ``__init__`` attaches every shard's command ring (as producer) and event ring (as
  consumer) by the supervisor's names, and loads the instruments and accounts;
- ``add_session`` / ``remove_session`` plug a client's pair of rings in and out;
- ``set_account_limits`` (hot reload) and ``kill`` (kill switch) change risk at run time;
- ``start`` runs the pump in a thread — the loop is C with the GIL released, so Python
  keeps running beside it — and ``poll`` does one pass for tests or a caller's own loop.

Every method may be called while the pump thread runs: the C side serialises them with
the pump between two passes.

A session's outbound ring has one producer, the pump: the gateway process must not push
its own records (login answers, heartbeats) into it. A client that stops reading fills its
outbound ring; the pump then leaves that shard's later events in the shard ring until
there is room (``stats()["event_stalls"]`` counts such passes), which holds back the
shard's other sessions too — the gateway process should disconnect such a client
(:meth:`GatewayCore.stalled_sessions` names them).

A gateway that starts after another one died rebuilds what that one knew
(``tradsys.gateway.recovery``): positions and filled notional from the ledger
(:meth:`GatewayCore.attach_ledger`, ``tradsys.gateway.ledger``), the live orders from the
workers' order images (:meth:`GatewayCore.restore`), after counting the fills still in
the event rings (:meth:`GatewayCore.drain`), and the events it held for accounts without
a session from the held-events log (:meth:`GatewayCore.attach_held`). Restored orders
belong to their account and go to its first session. With ``cancel_on_start`` (the
default) the orders of every cancel-on-disconnect account are then cancelled (MASS_CANCEL
per shard, sent on the first pass), since every session of the old gateway is gone; once
the workers' images are restored, only for the accounts that have orders in them.

Order ids: a client writes its own client order id in ``order_id``; the pump assigns the
exchange id ``(epoch << 40) | n``. ``epoch`` must exceed every earlier incarnation's so
that ids keep growing across restarts (the engine rejects an id that does not):
:func:`next_epoch` keeps one in a file.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tradsys._native import ffi, lib
from tradsys.config import AccountSection, Config, account_limit_problems
from tradsys.cores.sched_slice import set_thread_slice
from tradsys.files import replace_file
from tradsys.gateway.ledger import LedgerFile
from tradsys.gateway.risk import AccountState, PositionState, limits_cdata
from tradsys.metrics.latency_segment import (
    LatencySegment,
    attach_if_present,
    gateway_segment_name,
    shard_segment_name,
)
from tradsys.ring import Ring, WaitStrategy, segment_name
from tradsys.wire import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    LAYOUT_VERSION,
    RECORD_SIZE,
    ControlCode,
    RejectReason,
)

log = logging.getLogger("tradsys.gateway")

EPOCH_SHIFT = 40
MAX_EPOCH = (1 << 24) - 1
# next_epoch's floor: minutes since 2024-01-01, so a lost epoch file still moves forward
_EPOCH_BASE_S = 1_704_067_200

_STATUS = {
    lib.TS_GW_ERR_ARGUMENT: "a bad argument",
    lib.TS_GW_ERR_FULL: "a table is full (raise the [gateway] maximum)",
    lib.TS_GW_ERR_UNKNOWN: "unknown",
    lib.TS_GW_ERR_EXISTS: "already exists",
    lib.TS_GW_ERR_NOMEM: "out of memory",
}

_STAT_FIELDS = (
    "orders_adopted",
    "orders_restored",
    "restore_skipped",
    "restore_no_client_id",
    "recovery_events",
    "events_held_restored",
    "events_held_volatile",
    "recovery_duplicates",
    "events_unread_held",
    "events_unread_dropped",
    "events_unpinned",
    "commands_at_close",
    "disconnect_cancel_answers",
    "status_requests",
    "status_orders",
    "passes",
    "handoff_yields",
    "commands_in",
    "commands_out",
    "events_in",
    "events_routed",
    "events_unknown",
    "events_orphaned",
    "events_held",
    "event_stalls",
    "parks",
    "sessions",
    "live_orders",
    "clock_ticks",
    "accounts_live",
)


FIGURE_ROW_DTYPE = np.dtype(
    [
        ("account_index", "<u4"),
        ("account_id", "<u4"),
        ("symbol_id", "<u4"),
        ("killed", "<i4"),
        ("a", "<i8"),
        ("b", "<i8"),
        ("c", "<i8"),
    ]
)
"""ts_figure_row (native/gateway.h): an account's own row (symbol_id 0: open orders, open
notional, filled notional) or one of its non-flat positions (position, open buy, sell)."""


class GatewayError(Exception):
    """A gateway call failed; the message says which and why."""


def instrument_capacity(n: int) -> int:
    """The gateway's instrument table for n configured symbols: at least 64 and a power of
    two, so that adding a few symbols to the config keeps the ledger's layout (a ledger of
    another layout starts empty: tradsys.gateway.ledger)."""
    cap = 64
    while cap < n:
        cap *= 2
    return cap


def _wire_records(
    records: np.ndarray[Any, Any] | None, dtype: np.dtype[Any]
) -> np.ndarray[Any, Any]:
    """Records as one contiguous array of the wire dtype (empty for none)."""
    if records is None:
        return np.zeros(0, dtype)
    return np.ascontiguousarray(records if records.dtype == dtype else records.astype(dtype))


def _check(rc: int, what: str) -> int:
    if rc < 0:
        raise GatewayError(f"{what}: {_STATUS.get(rc, f'status {rc}')}")
    return rc


def next_epoch(path: str | Path) -> int:
    """The epoch for a gateway starting now, recorded in ``path`` for the next start:
    one more than the last one recorded, and never less than the minutes since 2024."""
    p = Path(path)
    try:
        last = int(p.read_text().strip() or 0)
    except FileNotFoundError:
        last = 0
    epoch = max(last + 1, int(time.time() - _EPOCH_BASE_S) // 60)
    if epoch > MAX_EPOCH:
        raise GatewayError(f"{p}: epoch {epoch} is beyond {MAX_EPOCH}")
    # durable: after a power loss an older epoch read back would reuse exchange ids
    # ((epoch << 40) | n) that orders resting in the recovered books still carry
    replace_file(p, f"{epoch}\n".encode(), durable=True)
    return epoch


@dataclass
class _Session:
    inbound: Ring
    outbound: Ring


class GatewayCore:
    """The native pump between client sessions and shard rings, with pre-trade risk."""

    def __init__(self, config: Config, *, epoch: int, cancel_on_start: bool = True) -> None:
        if not 0 < epoch <= MAX_EPOCH:
            raise GatewayError(f"epoch {epoch} must be in 1..{MAX_EPOCH}")
        g = config.gateway
        for acc in config.accounts:
            problems = account_limit_problems(acc)
            if problems:
                raise GatewayError("; ".join(problems))
        cfg = ffi.new("ts_gateway_config *")
        cfg.max_sessions = g.max_sessions
        cfg.max_accounts = max(g.max_accounts, len(config.accounts), 1)
        cfg.max_instruments = instrument_capacity(len(config.instruments))
        cfg.max_batch = g.pump_batch
        cfg.max_orders = g.max_live_orders
        cfg.epoch = epoch
        cfg.clock_tick_us = g.clock_tick_us
        cfg.yield_every_us = g.yield_every_us
        wait = WaitStrategy.named(config.engine.wait).cdata
        cfg.wait.kind = wait.kind
        cfg.wait.spin_iters = wait.spin_iters
        cfg.wait.yield_iters = wait.yield_iters
        gw = lib.ts_gateway_new(cfg)
        if gw == ffi.NULL:
            raise GatewayError(
                "cannot create the gateway: check [gateway] max_sessions, max_accounts, "
                "max_live_orders (< 2^32) and pump_batch (all > 0), or memory"
            )
        self._gw: Any = ffi.gc(gw, lib.ts_gateway_free)
        self.epoch = epoch
        self._shard_rings: list[Ring] = []
        self._latency: list[LatencySegment] = []  # stage latencies, if the supervisor made them
        self._event_rings: dict[int, Ring] = {}
        self._ledger: LedgerFile | None = None
        self._held: LedgerFile | None = None
        self._sessions: dict[int, _Session] = {}
        self._symbols: dict[str, int] = {}
        self._stop = ffi.new("int32_t *")
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # cancel_on_start: the accounts _cancel_left_over cancels before the first pass
        self._left_over: list[int] | None = None
        self._image_accounts: set[int] | None = None  # of the orders restored, if any image
        try:
            self._attach_shards(config)
            self._attach_latency(config)
            placement = {
                ins.symbol: shard.id
                for shard in config.shards
                for ins in config.symbols_of(shard.id)
            }
            for ins in config.instruments:
                _check(
                    lib.ts_gateway_add_instrument(
                        self._gw, ins.symbol_id, placement[ins.symbol], ins.reference_price
                    ),
                    f"instrument {ins.symbol!r}",
                )
                self._symbols[ins.symbol] = ins.symbol_id
            for acc in config.accounts:
                self.set_account_limits(acc)
            if cancel_on_start:
                # a gateway that starts has no sessions: whatever an earlier one left
                # resting for a cancel-on-disconnect account is an orphan to cancel
                self._left_over = [acc.id for acc in config.accounts if acc.cancel_on_disconnect]
        except BaseException:
            self.close()
            raise

    def _attach_shards(self, config: Config) -> None:
        instance = config.engine.instance
        for shard in config.shards:
            cmd = Ring.attach(
                segment_name(instance, "cmd", shard.id),
                slot_size=RECORD_SIZE,
                layout_version=LAYOUT_VERSION,
                role="producer",
            )
            self._shard_rings.append(cmd)
            evt = Ring.attach(
                segment_name(instance, "evt", shard.id),
                slot_size=RECORD_SIZE,
                layout_version=LAYOUT_VERSION,
                role="consumer",
            )
            self._shard_rings.append(evt)
            self._event_rings[shard.id] = evt
            _check(
                lib.ts_gateway_add_shard(self._gw, shard.id, cmd.handle, evt.handle),
                f"shard {shard.id}",
            )

    def _attach_latency(self, config: Config) -> None:
        """Stage-latency recording (native/gateway_latency.h), where segments exist."""
        instance = config.engine.instance
        own = attach_if_present(gateway_segment_name(instance))
        if own is not None:
            self._latency.append(own)
            lib.ts_gateway_set_latency(self._gw, own.cdata)
        for shard in config.shards:
            seg = attach_if_present(shard_segment_name(instance, shard.id))
            if seg is not None:
                self._latency.append(seg)
                _check(lib.ts_gateway_set_shard_latency(self._gw, shard.id, seg.cdata), "lat")

    # ---- sessions ------------------------------------------------------------------------

    def add_session(
        self,
        account_id: int,
        inbound: Ring,
        outbound: Ring,
        *,
        notify_fd: int | None = None,
        cancel_on_disconnect: bool | None = None,
    ) -> int:
        """Plug in a client: the pump pops COMMAND records from ``inbound`` and pushes
        EVENT records to ``outbound`` (writing 1 to the eventfd ``notify_fd`` after a
        pass that pushed). ``cancel_on_disconnect`` None follows the account. The rings
        must stay open until :meth:`remove_session`. Returns the session id."""
        for ring in (inbound, outbound):
            if ring.slot_size != RECORD_SIZE:
                raise GatewayError(f"ring {ring.name}: slots are {ring.slot_size} bytes, not 64")
        cod = -1 if cancel_on_disconnect is None else int(cancel_on_disconnect)
        sid = lib.ts_gateway_add_session(
            self._gw,
            account_id,
            inbound.handle,
            outbound.handle,
            -1 if notify_fd is None else notify_fd,
            cod,
        )
        _check(sid, f"session for account {account_id}")
        self._sessions[sid] = _Session(inbound, outbound)
        return int(sid)

    def take_dropped(self, account_id: int) -> int:
        """Events of the account's orders dropped instead of kept for its next session
        (past the 4 096 kept per account) since the last call, which starts the count
        again: a login tells its new session, which then knows to ask for ORDER_STATUS."""
        return int(lib.ts_gateway_take_dropped(self._gw, account_id))

    def return_dropped(self, account_id: int, n: int) -> None:
        """Put back a count :meth:`take_dropped` gave a login whose client may never have
        read it: the account's next login is told it again."""
        lib.ts_gateway_return_dropped(self._gw, account_id, n)

    def remove_session(
        self,
        session_id: int,
        unread: np.ndarray[Any, Any] | None = None,
        unsent: np.ndarray[Any, Any] | None = None,
    ) -> None:
        """Unplug a session: once this returns the pump never touches its rings or its
        eventfd again (they may be closed at once). What its client sent is acted on
        first -- what its inbound ring holds, then ``unsent`` (COMMAND records the caller
        kept for want of room in it) -- then its live orders are cancelled if it was
        cancel-on-disconnect. What its client never read -- ``unread`` (EVENT records the
        caller took out of the outbound ring and could not deliver), then what the ring
        still holds, then the rejects of those last commands -- is held for the account's
        next session, ahead of anything routed later (``native/gateway.h``,
        ts_gateway_remove_session)."""
        if (unread is None or not len(unread)) and (unsent is None or not len(unsent)):
            rc = lib.ts_gateway_remove_session(self._gw, session_id)
        else:
            # records in the wire layout (a packed copy of them is converted by field)
            events = _wire_records(unread, EVENT_DTYPE)
            commands = _wire_records(unsent, COMMAND_DTYPE)
            rc = lib.ts_gateway_remove_session_with(
                self._gw,
                session_id,
                ffi.cast("const ts_event *", ffi.from_buffer(events)),
                len(events),
                ffi.cast("const ts_command *", ffi.from_buffer(commands)),
                len(commands),
            )
        _check(rc, f"session {session_id}")
        del self._sessions[session_id]

    # ---- risk ------------------------------------------------------------------------------

    def set_account_limits(self, account: AccountSection) -> None:
        """Add an account or replace its limits (hot reload); its open orders, exposure
        and positions are kept, its sessions' throttles follow the new rate at once."""
        problems = account_limit_problems(account)
        if problems:
            raise GatewayError("; ".join(problems))
        _check(
            lib.ts_gateway_set_account(self._gw, account.id, limits_cdata(account)),
            f"account {account.id}",
        )

    def reload_accounts(self, config: Config) -> None:
        """Hot reload every ``[[account]]`` of a (re-read) config: each one's limits are
        replaced, new ones added. All are checked before any is applied. Accounts missing
        from the new config keep their old limits (the pump never forgets an account)."""
        problems = [p for acc in config.accounts for p in account_limit_problems(acc)]
        if problems:
            raise GatewayError("; ".join(problems))
        # every account's C limits built before the first is applied: nothing half done
        limits = [(acc.id, limits_cdata(acc)) for acc in config.accounts]
        for account_id, cdata in limits:
            _check(lib.ts_gateway_set_account(self._gw, account_id, cdata), f"account {account_id}")

    def kill(self, account_id: int | None, on: bool = True) -> None:
        """Kill switch of one account, or of every account (None): on=True cancels the
        resting orders (MASS_CANCEL to every shard) and rejects new orders and replaces
        with KILL_SWITCH until it is turned off again."""
        if account_id is not None and account_id <= 0:
            raise GatewayError(f"kill: account id {account_id} must be > 0 (None = all)")
        _check(lib.ts_gateway_kill(self._gw, account_id or 0, int(on)), f"kill {account_id}")

    def mass_cancel(self, account_id: int | None) -> None:
        """Cancel every resting order of one account (None: of every account) on every
        shard, after anything already sent. Unlike :meth:`kill` it blocks nothing."""
        if account_id is not None and account_id <= 0:
            raise GatewayError(f"mass_cancel: account id {account_id} must be > 0 (None = all)")
        _check(lib.ts_gateway_mass_cancel(self._gw, account_id or 0), f"mass_cancel {account_id}")

    def set_shard_down(self, shard_id: int, down: bool) -> None:
        """Mark a shard's worker down (its symbols' commands are answered
        SHARD_UNAVAILABLE) or running again (ts_gateway_set_shard_down)."""
        _check(lib.ts_gateway_set_shard_down(self._gw, shard_id, int(down)), f"shard {shard_id}")

    def market_control(self, symbol_id: int | None, control: ControlCode) -> None:
        """The operator's trading-phase control (HALT, RESUME, AUCTION_START, ...) for one
        symbol, or for every symbol of every shard (None), after every command already
        sent. The engine answers with the symbol's STATUS market data (or rejects a
        control its phase does not allow, which changes nothing)."""
        if control == ControlCode.CLOCK_TICK:
            raise GatewayError("market_control: the clock is the gateway's own")
        _check(
            lib.ts_gateway_market_control(self._gw, symbol_id or 0, int(control)),
            f"market control {ControlCode(control).name} of symbol {symbol_id}",
        )

    def account_state(self, account_id: int) -> AccountState:
        out = ffi.new("ts_account_state *")
        _check(lib.ts_gateway_account_state(self._gw, account_id, out), f"account {account_id}")
        return AccountState(
            open_orders=out.open_orders,
            open_notional=out.open_notional,
            filled_notional=out.filled_notional,
            killed=bool(out.killed),
        )

    def figures(
        self, cursor: int, budget: int, rows: np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], int]:
        """The not-idle accounts' figures from account index ``cursor`` on, looking at
        about ``budget`` positions (ts_gateway_figures): the rows written into ``rows``
        (FIGURE_ROW_DTYPE, at least instruments + 1 of them) and the cursor to go on from
        (0: the last account was done)."""
        if rows.dtype != FIGURE_ROW_DTYPE or not rows.flags.c_contiguous:
            raise ValueError("rows must be a contiguous FIGURE_ROW_DTYPE array")
        at = ffi.new("uint32_t *", cursor)
        out = ffi.cast("ts_figure_row *", ffi.from_buffer(rows, require_writable=True))
        n = lib.ts_gateway_figures(self._gw, at, budget, out, len(rows))
        return rows[:n], int(at[0])

    def position(self, account_id: int, symbol: str | int) -> PositionState:
        symbol_id = self._symbols[symbol] if isinstance(symbol, str) else symbol
        out = ffi.new("ts_position_state *")
        _check(
            lib.ts_gateway_position(self._gw, account_id, symbol_id, out),
            f"position of account {account_id} in {symbol!r}",
        )
        return PositionState(out.position, out.open_buy, out.open_sell)

    # ---- restart (tradsys.gateway.recovery drives these, before the pump starts) -----------

    def attach_ledger(self, path: str | Path, run_id: int) -> bool:
        """Keep the ledger in the file ``path`` (made if missing). True when it holds this
        run's figures, which are now loaded; False when it started empty."""
        if self._ledger is not None:
            raise GatewayError("a ledger is attached already")
        size = int(lib.ts_gateway_ledger_size(self._gw))
        ledger = LedgerFile(Path(path), size)
        rc = lib.ts_gateway_attach_ledger(self._gw, ledger.pointer, size, run_id)
        if rc < 0:
            ledger.close()
            _check(rc, f"ledger {path}")
        self._ledger = ledger
        return bool(rc)

    def attach_held(self, path: str | Path) -> int:
        """Keep the events held for session-less accounts in the file ``path`` too (made
        if missing; ``native/gateway_held.c``), so a gateway killed with them does not
        lose them. After :meth:`attach_ledger`, before :meth:`drain`. Returns the
        undelivered events an earlier gateway left there: they go to their accounts'
        next sessions first (after :meth:`hold_drained`)."""
        if self._held is not None:
            raise GatewayError("a held-events log is attached already")
        size = int(lib.ts_gateway_held_size(self._gw))
        held = LedgerFile(Path(path), size)
        rc = lib.ts_gateway_attach_held(self._gw, held.pointer, size)
        if rc < 0:
            held.close()
            _check(rc, f"held-events log {path} (attach it once, before any drain)")
        self._held = held
        return int(rc)

    def drain(self, max_batch: int = 4096) -> int:
        """Count the fills waiting in the shards' event rings into positions (each trade
        once, through the ledger) and drop the rest; nothing is routed. Before the pump
        runs only."""
        if self.running:
            raise GatewayError("drain is for a gateway whose pump is not running")
        return int(lib.ts_gateway_drain(self._gw, max_batch))

    def events_waiting(self, shard_id: int) -> int:
        """Records in a shard's event ring not yet taken."""
        return self._event_rings[shard_id].readable

    def wait_events(self, timeout_s: float) -> None:
        """Wait until some shard's event ring has records, or the timeout passes."""
        for ring in self._event_rings.values():
            if ring.readable:
                return
        rings = list(self._event_rings.values())
        if rings:
            rings[0].wait_readable(timeout=timeout_s / len(rings))

    def restore(self, orders: Any) -> int:
        """Rebuild live orders from a worker's order image (a ``LIVE_ORDER_DTYPE``
        array); before any session. Returns how many were restored."""
        if self._sessions:
            raise GatewayError("restore before any session is added")
        n = len(orders)
        ptr = ffi.cast("ts_live_order *", ffi.from_buffer(orders)) if n else ffi.NULL
        restored = int(_check(lib.ts_gateway_restore(self._gw, ptr, n), "restore"))
        if self._image_accounts is None:
            self._image_accounts = set()
        self._image_accounts.update(int(a) for a in np.unique(orders["account_id"]))
        return restored

    def _cancel_left_over(self) -> None:
        """Before the first pass (``cancel_on_start``): a MASS_CANCEL on every shard for
        each cancel-on-disconnect account. Once images are restored, only for the accounts
        they name: every order resting in a book is in its worker's image (taken with the
        worker's command ring empty) and nothing is sent before the first pass, so another
        account has nothing to cancel -- and a start with 10 000 such accounts would
        otherwise journal 10 000 no-op commands per shard."""
        left, self._left_over = self._left_over, None
        for account_id in left or []:
            if self._image_accounts is None or account_id in self._image_accounts:
                self.mass_cancel(account_id)

    def hold_stale_ring(self, ring: Ring) -> int:
        """Before any session: hold what a dead gateway's session never read from its
        outbound ``ring`` (only read here) for the session's account, ahead of the events
        already held. Returns how many were kept (see ts_gateway_hold_stale_ring)."""
        if self._sessions:
            raise GatewayError("hold a dead gateway's unread events before any session")
        return int(_check(lib.ts_gateway_hold_stale_ring(self._gw, ring._ring), "hold unread"))

    def hold_drained(self) -> int:
        """After the restores: keep the drained events, in client ids, for each account's
        next session (their first events). Returns how many were kept."""
        return int(_check(lib.ts_gateway_hold_drained(self._gw), "hold drained events"))

    # ---- the pump ----------------------------------------------------------------------------

    def poll(self, max_batch: int = 256, *, now_ns: int | None = None) -> int:
        """One pass over every session and shard; returns the records moved. ``now_ns``
        (CLOCK_MONOTONIC ns) replaces the clock for the throttles, for tests."""
        self._cancel_left_over()
        if now_ns is None:
            return int(lib.ts_gateway_poll(self._gw, max_batch))
        return int(lib.ts_gateway_poll_at(self._gw, max_batch, now_ns))

    def start(self, *, cpu: int | None = None, sched_slice_us: int = 0) -> None:
        """Run the pump in a thread until :meth:`stop`; ``cpu`` pins that thread alone (the
        rest of the process keeps its own affinity), e.g. the pump on one isolated core
        and the event loop on another; ``sched_slice_us`` gives that thread a short
        scheduler slice (tradsys.cores.sched_slice; 0: the default)."""
        if cpu is not None and cpu not in os.sched_getaffinity(0):
            raise GatewayError(
                f"cpu {cpu} is not one this process may run on "
                f"({', '.join(map(str, sorted(os.sched_getaffinity(0))))})"
            )
        with self._lock:
            if self._thread is not None:
                raise GatewayError("the gateway pump is already running")
            self._cancel_left_over()
            self._stop[0] = 0
            self._thread = threading.Thread(
                target=self._run, args=(cpu, sched_slice_us), name="gateway-pump", daemon=True
            )
            self._thread.start()

    def _run(self, cpu: int | None, sched_slice_us: int) -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})  # pid 0 from a thread: this thread only
        if sched_slice_us:
            try:
                set_thread_slice(sched_slice_us * 1000)
            except OSError as exc:
                log.warning("gateway pump: %s; running with the default slice", exc)
        lib.ts_gateway_run(self._gw, self._stop)

    @property
    def pump_thread_id(self) -> int | None:
        """The pump thread's kernel id while it runs (for pinning checks, profilers)."""
        thread = self._thread
        return None if thread is None else thread.native_id

    def stop(self) -> None:
        """Stop the pump thread (a no-op if it is not running)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._stop[0] = 1
            lib.ts_gateway_wake(self._gw)
            thread.join()

    def stalled_sessions(self) -> list[int]:
        """Sessions whose full outbound ring is holding a shard's events back right now:
        clients that stopped reading. Disconnect them (remove_session)."""
        out = ffi.new("int64_t[]", max(len(self._sessions), 1))
        n = lib.ts_gateway_stalled_sessions(self._gw, out, len(out))
        return [int(out[i]) for i in range(n)]

    def check_due(self) -> tuple[int, int]:
        """A self-check for tests: (sessions whose count of answers owed differs from what
        their orders say, the sum of the counts). Walks every order."""
        total = ffi.new("int64_t *")
        wrong = lib.ts_gateway_check_due(self._gw, total)
        return int(wrong), int(total[0])

    @property
    def running(self) -> bool:
        return self._thread is not None

    def stats(self) -> dict[str, int]:
        """Counters: passes, commands in/out, events in/routed/unknown/orphaned, stalls,
        parks, sessions, live orders, and ``rejects.<REASON>`` for every reject reason."""
        raw = ffi.new("ts_gateway_stats *")
        lib.ts_gateway_get_stats(self._gw, raw)
        out = {name: int(getattr(raw, name)) for name in _STAT_FIELDS}
        for reason in RejectReason:
            if reason is not RejectReason.NONE:
                out[f"rejects.{reason.name}"] = int(raw.rejects[reason])
        out["rejects"] = sum(int(raw.rejects[i]) for i in range(64))
        return out

    def close(self) -> None:
        """Stop the pump, free the native gateway and detach from the shard rings.
        Idempotent. The session rings stay the caller's to close."""
        self.stop()
        gw, self._gw = self._gw, None
        if gw is not None:
            ffi.release(gw)
        for mapped in (self._ledger, self._held):  # after the gateway that writes them
            if mapped is not None:
                mapped.close()
        self._ledger = self._held = None
        self._event_rings.clear()
        for ring in self._shard_rings:
            ring.close()
        self._shard_rings.clear()
        for seg in self._latency:  # after the free: the pump wrote into them
            seg.close()
        self._latency.clear()
        self._sessions.clear()

    def __enter__(self) -> GatewayCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
