"""Pieces shared by the e2e and gc benches: a TradSys instance with its gateway (started
through the Supervisor, as `tradsys run` does, its shard worker on a CPU of its own), the
baseline peer (an asyncio TCP server calling the reference matching model), and open-loop
order senders for shared memory and TCP that measure order → ack from each order's
intended send time (and, watched, each hop of it: see _e2e_stages)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _e2e_stages import RingWatch

from tradsys import wire
from tradsys._native import ffi, lib
from tradsys.client.transport import ColocatedTransport, _login
from tradsys.config import Config, GatewaySection, JournalSection, parse_config
from tradsys.cores.gateway_auth import key_digest
from tradsys.cores.sidecar import read_announcement
from tradsys.cores.supervisor import Supervisor
from tradsys.profiling import LatencyRecorder
from tradsys.protocols.binary import (
    MAX_RECORDS_PER_FRAME,
    FrameBuffer,
    MessageType,
    encode_records,
)
from tradsys.ring import Ring
from tradsys.ring.segment import segment_name

KEY = "bench-key"
EVENTS_PER_ORDER = 2  # an IOC buy on an empty book: ACCEPTED, then CANCELLED
POP_MAX = 8192  # events taken per pop
# The client keeps every event of a run in one array sized and touched before the run, and
# matches events to orders only after it: matching them in 64 k chunks during the run (1-3
# ms of numpy every ~30 ms at 1 M/s) stalled the client's sends, and the pump that shares
# its CPU, and was most of the p99 it then measured. Above this many events (a long run at
# a high rate: 64 B each) it falls back to matching in chunks of this size as it goes.
RUN_EVENTS_MAX = 24 << 20
SYMBOL = 1
PRICE = 10_000
HERE = Path(__file__).resolve().parent
# The worker's periodic snapshot as deployed ([journal] snapshot_every, 1 M commands): it is
# serialized at a batch boundary and written by a background thread (native/
# snapshot_writer.c), so it no longer stops the shard for the write and fsyncs (it did for
# 16-48 ms, and the bench then snapshotted every 10^12 commands to keep that apart);
# TRADSYS_BENCH_SNAPSHOT_EVERY changes it.
SNAPSHOT_EVERY = int(
    float(os.environ.get("TRADSYS_BENCH_SNAPSHOT_EVERY", JournalSection().snapshot_every))
)
# The worker's and the pump's wait: TRADSYS_BENCH_WAIT=busy-spin|spin-yield|spin-park
WAIT = os.environ.get("TRADSYS_BENCH_WAIT", "spin-park")

CONFIG = """
[engine]
instance = "{instance}"
data_dir = "{data_dir}"
wait = "{wait}"
ring_capacity = 65536

[journal]
durability = "none"
snapshot_every = {snapshot_every}

[[shard]]
id = 0
{shard_core}

[[instrument]]
symbol = "ACME"
symbol_id = 1
reference_price = {price}

[gateway]
{gateway_core}
tcp_listen = "127.0.0.1:0"
session_ring_capacity = 65536
heartbeat_ms = 5000
max_live_orders = 1048576
pump_batch = 1024
clock_tick_us = {clock_tick_us}

[md]
enabled = false

[[account]]
id = 1
name = "bench"
api_key_sha256 = "{digest}"
"""


def orders(n: int, first_id: int) -> np.ndarray:
    """IOC buys against an empty book: each is ACCEPTED (the ack the bench times), then
    CANCELLED(IOC_REMAINDER); the book and the gateway's live-order table stay empty.
    The engine's lightest path, with md off and no risk limits set: the README says so
    beside the figures (a resting, trading mix costs the worker more per command)."""
    rec = np.zeros(n, wire.COMMAND_DTYPE)
    rec["kind"] = wire.CommandKind.NEW_ORDER
    rec["order_id"] = np.arange(first_id, first_id + n, dtype=np.uint64)
    rec["symbol_id"] = SYMBOL
    rec["account_id"] = 1
    rec["side"] = wire.Side.BUY
    rec["order_type"] = wire.OrderType.LIMIT
    rec["tif"] = wire.TimeInForce.IOC
    rec["quantity"] = 1
    rec["price"] = PRICE
    return rec


@dataclass
class RunResult:
    """One open-loop run at one offered rate."""

    offered: float
    sent: int
    acked: int
    seconds: float
    latency: LatencyRecorder
    growth_us: float = 0.0  # median latency of the last quarter minus the first quarter
    stamps: np.ndarray | None = None  # per-order stage times (see _e2e_stages), if watched

    @property
    def achieved(self) -> float:
        return self.acked / self.seconds if self.seconds else 0.0

    @property
    def complete(self) -> bool:
        return self.acked == self.sent and self.sent > 0

    def us(self, p: float) -> float:
        return self.latency.percentile_us(p) if self.latency.count else float("inf")

    def sustained(self, growth_limit_us: float, p50_limit_us: float) -> bool:
        """Every order answered, at the offered rate, no queue building up (the median
        latency of the run's last quarter at most ``growth_limit_us`` above the first
        quarter's: an overloaded system's latency grows for as long as it runs), and no
        standing queue (the median at most ``p50_limit_us``: a rate kept up with only
        behind a queue has a median of milliseconds, while a shared machine's stalls
        reach the tail, not the median)."""
        return (
            self.complete
            and self.achieved >= 0.95 * self.offered
            and self.growth_us <= growth_limit_us
            and self.us(50) <= p50_limit_us
        )


Push = Callable[[int, int], int]
Pop = Callable[[int, int], int]
Idle = Callable[[int], Any]


class OrderSender:
    """Open-loop sender over a non-blocking transport: ``push(records) -> taken`` and
    ``pop() -> EVENT records``."""

    chunk = 4096
    # the shortest pass of the send loop: orders that fall due within a tick go out as one
    # batch (one push, at most one wake-up of the pump) instead of one by one
    tick_ns = int(float(os.environ.get("TRADSYS_BENCH_TICK_US", "10")) * 1000)
    watch: RingWatch | None = None

    def push(self, records: np.ndarray) -> int:
        raise NotImplementedError

    def pop_into(self, out: np.ndarray) -> int:
        """Move the events that arrived into ``out``; return how many."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def idle(self, timeout_s: float) -> None:
        """Nothing due, nothing arrived: wait for events up to ``timeout_s``."""

    def bind(self, recs: np.ndarray, buf: np.ndarray) -> tuple[Push, Pop, Idle]:
        """The three calls of the send loop over this run's arrays: ``push(start, stop)``
        sends ``recs[start:stop]`` and returns how many went; ``pop(offset, most)`` moves
        events into ``buf[offset:]`` and returns how many; ``idle(ns)`` waits."""
        push, pop_into, wait = self.push, self.pop_into, self.idle
        return (
            lambda a, b: push(recs[a:b]),
            lambda off, most: pop_into(buf[off : off + most]),
            lambda ns: wait(ns / 1e9),
        )

    def run(
        self,
        rate: float,
        seconds: float,
        first_id: int,
        drain_s: float = 10.0,
        workload: Callable[[int, int, float], np.ndarray] | None = None,
    ) -> RunResult:
        """Send ``rate * seconds`` orders on the timetable; time each ack.

        After the timetable the session waits up to ``drain_s`` for the rest of its events:
        long enough for an overloaded run's backlog (4 M/s for 3 s is ~6 s of work at 2
        M/s) to be answered on this session, so that none of it is still in the engine
        when the next run starts -- where it would queue ahead of that run's orders, and
        its events would go to that run's session.

        The loop does as little Python per pass as it can (a push, a pop into the run's
        event array, a clock read), so that the client is not what limits the rate nor
        what makes the tail: the events are matched to their orders in bulk with numpy
        after the run (see RUN_EVENTS_MAX). Each order of
        this workload makes exactly EVENTS_PER_ORDER events, which says when all are in;
        so must ``workload(n, first_id, step_ns)``, where given (the orders to send in
        place of :func:`orders`, ids from ``first_id``, due every ``step_ns`` from now).
        Each pass sends every order that is due; between passes the client waits (see
        ``bind``'s idle) until the next order is due but at least a tick, or until events
        arrive, so that at a high rate it sends a batch per tick.
        """
        tune_client_thread()
        n = max(1, int(rate * seconds))
        step_ns = 1e9 / rate
        recs = orders(n, first_id) if workload is None else workload(n, first_id, step_ns)
        intended = (np.arange(n, dtype=np.float64) * step_ns).astype(np.int64)
        received = np.zeros(n, np.int64)
        watch = self.watch
        accepted, rejected = wire.EventKind.ACCEPTED, wire.EventKind.REJECTED
        expected = EVENTS_PER_ORDER * n
        chunk_events = min(expected, RUN_EVENTS_MAX)
        buf = np.zeros(chunk_events + POP_MAX, wire.EVENT_DTYPE)
        buf.view(np.uint8)[::4096] = 1  # fault every page in now, not during the run
        counts: list[int] = []
        stamps: list[int] = []
        send_from: list[int] = []  # each push: the first order it took, and when
        send_time: list[int] = []
        filled = sent = total = acked = 0

        def flush() -> int:
            ev = buf[:filled]
            times = np.repeat(np.array(stamps, np.int64), np.array(counts, np.int64))
            kinds = ev["kind"]
            mask = (kinds == accepted) | (kinds == rejected)
            idx = ev["order_id"][mask].astype(np.int64) - first_id
            ok = (idx >= 0) & (idx < n)
            received[idx[ok]] = times[mask][ok]
            counts.clear()
            stamps.clear()
            return int(ok.sum())

        now_ns = time.monotonic_ns
        push, pop, idle = self.bind(recs, buf)
        chunk, tick = self.chunk, self.tick_ns
        t0 = now_ns() + 1_000_000
        intended += t0
        deadline = t0 + int((seconds + drain_s) * 1e9)
        while total < expected:
            now = now_ns()
            if now > deadline:
                break
            if watch is not None:
                watch.sample(now)
            if sent < n:
                due = min(n, int((now - t0) / step_ns) + 1)
                if due > sent:
                    k = push(sent, min(due, sent + chunk))
                    if k:
                        send_from.append(sent)
                        send_time.append(now)
                        sent += k
            k = pop(filled, POP_MAX)
            if k:
                stamps.append(now_ns())
                counts.append(k)
                filled += k
                total += k
                if filled >= chunk_events:
                    acked += flush()
                    filled = 0
                if k == POP_MAX or total >= expected:
                    continue  # more may be waiting, or all are in
            # wait (returning early when events arrive) until the next order is due, but
            # pass no more often than every tick: the orders due meanwhile go out together
            next_due = t0 + int(sent * step_ns) if sent < n else deadline
            left = min(max(next_due, now + tick), deadline) - now_ns()
            if left > 0:
                idle(left)
        if filled:
            acked += flush()
        end = received.max() if acked else now_ns()
        lat = LatencyRecorder()
        got = received > 0
        growth = float("inf")
        if got.any():
            values = received[got] - intended[got]
            lat.record_many(values)
            q = max(1, len(values) // 4)
            growth = float(np.median(values[-q:]) - np.median(values[:q])) / 1000
        sent_at = np.repeat(np.array(send_time, np.int64), np.diff([*send_from, sent]))
        sent_at = np.concatenate([sent_at, np.zeros(n - sent, np.int64)])
        hops = None if watch is None else watch.stamps(intended, sent_at, received)
        return RunResult(rate, sent, acked, max(1e-9, (end - t0) / 1e9), lat, growth, hops)


class RingSender(OrderSender):
    """A colocated session: straight into the inbound ring, out of the outbound ring."""

    def __init__(self, socket_path: str, watch_instance: str | None = None) -> None:
        self.t = ColocatedTransport(socket_path, 1, KEY)
        self._shard_rings: list[Ring] = []
        if watch_instance is not None:
            cmd, evt = (
                Ring.attach(
                    segment_name(watch_instance, role, 0),
                    slot_size=wire.RECORD_SIZE,
                    layout_version=wire.LAYOUT_VERSION,
                )
                for role in ("cmd", "evt")
            )
            self._shard_rings = [cmd, evt]
            self.watch = RingWatch(self.t.inbound, cmd, evt, self.t.outbound, 1 << 20)

    def push(self, records: np.ndarray) -> int:
        return self.t.inbound.push_batch(records)

    def pop_into(self, out: np.ndarray) -> int:
        return self.t.outbound.pop_batch(out)

    def bind(self, recs: np.ndarray, buf: np.ndarray) -> tuple[Push, Pop, Idle]:
        """Straight to the C ring calls with pointers into the run's arrays (a slice, a
        ``from_buffer`` and two Python frames per call were most of the client's time
        per pass), and an idle wait that polls the event ring with a ``sched_yield``
        between looks instead of sleeping on it.

        Why poll: a parked client is woken by the pump's push, and on a shared 2-core
        VM each such wake-up took from tens of µs to milliseconds (the client's CPU had
        gone idle, or someone else was running on it); measured side by side, polling
        cut the p50 at 100 k/s from ~500 µs to ~25 µs. The yield is what lets the pump,
        which shares the client's CPU (see placement), run whenever it has work: a
        colocated client spinning on its rings is what a latency-sensitive one does on
        its own core, and this is that, made polite for a shared one.
        """
        size = wire.RECORD_SIZE
        rp = ffi.cast("char *", ffi.from_buffer(recs))
        bp = ffi.cast("char *", ffi.from_buffer(buf, require_writable=True))
        inbound, outbound = self.t.inbound.handle, self.t.outbound.handle
        ring_push, ring_pop, readable = lib.ts_ring_push, lib.ts_ring_pop, lib.ts_ring_readable
        now_ns, pause = time.monotonic_ns, os.sched_yield
        watch = self.watch

        def idle(ns: int) -> None:
            until = now_ns() + ns
            while (now := now_ns()) < until and not readable(outbound):
                if watch is not None:
                    watch.sample(now)
                pause()

        return (
            lambda a, b: ring_push(inbound, rp + a * size, b - a),
            lambda off, most: ring_pop(outbound, bp + off * size, most),
            idle,
        )

    def close(self) -> None:
        self.watch = None
        for ring in self._shard_rings:
            ring.close()
        self.t.close()


class TcpSender(OrderSender):
    """A TCP session of the binary protocol, on a non-blocking socket: frames queue in a
    send buffer that is written as the socket takes it."""

    chunk = MAX_RECORDS_PER_FRAME

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        accepted, _ = _login(self.sock, 1, KEY, 10.0)
        self.sock.setblocking(False)
        self.seq = accepted.next_command_seq
        self.pending = bytearray()
        self.buf = FrameBuffer()

    def _flush(self) -> None:
        if self.pending:
            with contextlib.suppress(BlockingIOError):
                n = self.sock.send(self.pending)
                del self.pending[:n]

    def push(self, records: np.ndarray) -> int:
        if len(self.pending) > 1 << 20:  # the peer is not reading: stop queueing
            self._flush()
            return 0
        self.pending += encode_records(MessageType.COMMANDS, self.seq, records)
        self.seq += len(records)
        self._flush()
        return len(records)

    def pop_into(self, out: np.ndarray) -> int:
        """Decode the EVENTS frames that arrived into ``out``; a frame that does not fit
        waits in the buffer for the next call."""
        self._flush()
        room = self.buf.writable()
        try:
            n = self.sock.recv_into(room) if len(room) else -1
        except BlockingIOError:
            n = -1
        if n == 0:
            raise ConnectionError("the server closed the connection")
        if n > 0:
            self.buf.advance(n)
        got = 0
        for f in self.buf.frames():
            if f.type != MessageType.EVENTS:
                continue
            recs = self.buf.records(f, wire.EVENT_DTYPE)
            out[got : got + len(recs)] = recs
            got += len(recs)
            if got + MAX_RECORDS_PER_FRAME > len(out):
                break
        return got

    def idle(self, timeout_s: float) -> None:
        writers = [self.sock] if self.pending else []
        select.select([self.sock], writers, [], timeout_s)

    def close(self) -> None:
        self.sock.close()


# ---- TradSys --------------------------------------------------------------------------------


def placement() -> tuple[int | None, set[int] | None]:
    """(the shard worker's CPU, the CPUs of the gateway and the client), or (None, None) to
    let the kernel place everything (TRADSYS_BENCH_PIN=0, or a single CPU).

    On 2 CPUs the worker gets one to itself and spins there between batches; the gateway's
    pump and the client share the other. Unpinned, the kernel is free to put the pump and
    the worker -- the two that spin at a high rate -- on one CPU, and then each waits out
    the other's time slice (milliseconds) on every hand-over."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or os.environ.get("TRADSYS_BENCH_PIN", "1") == "0":
        return None, None
    return cpus[-1], set(cpus[:-1])


def tune_client_thread() -> None:
    """1 µs timer slack for the calling (client) thread (``PR_SET_TIMERSLACK``): a normal
    thread's timed sleeps may end up to 50 µs late by default. While the colocated client
    still slept until its next order, that made its sends at 10 k/s 69 µs late at the
    median instead of 29; the TCP client's ``select`` still sleeps."""
    ctypes.CDLL(None, use_errno=True).prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK, ns


def run_queue_ns(pid: int) -> int:
    """Nanoseconds the threads of ``pid`` have spent runnable but not running (the second
    field of /proc/<pid>/task/<tid>/schedstat), or 0 where the kernel does not say. For a
    process alone on its CPU, all of it is time taken by someone else."""
    total = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(OSError, IndexError, ValueError),
                open(f"/proc/{pid}/task/{tid}/schedstat") as f,
            ):
                total += int(f.read().split()[1])
    return total


def engine_pids(sup: Supervisor, ann: dict[str, Any]) -> dict[str, int]:
    """The processes of a run: the client (this one), the gateway, each shard worker."""
    pids = {"client": os.getpid(), "gateway": int(ann["pid"])}
    for sp in sup.shards:
        if sp.process is not None:
            pids[f"worker {sp.spec.shard_id}"] = sp.process.pid
    return pids


# The engine clock as deployed (the [gateway] default) for every timed run; the watched
# runs' instance has none: the stage breakdown (perf/_e2e_stages.py) maps the i-th order
# to the i-th record of the shard's command ring, which a tick record would shift.
CLOCK_TICK_US = GatewaySection().clock_tick_us


def bench_config(
    instance: str, data_dir: Path, wait: str = WAIT, clock_tick_us: int = CLOCK_TICK_US
) -> Config:
    worker_cpu, others = placement()
    text = CONFIG.format(
        instance=instance,
        data_dir=data_dir,
        price=PRICE,
        digest=key_digest(KEY),
        wait=wait,
        shard_core="" if worker_cpu is None else f"core = {worker_cpu}",
        # the deployment's own placement: [gateway] core pins the pump thread alone, and
        # the gateway moves its event loop (handshakes, TCP, the stats write) to the
        # other CPUs -- here the worker's, which has idle time; pinning the whole gateway
        # beside the client put its event loop's periodic work in the client's way
        gateway_core="" if not others else f"core = {min(others)}",
        snapshot_every=SNAPSHOT_EVERY,
        clock_tick_us=clock_tick_us,
    )
    return parse_config(text, "bench")


@contextlib.contextmanager
def tradsys_instance(
    name: str, clock_tick_us: int = CLOCK_TICK_US
) -> Iterator[tuple[Supervisor, dict[str, Any]]]:
    """A running instance (one shard worker, the gateway) and the gateway's announcement."""
    tmp = tempfile.mkdtemp(prefix=f"tradsys-{name}-")
    config = bench_config(f"{name}{os.getpid()}", Path(tmp), clock_tick_us=clock_tick_us)
    sup = Supervisor(config, log=lambda line: None)
    _, others = placement()
    before = os.sched_getaffinity(0)
    try:
        sup.start()
        ann = read_announcement(config, "gateway")
        assert ann is not None
        if others:
            os.sched_setaffinity(0, others)
        yield sup, ann
    finally:
        sup.stop()
        os.sched_setaffinity(0, before)
        shutil.rmtree(tmp, ignore_errors=True)


def tcp_address(ann: dict[str, Any]) -> tuple[str, int]:
    host, port = str(ann["tcp"]).rsplit(":", 1)
    return host, int(port)


# ---- the baseline peer ----------------------------------------------------------------------


@contextlib.contextmanager
def baseline_server(stats_file: Path | None = None) -> Iterator[tuple[str, int]]:
    """The asyncio + reference-model server in its own process; yields (host, port)."""
    cmd = [sys.executable, str(HERE / "_baseline_server.py"), str(PRICE)]
    if stats_file is not None:
        cmd.append(str(stats_file))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline().strip() if ready else ""
        if not line.startswith("listening "):
            raise RuntimeError(f"the baseline server did not start: {line!r}")
        host, port = line.split()[1].rsplit(":", 1)
        yield host, int(port)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)
