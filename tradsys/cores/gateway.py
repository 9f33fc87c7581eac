"""The gateway process: the control plane of order entry, beside the native pump.

``python -m tradsys.cores.gateway <instance_dir>/config.json`` (the sidecar contract of
``tradsys.cores.sidecar``) runs it: the native ``GatewayCore`` (``tradsys.gateway``) moves
orders between session rings and shard rings in its own C thread with the GIL released,
while this process's uvloop loop does what is rare per order or not per order at all:
colocated handshakes on the Unix socket, TCP binary sessions, heartbeats, and stats. Once
it serves, the garbage collector is tuned for trading (``tradsys.gctune``) and every
collection is timed; the figures go into the announcement file, refreshed periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import uvloop

from tradsys import logs
from tradsys.config import Config, ConfigError, available_cores, housekeeping_cores, split_listen
from tradsys.cores.gateway_admin import AdminEdge, admin_socket_path
from tradsys.cores.gateway_auth import Credentials
from tradsys.cores.gateway_colocated import ColocatedEdge
from tradsys.cores.gateway_figures import AccountFigures
from tradsys.cores.gateway_rings import RingMaker, reclaim_stale_keeping_unread
from tradsys.cores.gateway_sessions import SessionCore, SessionTable
from tradsys.cores.gateway_shards import ShardWatch
from tradsys.cores.gateway_stale import UnsentCommands, answer_unsent, read_unsent
from tradsys.cores.gateway_tcp import TcpEdge
from tradsys.cores.kill_switches import (
    KILL_FILE,
    KillSwitches,
    KillSwitchFileError,
    read_kill_switches,
)
from tradsys.cores.liveness import Beater, beat_interval_s
from tradsys.cores.memory_lock import lock_if_asked
from tradsys.cores.parent_watch import STOP_SIGNALS, stop_with_supervisor
from tradsys.cores.session_accounts import (
    SESSIONS_FILE,
    SessionAccounts,
    forget_session_accounts,
    read_session_accounts,
)
from tradsys.cores.sidecar import (
    announce_ready,
    kept_endpoints,
    read_effective_config,
    withdraw,
    write_effective_config,
)
from tradsys.exit_codes import EXIT_INTERNAL as EXIT_FAILURE
from tradsys.exit_codes import EXIT_OK, EXIT_USER_ERROR, exit_code_for
from tradsys.files import replace_file
from tradsys.gateway import GatewayCore, GatewayError, next_epoch
from tradsys.gateway.recovery import RestoreRefusedError, recover
from tradsys.gctune import GcMonitor, tune_for_trading
from tradsys.protocols.binary import EndReason, SymbolInfo, encode_symbols
from tradsys.ring import RingError
from tradsys.ring.segment import unlink_quietly

NAME = "gateway"
TCP_ENDPOINT_KEY = "tcp_endpoint"  # in the announcement: the TCP listener as an endpoint
# Once a second: the stats write runs on the event loop's thread, which shares a CPU with
# the pump when [gateway] core is unset (and with colocated clients on a small host).
STATS_INTERVAL_S = 1.0

EPOCH_FILE = "gateway.epoch"
STATS_FILE = "gateway.stats.json"

log = logging.getLogger("tradsys.gateway")


def unix_socket_path(config: Config) -> Path:
    """Where colocated clients connect: ``gateway.unix_socket``, relative to the
    instance's directory unless absolute."""
    path = Path(config.gateway.unix_socket)
    return path if path.is_absolute() else config.instance_dir / path


def parse_listen(value: str) -> tuple[str, int]:
    return split_listen("gateway.tcp_listen", value)


def symbol_directory(config: Config) -> bytes:
    """The SYMBOLS frame(s) every session gets after its LOGIN_ACCEPTED: every instrument
    (each is on some shard), so a client can name them (``submit("ACME", ...)``); more
    than 1024 come in several frames (``encode_symbols``)."""
    return encode_symbols(
        [
            SymbolInfo(ins.symbol_id, ins.symbol, ins.tick_size, ins.lot_size)
            for ins in config.instruments
        ]
    )


class GatewayServer:
    """The asyncio half of the gateway: both edges, heartbeats and stats, over a core
    that implements :class:`SessionCore` (the native one, or a test's fake)."""

    def __init__(self, config: Config, core: SessionCore) -> None:
        gw = config.gateway
        self.config = config
        self.core = core
        credentials = Credentials(config)
        self.table = SessionTable(
            core,
            RingMaker(config.engine.instance, gw.session_ring_capacity),
            gw.max_sessions,
            accounts=SessionAccounts(config.instance_dir / SESSIONS_FILE),
        )
        directory = symbol_directory(config)
        self.colocated = ColocatedEdge(
            credentials, self.table, gw.login_timeout_ms / 1000, directory=directory
        )
        self.tcp = TcpEdge(
            credentials,
            self.table,
            gw.heartbeat_ms / 1000,
            gw.login_timeout_ms / 1000,
            directory=directory,
            unacked_max=gw.tcp_unacked_max,
        )
        self.gc = GcMonitor()
        # the accounts' figures in the stats file, bounded whatever accounts x symbols
        self.figures = AccountFigures(core, config) if isinstance(core, GatewayCore) else None
        # commands for a shard whose worker stays down are answered, not left waiting
        self.shard_watch = ShardWatch(config, core) if isinstance(core, GatewayCore) else None
        # the operator's channel (tradsys admin), over the native core's controls
        self.admin = (
            AdminEdge(
                config,
                core,
                credentials,
                on_config=self._set_config,
                persist=write_effective_config,
            )
            if isinstance(core, GatewayCore)
            else None
        )
        self.unix_path = unix_socket_path(config)
        self.stalled_since: dict[int, float] = {}  # session id -> first seen holding back
        self.slow_consumers = 0  # sessions ended for it
        # set by SIGCONT (the supervisor continuing a suspended engine), read by the tick
        self.continued = False
        self.tcp_address = ""
        self._servers: list[asyncio.Server] = []
        self._socket_files: list[Path] = []  # the ones this server bound (close unlinks them)
        self._tick: asyncio.TimerHandle | None = None

    def _set_config(self, config: Config) -> None:
        self.config = config  # reloaded accounts: the stats name them
        if self.figures is not None:
            self.figures.reconfigure(config)

    async def _serve_unix(self, path: Path, handle: Any) -> None:
        """Bind a Unix socket, created 0600 (owner only), replacing a dead gateway's."""
        if len(os.fsencode(path)) >= 108:
            raise ConfigError(
                f"the gateway's socket {path} is {len(os.fsencode(path))} bytes; a Unix "
                "socket path must be under 108: use a shorter data_dir or an absolute "
                "unix_socket"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale_socket(path)
        old_umask = os.umask(0o177)
        try:
            self._servers.append(await asyncio.start_unix_server(handle, path))
        finally:
            os.umask(old_umask)
        self._socket_files.append(path)

    async def start(self) -> None:
        """Bind the Unix sockets and the TCP port, start the heartbeat tick. If it fails
        part way, :meth:`close` undoes what was done (the socket files included)."""
        await self._serve_unix(self.unix_path, self.colocated.handle)
        if self.admin is not None:
            await self._serve_unix(admin_socket_path(self.config), self.admin.handle)
        if self.config.gateway.tcp_listen:
            listen = self.config.gateway.tcp_listen
            host, port = parse_listen(listen)
            # port 0 in a restarted gateway: the port its first start got, so remote
            # clients that know only that address reconnect to it
            kept = kept_endpoints().get(TCP_ENDPOINT_KEY) if port == 0 else None
            if isinstance(kept, str):
                port = int(kept.rsplit(":", 1)[1])
            loop = asyncio.get_running_loop()
            try:
                server = await loop.create_server(self.tcp.factory(), host, port)
            except OSError as exc:
                first = f"on port {port}, the one this instance's gateway got at its first start"
                where = first if kept else "there"
                raise ConfigError(
                    f"gateway.tcp_listen = {listen!r}: cannot listen {where}: "
                    f"{exc.strerror or exc} (another program may hold the port: pick a "
                    'free one, port 0 for any, or "" for no TCP)'
                ) from None
            self._servers.append(server)
            bound = server.sockets[0].getsockname()
            self.tcp_address = f"{bound[0]}:{bound[1]}"
        self._schedule_tick()

    @staticmethod
    def _remove_stale_socket(path: Path) -> None:
        """A socket file left by a dead gateway is removed; a live one is refused."""
        if not path.exists():
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)
            return
        finally:
            probe.close()
        raise ConfigError(f"another gateway already serves {path}; stop it first")

    def _schedule_tick(self) -> None:
        loop = asyncio.get_running_loop()
        # a quarter of the heartbeat interval, or of stalled_session_ms if shorter
        stalled_s = self.config.gateway.stalled_session_ms / 1000 or self.tcp.heartbeat_s
        beater = Beater(beat_interval_s(self.config.engine.heartbeat_timeout_ms))
        interval = max(0.005, min(self.tcp.heartbeat_s / 4, stalled_s / 4, beater.interval_s))

        def tick() -> None:
            now = loop.time()
            if self.continued:
                # the gateway itself was stopped (Ctrl-Z) and read nothing meanwhile: the
                # silence and the stalls measured across the suspend are its own, not its
                # clients' (without this `fg` ended every TCP session)
                self.continued = False
                log.info("continued after a suspend: peers' silence and stalls count afresh")
                self.tcp.forgive_silence(now)
                if self.shard_watch is not None:
                    self.shard_watch.forgive(now)
                self.stalled_since.clear()
            beater.maybe_beat(now)  # the supervisor's sign that this loop runs
            self.tcp.tick(now)
            if self.shard_watch is not None:
                self.shard_watch.watch(now)
            self._end_stalled(now)
            self.table.reap()
            self._tick = loop.call_later(interval, tick)

        self._tick = loop.call_later(interval, tick)

    def _end_stalled(self, now: float) -> None:
        """End every session whose full event ring has held its shards' events back --
        every other session's too -- for ``stalled_session_ms``: a client that stopped
        reading must not stop the shard. Its unread events are kept for the account's
        next session, as at any session end."""
        limit = self.config.gateway.stalled_session_ms / 1000
        if not limit or not isinstance(self.core, GatewayCore):
            return
        stalled = set(self.core.stalled_sessions())
        for sid in [s for s in self.stalled_since if s not in stalled]:
            del self.stalled_since[sid]
        for sid in stalled:
            since = self.stalled_since.setdefault(sid, now)
            if now - since < limit:
                continue
            del self.stalled_since[sid]
            text = f"its event ring held the shard's events back for {limit * 1000:.0f} ms"
            reason = EndReason.SLOW_CONSUMER
            if self.colocated.end(sid, reason, text) or self.tcp.end_session(sid, reason, text):
                self.slow_consumers += 1
                log.warning("session %d ended: %s", sid, text)

    def stats(self) -> dict[str, Any]:
        tcp = self.tcp
        out: dict[str, Any] = {
            **self.table.stats(),
            "tcp_connections": len(tcp.connections),
            "colocated_connections": len(self.colocated.tasks),
            "logins_refused": tcp.logins_refused + self.colocated.logins_refused,
            "protocol_errors": tcp.protocol_errors,
            "heartbeat_timeouts": tcp.heartbeat_timeouts,
            "tcp_unsent_held": tcp.unsent_held,
            "tcp_writes_paused": sum(c.write_paused for c in tcp.connections),
            "tcp_acks": tcp.acks,
            "tcp_bad_acks": tcp.bad_acks,
            "slow_consumers": self.slow_consumers,
            "shards_down": sorted(self.shard_watch.down) if self.shard_watch else [],
            "admin_requests": self.admin.requests if self.admin else 0,
            "admin_refused": self.admin.refused if self.admin else 0,
            "gc": self.gc.stats(),
        }
        core_stats = getattr(self.core, "stats", None)
        if callable(core_stats):
            out["core"] = core_stats()
        if self.figures is not None:
            self.figures.refresh()
            out["accounts"] = self.figures.accounts()
            out["account_figures"] = self.figures.summary()
        return out

    async def close(self) -> None:
        """Stop accepting, end every session (TCP clients get END(SHUTDOWN)), unlink the
        rings and the socket file."""
        if self._tick is not None:
            self._tick.cancel()
        if self.shard_watch is not None:
            self.shard_watch.close()
        for server in self._servers:
            server.close()
        self.tcp.shutdown()
        await self.colocated.shutdown()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()
        self.table.close_all()
        if self.table.accounts is not None:
            self.table.accounts.close()
        for path in self._socket_files:  # never another gateway's: a live one is refused
            path.unlink(missing_ok=True)
        self._socket_files.clear()
        for _ in range(1000):  # the pump finishes its passes within milliseconds
            if not self.table.reap():
                break
            await asyncio.sleep(0.001)


def stats_path(config: Config) -> Path:
    return config.instance_dir / STATS_FILE


def write_stats(config: Config, stats: dict[str, Any]) -> None:
    """The gateway's counters and GC figures, for `tradsys status` and the benches: a
    file of its own (atomic replace), so the announcement stays a short address card."""
    # msgspec and plain system calls: a third of what pathlib and an indented json.dumps cost
    data = msgspec.json.encode({"pid": os.getpid(), "time": time.time(), **stats})
    replace_file(stats_path(config), data)


def read_stats(config: Config) -> dict[str, Any] | None:
    """What the running gateway last wrote, or None."""
    try:
        doc: dict[str, Any] = json.loads(stats_path(config).read_text())
    except (OSError, ValueError):
        return None
    return doc


def control_plane_cpus(config: Config, pump_cpu: int) -> set[int]:
    """Where the event loop (handshakes, TCP sessions, admin) and the threads it starts
    belong: the housekeeping cores, which no engine process is pinned to, so it neither
    takes the pump's CPU nor lands on an isolated worker's or md's core (audit W: with
    ``[gateway] core = 0`` it ran on shard 0's core 1). With no housekeeping core left,
    every core but the pump's."""
    spare = set(housekeeping_cores(config))
    return spare or available_cores() - {pump_cpu}


def keep_control_plane_off(cpus: set[int]) -> None:
    """Move this (the event loop's) thread to ``cpus``; threads it starts later (libuv's
    pool) inherit them. Stays put if that is empty or the cgroup forbids it."""
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)  # pid 0 from a thread: this thread only


def make_core(config: Config, unread_rings: list[str] | None = None) -> GatewayCore:
    """The native gateway core, with an epoch above every earlier run's (so the exchange
    ids a restarted gateway assigns keep growing), and with what an earlier gateway of
    this run knew rebuilt (``tradsys.gateway.recovery``) before the pump starts.
    ``unread_rings``: a dead gateway's session outbound rings, read for what their
    clients never took, then unlinked (also when the start fails: they were read, or
    they never will be)."""
    config.instance_dir.mkdir(parents=True, exist_ok=True)
    try:
        core = GatewayCore(config, epoch=next_epoch(config.instance_dir / EPOCH_FILE))
        try:
            recover(core, config, unread_rings=unread_rings or [])
        except BaseException:
            core.close()
            raise
    finally:
        for name in unlink_quietly(unread_rings or []):
            log.info("removed stale segment %s (its creator is gone)", name)
    return core


async def serve(
    config: Config, core: GatewayCore, unsent: list[UnsentCommands] | None = None
) -> GatewayServer:
    """Serve until SIGTERM/SIGINT, announcing readiness and refreshing the stats; first
    answer the commands a dead gateway's sessions had sent and it never took."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    stop_with_supervisor()  # the supervisor's death is a SIGTERM too
    server = GatewayServer(config, core)
    # a plain handler, not the loop's: it runs before the next Python callback (the tick
    # due at once on resume), where a loop handler would run after the due timers
    signal.signal(signal.SIGCONT, lambda signum, frame: setattr(server, "continued", True))
    try:
        answer_unsent(server.table, config, unsent or [])  # before any client's session
        await server.start()
        # warm-up is over: everything alive now is permanent, collections are timed
        tune_for_trading()
        server.gc.install()
        server.gc.reset()
        admin = str(admin_socket_path(config)) if server.admin is not None else None
        announce_ready(
            config,
            NAME,
            unix_socket=str(server.unix_path),
            tcp=server.tcp_address or None,
            # the same as a tcp:// endpoint, which a restarted gateway binds again
            **({TCP_ENDPOINT_KEY: f"tcp://{server.tcp_address}"} if server.tcp_address else {}),
            admin=admin,  # tradsys admin's socket
        )
        stats_failed = False
        while not stop.is_set():
            try:
                write_stats(config, server.stats())
                stats_failed = False
            except OSError as exc:  # monitoring must not stop order entry (a full disk)
                if not stats_failed:
                    log.warning("cannot write the stats file: %s", exc)
                stats_failed = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STATS_INTERVAL_S)
    finally:
        await server.close()
        server.gc.uninstall()
    return server


def apply_kill_switches(config: Config, core: GatewayCore) -> None:
    """The kill switches an operator left on, in this run or an earlier one
    (tradsys.cores.kill_switches), set before any session is served. An account the
    configuration no longer has is skipped, and said."""
    switches = read_kill_switches(config.instance_dir / KILL_FILE)
    if switches == KillSwitches():
        return
    known = {acc.id for acc in config.accounts}
    if switches.every_account:
        core.kill(None, True)
    for account_id in switches.accounts:
        if account_id in known:
            core.kill(account_id, True)
        else:
            log.warning("kill switch of account %d: no such account in the config", account_id)
    log.warning("kill switches on, as an operator left them: %s", switches.describe())


def run(config_path: str) -> int:
    logs.configure("gateway")
    try:
        config = read_effective_config(config_path)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_USER_ERROR
    if not lock_if_asked(config.engine.lock_memory, "gateway", log.error):
        return EXIT_USER_ERROR
    stale = reclaim_stale_keeping_unread(config.engine.instance)
    for name in stale.removed:
        log.info("removed stale segment %s (its creator is gone)", name)
    sessions_file = config.instance_dir / SESSIONS_FILE
    unsent = read_unsent(stale.unsent, read_session_accounts(sessions_file))
    forget_session_accounts(sessions_file)  # the dead gateway's ring numbers
    try:
        core = make_core(config, stale.unread)
    except RestoreRefusedError as exc:
        log.error("cannot start the gateway: %s", exc)
        return EXIT_USER_ERROR
    except OSError as exc:  # its files: a full or read-only disk
        log.error("cannot start the gateway: %s", exc)
        return exit_code_for(exc.errno)
    except (GatewayError, RingError) as exc:
        log.error("cannot start the gateway core: %s", exc)
        return EXIT_FAILURE
    try:
        apply_kill_switches(config, core)
    except (KillSwitchFileError, GatewayError) as exc:
        log.error("cannot start the gateway: %s", exc)
        core.close()
        return EXIT_USER_ERROR
    try:
        cpu = config.gateway.core
        # [gateway] core: the pump thread alone is pinned there
        core.start(cpu=cpu, sched_slice_us=config.engine.sched_slice_us)
        if cpu is not None:
            keep_control_plane_off(control_plane_cpus(config, cpu))
        server = None
        try:
            server = uvloop.run(serve(config, core, unsent))
        finally:
            core.stop()
            if server is not None:
                server.table.reap(force=True)  # the pump is stopped: nothing touches them
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_USER_ERROR
    finally:
        core.close()
        withdraw(config, NAME)
        stats_path(config).unlink(missing_ok=True)
    log.info("stopped cleanly")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tradsys.cores.gateway <instance_dir>/config.json", file=sys.stderr)
        return EXIT_USER_ERROR
    return run(args[0])


if __name__ == "__main__":
    sys.exit(main())
