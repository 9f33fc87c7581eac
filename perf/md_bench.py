"""Market data: records/s delivered to a ZeroMQ subscriber, and trade-to-subscriber latency.

Two measures, each run with the sidecar packing many records per message (TradSys) and,
in the same run, with one record per message (the peer, ``[md] max_frame_records = 1``):

- **delivered throughput**: this process plays a shard worker and fills a real md ring
  with engine market data (a venue stream's output) as fast as the ring takes it; the md
  sidecar (``python -m tradsys.cores.md``, its own process) drains and publishes it over
  ipc://; a subscriber process counts the records it receives between its first and its
  last. Records dropped at the high-water mark are not counted: delivered means received.
- **latency**: a real instance (Supervisor, one shard worker, durability none, polite
  waits) and the sidecar; this process pushes, open-loop at a fixed rate, a CLOCK_TICK
  stamped with the intended send time (CLOCK_REALTIME) and a crossing IOC order into the
  shard's ``cmd`` ring; each trade print carries that time (the engine clock is the
  command stream), and the subscriber takes ``now - time_ns`` into an HdrHistogram.
  The instance holds ``[engine] cpu_latency_us = 0`` (idle CPUs poll instead of halting,
  tradsys/cores/cpu_latency.py) when this host lets it (root, and a cpuidle driver to
  obey it); one more batched run on an instance without it shows what the idle exits
  cost. The engine is placed as deployed (``placement``): the worker and the sidecar
  pinned to the last CPU, this process -- the order flow, in the gateway pump's place --
  on the others; the full run measures the batched run once more with nothing pinned
  (p99 ~180 against ~120 µs on the 2-vCPU VM).
  Beside them, what the platform takes from a spinning thread on each CPU
  (``tradsys tune jitter``), the floor under the tail.

Also measured: encoding + decoding the payload as fixed 64-byte records versus msgspec
msgpack, the choice docs/marketdata.md explains.

Usage: md_bench.py [--quick] [--json] [--rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common

from tradsys.config import Config, MdSection, check_config
from tradsys.cores.control import WorkerControl
from tradsys.cores.cpu_latency import (
    NO_REQUEST,
    CpuLatencyError,
    CpuLatencyRequest,
    halts_whatever_is_asked,
)
from tradsys.cores.sidecar import read_announcement, write_effective_config
from tradsys.cores.supervisor import Supervisor
from tradsys.marketdata.protocol import CHANNELS, HEARTBEAT_TOPIC, Channel, topic
from tradsys.marketdata.stats import STAGE_COLUMNS, STAGE_LOG_ENV
from tradsys.matching import CEngine, Instrument
from tradsys.matching.commands import batch, new_order
from tradsys.matching.instrument import QTY_MAX
from tradsys.matching.workload import venue_stream
from tradsys.profiling import LatencyRecorder, StageBreakdown
from tradsys.ring import Ring, WaitStrategy, reclaim_stale, segment_name
from tradsys.wire import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    LAYOUT_VERSION,
    MD_DTYPE,
    RECORD_SIZE,
    CommandKind,
    ControlCode,
    Side,
    TimeInForce,
)

BENCH = "md"
PEER = "one record per frame"
# At the latency runs' 2 k trades/s nothing waits to be packed, so the batched sidecar
# also sends one record per message: the second run is the same path measured again, a
# control for run-to-run spread, not a slower peer (the sidecars' logs: 9 002 records in
# 9 002 messages, and 9 000 in 9 000).
LATENCY_CONTROL = "the same path again (one record per frame; at 2 k/s both send one per message)"
HALTING = "idle CPUs halting (no cpu_latency_us)"
UNPINNED = "nothing pinned (no [shard] core, no [md] core)"
SYMBOL = Instrument("BENCH", 1, reference_price=100_000)
LAYOUT = {"slot_size": RECORD_SIZE, "layout_version": LAYOUT_VERSION}


@dataclass(frozen=True)
class Plan:
    quick: bool
    rounds: int
    records: int  # throughput: records per batched run (the peer gets a thirtieth)
    trades: int  # latency: trades per run
    rate: int  # latency: trades per second offered
    pool_commands: int  # venue-stream commands whose market data is the records' pool

    @classmethod
    def of(cls, quick: bool, rounds: int | None) -> Plan:
        if quick:
            return cls(True, rounds or 1, 3_000_000, 3_000, 2_000, 60_000)
        return cls(False, rounds or 3, 20_000_000, 30_000, 2_000, 200_000)


class BenchError(Exception):
    pass


# ---- configuration and processes ---------------------------------------------------------


def placement() -> tuple[int | None, set[int] | None]:
    """(the CPU of the shard worker and the sidecar, the CPUs of the bench), or (None,
    None) on a single CPU: the engine as deployed on a small host, where each engine
    process is pinned (``[shard] core``, ``[md] core``) and the order flow comes from
    another core (the gateway's pump there; this process here). On 2 CPUs the sidecar
    shares the worker's core, the one with idle time between batches; the bench's
    process, which stands in for the pump, has the other."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[-1], set(cpus[:-1])


def make_config(
    root: Path,
    instance: str,
    frame_records: int,
    cpu_latency_us: int = NO_REQUEST,
    engine_cpu: int | None = None,
) -> Config:
    doc = {
        "engine": {
            "instance": instance,
            "data_dir": str(root / "var"),
            "ring_capacity": 1 << 18,
            "cpu_latency_us": cpu_latency_us,
        },
        "journal": {"durability": "none"},
        # the bench is the producer of the command ring itself: no gateway
        "gateway": {"enabled": False},
        "shard": [{"id": 0, "symbols": [SYMBOL.symbol], "core": engine_cpu}],
        "instrument": [msgspec.to_builtins(SYMBOL)],
        "md": {
            "publish": [f"ipc://{root}/pub-{frame_records}"],
            "snapshot": f"ipc://{root}/snap-{frame_records}",
            # the default (1 s), as deployed: a subscriber of the heartbeat topic spends
            # a wake-up on each, and at 100 ms they visibly crowded the trade tail
            "heartbeat_ms": MdSection().heartbeat_ms,
            "max_frame_records": frame_records,
            "sndhwm": 100_000,
            "core": engine_cpu,
        },
    }
    return check_config(msgspec.convert(doc, Config), "md bench")


class Sidecar:
    """``python -m tradsys.cores.md`` for one config, stopped with SIGTERM."""

    def __init__(self, config: Config, env: dict[str, str] | None = None) -> None:
        self.config = config
        path = write_effective_config(config)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tradsys.cores.md", str(path)], env={**os.environ, **(env or {})}
        )
        deadline = time.monotonic() + 60
        while True:
            doc = read_announcement(config, "md")
            if doc is not None and doc.get("pid") == self.proc.pid:
                self.publish = str(doc["publish"][0])
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the md sidecar did not start (exit {self.proc.returncode})")
            time.sleep(0.01)  # start-up only

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _subscribe(endpoint: str, prefix: bytes) -> tuple[Any, Any]:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 1_000_000)
    sub.setsockopt(zmq.SUBSCRIBE, prefix)
    sub.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC)
    sub.connect(endpoint)
    # the subscription has reached the publisher once a heartbeat comes through
    while sub.recv_multipart()[0] != HEARTBEAT_TOPIC:
        pass
    return ctx, sub


def count_subscriber(endpoint: str, expected: int, conn: mpc.Connection) -> None:
    """Count records until ``expected`` came, or the feed has been quiet for 2 s."""
    ctx, sub = _subscribe(endpoint, b"")
    conn.send("ready")
    got, first, last = 0, 0.0, 0.0
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    last_data = time.monotonic()
    while got < expected and time.monotonic() - last_data < 2:
        if not poller.poll(500):
            continue
        t, payload = sub.recv_multipart(copy=False)
        if t.bytes == HEARTBEAT_TOPIC:
            continue
        last_data = time.monotonic()
        if not got:
            first = time.perf_counter()
        got += len(payload) // RECORD_SIZE
        last = time.perf_counter()
    conn.send((got, last - first))
    sub.close()
    ctx.term()


def latency_subscriber(endpoint: str, expected: int, conn: mpc.Connection) -> None:
    """Per trade print: its seq, the engine's stamp and when it arrived here (both
    CLOCK_REALTIME ns), sent back as one array once ``expected`` came or the feed went
    quiet. The subscriber blocks in ZeroMQ's own receive (with a timeout for the quiet
    case): one call per message, as a latency-minded subscriber of one socket does."""
    ctx, sub = _subscribe(endpoint, topic("trade", SYMBOL.symbol))
    sub.setsockopt(zmq.RCVTIMEO, 1000)
    conn.send("ready")
    rows = np.zeros((expected, 3), np.int64)
    got = 0
    last_data = time.monotonic()
    while got < expected and time.monotonic() - last_data < 5:
        try:
            t, payload = sub.recv_multipart()
        except zmq.Again:
            continue
        now = time.clock_gettime_ns(time.CLOCK_REALTIME)
        if t == HEARTBEAT_TOPIC:
            continue
        last_data = time.monotonic()
        recs = np.frombuffer(payload, MD_DTYPE)[: expected - got]
        k = len(recs)
        rows[got : got + k, 0] = recs["seq"]
        rows[got : got + k, 1] = recs["time_ns"]
        rows[got : got + k, 2] = now
        got += k
    conn.send(rows[:got])
    sub.close()
    ctx.term()


def spawn_subscriber(target: Any, *args: Any) -> tuple[Any, mpc.Connection]:
    """Start a subscriber process; it connects at once (ZeroMQ retries until the
    sidecar binds), so its start-up overlaps the sidecar's."""
    ctx = mp.get_context("spawn")
    mine, theirs = ctx.Pipe()
    proc = ctx.Process(target=target, args=(*args, theirs), daemon=True)
    proc.start()
    return proc, mine


def wait_subscribed(proc: Any, conn: mpc.Connection) -> None:
    """Until the subscriber has seen the feed (its subscription reached the sidecar)."""
    try:
        if not conn.poll(60):
            raise BenchError("the subscriber never saw the feed")
        conn.recv()
    except (BenchError, EOFError):
        proc.kill()
        raise BenchError(f"the subscriber never saw the feed (exit {proc.exitcode})") from None


# ---- throughput ------------------------------------------------------------------------------


def engine_md(n_commands: int) -> np.ndarray:
    """Real market data: what the engine emits for a venue stream."""
    engine = CEngine()
    engine.add_instrument(Instrument("BENCH", 1))
    out = engine.process(venue_stream(n_commands, 7, symbol_id=1))
    engine.close()
    return np.ascontiguousarray(out.md)


def throughput(
    root: Path, instance: str, frame_records: int, records: int, pool: np.ndarray
) -> float:
    config = make_config(root, f"{instance}f{frame_records}", frame_records)
    ring = Ring.create(
        segment_name(config.engine.instance, "md", 0),
        capacity=1 << 18,
        slot_size=RECORD_SIZE,
        layout_version=LAYOUT_VERSION,
    )
    ctl = WorkerControl.create(segment_name(config.engine.instance, "ctl", 0))
    sidecar = None
    sub = None
    try:
        sub, conn = spawn_subscriber(count_subscriber, config.md.publish[0], records)
        sidecar = Sidecar(config)
        wait_subscribed(sub, conn)
        wait = WaitStrategy.spin_park()
        pushed = 0
        while pushed < records:
            take = min(len(pool), records - pushed)
            ring.push_all(pool[:take], wait, timeout=60)
            pushed += take
        if not conn.poll(120):
            raise BenchError("the throughput subscriber did not finish")
        got, span = conn.recv()
        sub.join(30)
        if got < records * 0.5 or span <= 0:
            raise BenchError(f"only {got:,} of {records:,} records were delivered")
        common.note(
            f"  {frame_records:>5} records/frame: {got:,} of {records:,} delivered in {span:.2f} s"
        )
        return float(got / span)
    finally:
        if sub is not None and sub.is_alive():
            sub.kill()
        if sidecar is not None:
            sidecar.stop()
        ring.close()
        ctl.close()


# ---- latency ----------------------------------------------------------------------------------


def cross_commands(n: int, first_id: int) -> np.ndarray:
    """Per trade: a CLOCK_TICK (time filled in when sent) and a BUY IOC of 1 lot that
    crosses the resting sell."""
    cmds = np.zeros(2 * n, COMMAND_DTYPE)
    tick, buy = cmds[0::2], cmds[1::2]
    tick["kind"], tick["control"], tick["symbol_id"] = (
        CommandKind.CONTROL,
        ControlCode.CLOCK_TICK,
        1,
    )
    buy["kind"], buy["symbol_id"], buy["account_id"] = CommandKind.NEW_ORDER, 1, 2
    buy["order_id"] = np.arange(first_id, first_id + n)
    buy["side"], buy["order_type"], buy["tif"] = Side.BUY, 1, TimeInForce.IOC
    buy["price"], buy["quantity"] = SYMBOL.reference_price, 1
    return cmds


STAGES = ("engine ts", "cmd pushed", "md drained", "zmq send", "subscriber")


@dataclass
class LatencyRun:
    """One frame mode's trades: percentiles (µs) and where the time went."""

    p50: float
    p99: float
    p999: float
    max: float
    stages: StageBreakdown


def polling_idle_allowed() -> bool:
    """Whether a CPU latency request makes this host's idle CPUs poll: the bench may hold
    one (root, Linux) and a cpuidle driver obeys it. Where none would, the "halting"
    comparison run would measure the same thing twice, and is left out."""
    try:
        CpuLatencyRequest(0).close()
    except CpuLatencyError as exc:
        common.note(f"md bench: idle CPUs keep halting ({exc.strerror})")
        return False
    if halts_whatever_is_asked():
        common.note("md bench: idle CPUs keep halting (no cpuidle driver to obey a request)")
        return False
    return True


def latency(
    root: Path,
    instance: str,
    plan: Plan,
    frame_modes: tuple[int, ...] = (1024, 1),
    cpu_latency_us: int = NO_REQUEST,
    placed: bool = True,
) -> dict[int, LatencyRun]:
    """Per frame mode, over one supervisor; ``placed``: pinned as deployed (placement)."""
    engine_cpu, bench_cpus = placement() if placed else (None, None)
    config = make_config(root, f"{instance}lat", 1024, cpu_latency_us, engine_cpu)
    # the bench starts the sidecar itself, once per frame mode, beside the supervisor
    quiet = msgspec.structs.replace(
        config, md=msgspec.structs.replace(config.md, enabled=False, external_reader=True)
    )
    out: dict[int, LatencyRun] = {}
    with Supervisor(quiet, log=lambda line: None) as sup, _on_cpus(bench_cpus):
        cmd = Ring.attach(segment_name(sup.instance, "cmd", 0), role="producer", **LAYOUT)
        evt = Ring.attach(segment_name(sup.instance, "evt", 0), role="consumer", **LAYOUT)
        events = np.zeros(8192, EVENT_DTYPE)
        wait = WaitStrategy.spin_park()
        try:
            # as large as an order may be (1 lot per trade: it never runs out)
            resting = batch(new_order(1, 1, 1, Side.SELL, QTY_MAX, SYMBOL.reference_price))
            cmd.push_all(resting, wait, timeout=10)
            next_id = 2
            for frame_records in frame_modes:
                cfg = msgspec.structs.replace(
                    config, md=msgspec.structs.replace(config.md, max_frame_records=frame_records)
                )
                stage_log = root / f"stages-{frame_records}.npy"
                sub, conn = spawn_subscriber(latency_subscriber, cfg.md.publish[0], plan.trades)
                sidecar = None
                try:
                    sidecar = Sidecar(cfg, {STAGE_LOG_ENV: str(stage_log)})
                    wait_subscribed(sub, conn)
                    cmds = cross_commands(plan.trades, next_id)
                    next_id += plan.trades
                    intended, pushed = offer(cmds, cmd, evt, events, plan.rate)
                    if not conn.poll(120):
                        raise BenchError("the latency subscriber did not finish")
                    rows = conn.recv()
                    if len(rows) < plan.trades:
                        raise BenchError(f"only {len(rows)} of {plan.trades} trades were seen")
                finally:
                    if sub.is_alive():
                        sub.kill()
                    if sidecar is not None:
                        sidecar.stop()
                out[frame_records] = summarise(rows, intended, pushed, np.load(stage_log))
                while evt.pop_batch(events):
                    pass
        finally:
            cmd.close()
            evt.close()
    return out


@contextlib.contextmanager
def _on_cpus(cpus: set[int] | None) -> Iterator[None]:
    """This process (and the subscriber it spawns meanwhile) on ``cpus``; None: as is."""
    before = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def summarise(
    rows: np.ndarray, intended: np.ndarray, pushed: np.ndarray, log: np.ndarray
) -> LatencyRun:
    """Join the subscriber's trades (seq, engine stamp, arrival) with the bench's push
    times (by stamp) and the sidecar's stage log (by seq) into per-trade stage stamps."""
    seq, stamp, arrived = rows[:, 0], rows[:, 1], rows[:, 2]
    latency = LatencyRecorder()  # HdrHistogram, as CONVENTIONS asks of every latency
    latency.record_many(arrived - stamp)
    at = np.searchsorted(intended, stamp)
    if (at >= len(intended)).any() or (intended[np.minimum(at, len(intended) - 1)] != stamp).any():
        raise BenchError("a trade print carries a stamp the bench never sent")
    col = {name: i for i, name in enumerate(STAGE_COLUMNS)}
    trade = (log[:, col["channel"]] == CHANNELS.index(Channel.TRADE)) & (log[:, col["symbol"]] == 0)
    trade_log = log[trade]
    trade_log = trade_log[np.argsort(trade_log[:, 2], kind="stable")]
    k = np.searchsorted(trade_log[:, 2], seq, side="right") - 1
    if (k < 0).any() or (trade_log[np.maximum(k, 0), 3] < seq).any():
        raise BenchError("the sidecar's stage log misses trades the subscriber got")
    stamps = np.stack(
        [stamp, pushed[at], trade_log[k, 4], trade_log[k, 5], arrived], axis=1
    ).astype(np.int64)
    # stamps are taken just after each step (a send returns after the io thread may
    # already have delivered): a stage never precedes the one before it
    stamps = np.maximum.accumulate(stamps, axis=1)
    stages = StageBreakdown(STAGES)
    stages.record(stamps)
    p50, p99, p999, mx = latency.percentiles_us((50, 99, 99.9, 100))
    return LatencyRun(p50, p99, p999, mx, stages)


def offer(
    cmds: np.ndarray, cmd: Ring, evt: Ring, events: np.ndarray, rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """Send each (tick, order) pair at its intended time, stamped with that time; return
    the intended and the actual push times (CLOCK_REALTIME ns). The wait sleeps with a
    1 µs timer slack until just before each send, so the load generator leaves the
    cores to what it measures."""
    _tight_timer_slack()
    period = 1.0 / rate
    n = len(cmds) // 2
    mono0 = time.perf_counter() + 0.05
    real0 = time.clock_gettime_ns(time.CLOCK_REALTIME) + 50_000_000
    intended = real0 + (np.arange(n) * (period * 1e9)).astype(np.int64)
    pushed = np.zeros(n, np.int64)
    wait = WaitStrategy.spin_park()
    for i in range(n):
        due = mono0 + i * period
        while (left := due - time.perf_counter()) > 0:
            if left > 60e-6:
                time.sleep(left - 40e-6)
        cmds["time_ns"][2 * i] = intended[i]
        pushed[i] = time.clock_gettime_ns(time.CLOCK_REALTIME)
        cmd.push_all(cmds[2 * i : 2 * i + 2], wait, timeout=10)
        evt.pop_batch(events)
    return intended, pushed


def _tight_timer_slack() -> None:
    """prctl(PR_SET_TIMERSLACK, 1 µs): a sleep ends when asked, not up to 50 µs later."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not Linux: the default slack
        ctypes.CDLL(None, use_errno=True).prctl(29, 1000, 0, 0, 0)


# ---- the sidecar's own cost, in this process -------------------------------------------------


def sidecar_cost(root: Path, instance: str, pool: np.ndarray) -> tuple[float, float]:
    """CPU per record of MdSidecar.handle (group, keep the books, pack, send on an inproc
    PUB with no subscriber) in one thread: ns per record in 32 k batches (folds
    included), and µs per message when every batch is one record (a quiet market). Less
    exposed to the other processes than the end-to-end figures."""
    from tradsys.cores.md import MdSidecar

    sidecar = MdSidecar(make_config(root, f"{instance}cost", 1024))
    ctx = zmq.Context()
    sidecar.pub = ctx.socket(zmq.PUB)
    sidecar.pub.bind(f"inproc://{instance}")
    sidecar.conflated = None
    try:
        big = [pool[i : i + 32768] for i in range(0, len(pool) - 32768, 32768)]
        n = sum(len(b) for b in big)
        best = float("inf")
        for _ in range(3):
            t = time.process_time()
            for b in big:
                sidecar.handle(b)
            best = min(best, (time.process_time() - t) / n * 1e9)
        # the quiet path as the loop runs it: a drained batch of one, published by
        # the scalar path (the record's copy into the drain buffer included)
        singles, buf = pool[:20_000], sidecar._buf
        t = time.process_time()
        for i in range(len(singles)):
            buf[0] = singles[i]
            sidecar._publish_small(1)
        per_message = (time.process_time() - t) / len(singles) * 1e6
        return best, per_message
    finally:
        sidecar.pub.close()
        ctx.term()
        if sidecar.history is not None:  # the trade prints it kept, as the loop does
            sidecar.history.close()


# ---- payload codec --------------------------------------------------------------------------


def codec(pool: np.ndarray) -> tuple[float, float]:
    """Records/s encoded and decoded: fixed binary records versus msgspec msgpack."""
    frames = [pool[i : i + 256] for i in range(0, min(len(pool), 1 << 16), 256)]
    n = sum(len(f) for f in frames)
    enc, dec = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(list[tuple[int, ...]])
    t = time.perf_counter()
    for f in frames:
        np.frombuffer(f.tobytes(), MD_DTYPE)["seq"].sum()
    binary = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for f in frames:
        rows = dec.decode(enc.encode(f.tolist()))
        sum(r[3] for r in rows)
    packed = n / (time.perf_counter() - t)
    return binary, packed


# ---- main ---------------------------------------------------------------------------------------


def run(plan: Plan) -> tuple[list[dict[str, Any]], list[str]]:
    root = Path(tempfile.mkdtemp(prefix="md-bench-"))
    instance = f"mdb{os.getpid()}"
    try:
        common.note("md bench: generating engine market data")
        pool = engine_md(plan.pool_commands)
        common.note(f"md bench: delivered throughput, {plan.rounds} round(s)")
        batched, single = [], []
        for _ in range(plan.rounds):
            batched.append(throughput(root, instance, 1024, plan.records, pool))
            single.append(throughput(root, instance, 1, plan.records // 30, pool))
        common.note(f"md bench: latency, {plan.trades:,} trades at {plan.rate:,}/s")
        jitter, jitter_line = common.platform_jitter("md", plan.quick)
        polling = polling_idle_allowed()
        lat = latency(root, instance, plan, cpu_latency_us=0 if polling else NO_REQUEST)
        # a fresh instance (its own journal): the first one's order ids are taken
        halting = latency(root, f"{instance}h", plan, (1024,))[1024] if polling else None
        unplaced = None
        if not plan.quick and placement()[0] is not None:  # what the pinning is worth
            cpu_latency_us = 0 if polling else NO_REQUEST
            unplaced = latency(root, f"{instance}u", plan, (1024,), cpu_latency_us, False)[1024]
        binary, packed = codec(pool)
        ns_per_record, us_per_message = sidecar_cost(root, instance, pool)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        reclaim_stale(instance)
    tp, tp_peer = max(batched), max(single)
    bl, sl = lat[1024], lat[1]
    (b50, b99, b999, bmax), (s50, s99, s999, smax) = (
        (r.p50, r.p99, r.p999, r.max) for r in (bl, sl)
    )
    results = [
        common.result("md.delivered.throughput", "records/s", tp, higher_is_better=True,
                      peer=PEER, peer_value=tp_peer),
        common.result("md.latency.p50", "us", b50, higher_is_better=False,
                      peer=LATENCY_CONTROL, peer_value=s50),
        common.result("md.latency.p99", "us", b99, higher_is_better=False,
                      peer=LATENCY_CONTROL, peer_value=s99),
        common.result("md.latency.p99_9", "us", b999, higher_is_better=False,
                      peer=LATENCY_CONTROL, peer_value=s999),
        common.result("md.payload.codec", "records/s", binary, higher_is_better=True,
                      peer="msgspec msgpack", peer_value=packed),
        common.result("md.sidecar.cpu_per_record", "ns", ns_per_record,
                      higher_is_better=False),
        common.result("md.sidecar.cpu_per_message", "us", us_per_message,
                      higher_is_better=False),
        *jitter,
    ]  # fmt: skip
    if halting is not None:  # the same batched run on an instance whose idle CPUs halt
        for pct, ours, theirs in (("p50", b50, halting.p50), ("p99", b99, halting.p99)):
            results.append(
                common.result(f"md.latency.idle_polling.{pct}", "us", ours,
                              higher_is_better=False, peer=HALTING, peer_value=theirs)
            )  # fmt: skip
    if unplaced is not None:  # the same batched run with nothing pinned
        for pct, ours, theirs in (("p50", b50, unplaced.p50), ("p99", b99, unplaced.p99)):
            results.append(
                common.result(f"md.latency.pinned.{pct}", "us", ours,
                              higher_is_better=False, peer=UNPINNED, peer_value=theirs)
            )  # fmt: skip
    # where the batched run's microseconds went, hop by hop (no peer: a breakdown)
    for hop, p50, p99, _ in bl.stages.rows():
        slug = hop.replace(" -> ", "_to_").replace(" ", "_")
        for pct, value in (("p50", p50), ("p99", p99)):
            results.append(
                common.result(f"md.latency.hop.{slug}.{pct}", "us", value, higher_is_better=False)
            )
    text = [
        common.table(
            ["measure", "TradSys (batched frames)", PEER, "ratio"],
            [
                [
                    "delivered records/s",
                    common.fmt_rate(tp),
                    common.fmt_rate(tp_peer),
                    common.fmt_ratio(tp / tp_peer),
                ],
                ["trade→subscriber p50 (µs)", common.fmt_us(b50), common.fmt_us(s50), ""],
                ["trade→subscriber p99 (µs)", common.fmt_us(b99), common.fmt_us(s99), ""],
                ["trade→subscriber p99.9 (µs)", common.fmt_us(b999), common.fmt_us(s999), ""],
                ["trade→subscriber max (µs)", common.fmt_us(bmax), common.fmt_us(smax), ""],
            ],
        ),
        "latency: the second column is a control, not a peer: at 2 k trades/s the batched "
        "sidecar too sends one record per message, so the two differ only by run-to-run spread",
        "",
        idle_line(halting),
        placement_line(unplaced),
        jitter_line,
        "",
        "where a trade's microseconds go (batched frames): engine ts = the intended send time",
        bl.stages.table(),
        "",
        f"sidecar CPU, one thread, no subscriber: {ns_per_record:.0f} ns per record in 32 k "
        f"batches; {us_per_message:.1f} µs per single-record message (a quiet market)",
        "",
        common.table(
            ["payload encode + decode", "fixed 64-byte records", "msgspec msgpack", "ratio"],
            [
                [
                    "records/s",
                    common.fmt_rate(binary),
                    common.fmt_rate(packed),
                    common.fmt_ratio(binary / packed),
                ]
            ],
        ),
    ]
    return results, text


def placement_line(unplaced: LatencyRun | None) -> str:
    engine_cpu, bench_cpus = placement()
    if engine_cpu is None:
        return "placement: one CPU, nothing pinned"
    where = (
        f"placement: the shard worker and the sidecar pinned to CPU {engine_cpu}, the "
        f"bench (the order flow, the gateway pump's place) on {sorted(bench_cpus or ())}"
    )
    if unplaced is None:
        return where
    return (
        f"{where}; the batched run again with nothing pinned: p50 {unplaced.p50:.0f} µs, "
        f"p99 {unplaced.p99:.0f} µs, p99.9 {unplaced.p999:.0f} µs"
    )


def idle_line(halting: LatencyRun | None) -> str:
    if halting is None:
        return (
            "idle CPUs: halting (no CPU latency request held, or no cpuidle driver on this "
            "host to obey one); each wake of an idle CPU adds its exit time"
        )
    return (
        "idle CPUs: polling ([engine] cpu_latency_us = 0); the batched run again with idle "
        f"CPUs halting: p50 {common.fmt_us(halting.p50)} µs, p99 {common.fmt_us(halting.p99)} "
        f"µs, p99.9 {common.fmt_us(halting.p999)} µs"
    )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short look (under a minute)")
    ap.add_argument("--json", action="store_true", help="end stdout with the JSON result line")
    ap.add_argument("--rounds", type=int, help="throughput rounds (default 3, quick 1)")
    args = ap.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    plan = Plan.of(args.quick, args.rounds)
    started = time.perf_counter()
    load = os.getloadavg()[0]
    try:
        results, text = run(plan)
    except BenchError as exc:
        print(f"md bench failed: {exc}", file=sys.stderr)
        return 2
    print(
        f"md bench: {'quick' if plan.quick else 'full'} run, {common.cpu_count()} cpus, python "
        f"{sys.version.split()[0]}, {time.perf_counter() - started:.0f} s; load average "
        f"{load:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    for line in text:
        print(line)
    if args.json:
        common.emit_json(BENCH, plan.quick, results)
    return 0


if __name__ == "__main__":
    sys.exit(common.run_bench(BENCH, main))
