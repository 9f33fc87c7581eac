#!/usr/bin/env python3
"""Ring benchmark: the shared-memory SPSC ring against the usual IPC peers.

Two worker processes, A and B (spawned; pinned to one CPU each where there are two), move
64-byte records (``tradsys.wire.COMMAND_DTYPE``'s size) in one run:

* one-way throughput A -> B, records/s: this ring batched (``push_all`` / ``pop_wait`` of
  4096-record arrays, busy-spin), this ring one record at a time (``Ring.push(bytes)`` /
  ``Ring.pop()`` in Python try-loops), and, one record at a time as users move them,
  ``multiprocessing.Queue``, ``multiprocessing.Pipe`` (``send_bytes``), pyzmq PAIR over
  ``ipc://`` and ``faster_fifo.Queue``; plus batched variants of two peers (a 4096-record
  numpy array per ``Queue.put``, ``faster_fifo`` ``put_many`` / ``get_many``);
* round trip A -> B -> A (ping-pong, closed loop: one message in flight), percentiles from
  an HdrHistogram of ``time.perf_counter_ns`` deltas; for the ring two rings (ping, pong)
  with both sides busy-spinning, once in Python ``pop()`` loops and once through
  ``wait_readable(WaitStrategy.busy_spin())``;
* instructions per record of the push + pop paths counted by callgrind (noise-free).

Idle CPUs poll for the whole run, TradSys and its peers alike (a 0 µs CPU latency
request, ``[engine] cpu_latency_us = 0``, when the host allows it): a blocking peer is
woken sooner by a CPU that polls, and a tuned host runs that way.

The ring runs with each side pinned to a CPU of its own (busy-spinning sides need one
each). Each peer runs in three placements -- pinned like the ring, both workers free
("shared"), and both on one CPU ("one-cpu": a blocking receiver is woken without waking
another core, which on a VM costs tens of microseconds) -- and is credited with its best.

A first, short round calibrates each case's count to a time budget and is discarded;
then every round runs every case, the order rotated per round so that machine noise falls
on all alike. Throughput is the median over rounds; latency histograms are merged.

Usage: ring_bench.py [--quick] [--json] [--rounds N] [--no-callgrind] [--no-pin]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _callgrind
import _common as common

from tradsys.profiling.latency import spectrum_of
from tradsys.ring import Ring, WaitStrategy, instance_segments, reclaim_stale
from tradsys.ring import segment_name as ring_segment_name
from tradsys.wire import COMMAND_DTYPE, LAYOUT_VERSION, RECORD_SIZE

BENCH = "ring"
PEER = "multiprocessing.Queue"
# ring.batched.throughput's peer is the Queue as it is used one record per put (the
# target's, as CONVENTIONS' example); that ratio credits batching to the ring, so beside
# it ring.batched.throughput.same_batching holds the ring against a Queue carrying the
# same 4096-record arrays, and the README gives both.
BATCHED_PEER = "multiprocessing.Queue, 4096-record arrays"
BATCH = 4096
CAPACITY = 65536
PONG_CAPACITY = 1024
SPIN = WaitStrategy.busy_spin()
INSTANCE_PREFIX = "ringbench"
PINNED = "pinned"  # each worker (every thread of it) on a CPU of its own
SHARED = "shared"  # both workers free to run on any CPU
ONE_CPU = "one-cpu"  # both workers on the same CPU: a wake-up needs no other core
TMP_PREFIX = "tradsys-ringbench-"
HIST_MAX_NS = 60_000_000_000  # 60 s
CASE_TIMEOUT_S = 60.0

# Throughput cases, in their table order: (key, label, calibration count, multiple of)
THROUGHPUT = [
    ("ring.batched", "tradsys ring, batched 4096", 4096 * 128, BATCH),
    ("ring.single", "tradsys ring, per record", 100_000, 1),
    ("mp_queue", "multiprocessing.Queue", 20_000, 1),
    ("mp_queue.batched", "multiprocessing.Queue, 4096-record arrays", BATCH * 16, BATCH),
    ("pipe", "multiprocessing.Pipe (send_bytes)", 50_000, 1),
    ("zmq", "pyzmq PAIR ipc://", 50_000, 1),
    ("faster_fifo", "faster_fifo.Queue", 50_000, 1),
    ("faster_fifo.batched", "faster_fifo.Queue, put_many/get_many 4096", BATCH * 16, BATCH),
]
# Round-trip cases: (key, label)
RTT = [
    ("ring", "tradsys ring, pop() spin loops"),
    ("ring.wait", "tradsys ring, wait_readable(busy_spin)"),
    ("mp_queue", "multiprocessing.Queue"),
    ("pipe", "multiprocessing.Pipe (send_bytes)"),
    ("zmq", "pyzmq PAIR ipc://"),
    ("faster_fifo", "faster_fifo.Queue"),
]
RTT_CALIBRATION = 1_000
# Names of the peers in the JSON results (``peer.<name>.throughput`` etc.).
JSON_NAME = {
    "mp_queue": "mp_queue",
    "mp_queue.batched": "mp_queue.batched",
    "pipe": "pipe",
    "zmq": "zmq_pair_ipc",
    "faster_fifo": "faster_fifo",
    "faster_fifo.batched": "faster_fifo.batched",
}


@dataclass(frozen=True)
class Plan:
    rounds: int
    throughput_s: float  # time budget of one throughput case in one round
    rtt_s: float  # time budget of one round-trip case in one round
    calibration_scale: int  # the calibration round runs 1/scale of each case's count
    rtt_floor: int  # fewest round trips a case makes in a round, however slow it is

    @classmethod
    def of(cls, quick: bool, rounds: int | None) -> Plan:
        # --quick fits `tradsys bench --quick` (every bench) into two minutes: two short
        # rounds after a lighter calibration, still alternating every case with its peers
        plan = cls(2, 0.04, 0.05, 4, 1_000) if quick else cls(6, 0.4, 0.8, 1, 2_000)
        return plan if rounds is None else dataclasses.replace(plan, rounds=rounds)


# ---- the worker processes ------------------------------------------------------------


class Side:
    """One worker's end of every transport. A pushes/pings, B pops/echoes."""

    def __init__(self, name: str, ctl: Any, peers: dict[str, Any], rings: dict[str, str]):
        import faster_fifo  # noqa: F401  (unpickling the queues needs it imported)
        import zmq

        self.name = name
        self.ctl = ctl
        self.rec = bytes(range(RECORD_SIZE))
        self.batch = np.zeros(BATCH, COMMAND_DTYPE)
        self.batch["order_id"] = np.arange(BATCH)
        self.out = np.zeros(BATCH, COMMAND_DTYPE)
        a = name == "A"
        kw = {"slot_size": RECORD_SIZE, "layout_version": LAYOUT_VERSION}
        self.tx = Ring.attach(rings["ab" if a else "ba"], role="producer", **kw)
        self.rx = Ring.attach(rings["ba" if a else "ab"], role="consumer", **kw)
        self.q_tx = peers["mpq_ab" if a else "mpq_ba"]
        self.q_rx = peers["mpq_ba" if a else "mpq_ab"]
        self.ff_tx = peers["ff_ab" if a else "ff_ba"]
        self.ff_rx = peers["ff_ba" if a else "ff_ab"]
        self.pipe = peers["pipe_a" if a else "pipe_b"]
        self.zctx = zmq.Context()
        self.zsock = self.zctx.socket(zmq.PAIR)
        self.zsock.setsockopt(zmq.LINGER, 0)
        if a:
            self.zsock.connect(peers["zmq"])
        else:
            self.zsock.bind(peers["zmq"])

    def close(self) -> None:
        self.zsock.close(linger=0)
        self.zctx.term()
        self.tx.close()
        self.rx.close()
        for q in (self.q_tx, self.q_rx):
            q.cancel_join_thread()  # never block exit on records nobody will read
        self.pipe.close()

    def ready(self) -> None:
        self.ctl.send(("ready",))

    # ---- throughput: A produces n records and returns its start time -----------------

    def produce(self, case: str, n: int) -> int:
        rec, batch = self.rec, self.batch
        t0 = time.perf_counter_ns()
        if case == "ring.batched":
            push_all = self.tx.push_all
            for _ in range(n // BATCH):
                if push_all(batch, SPIN, 30.0) != BATCH:
                    raise TimeoutError("ring.batched: consumer stopped taking records")
        elif case == "ring.single":
            push = self.tx.push
            for _ in range(n):
                while not push(rec):
                    pass
        elif case == "mp_queue":
            put = self.q_tx.put
            for _ in range(n):
                put(rec)
        elif case == "mp_queue.batched":
            put = self.q_tx.put
            for _ in range(n // BATCH):
                put(batch)
        elif case == "pipe":
            send = self.pipe.send_bytes
            for _ in range(n):
                send(rec)
        elif case == "zmq":
            zsend = self.zsock.send
            for _ in range(n):
                zsend(rec)
        elif case == "faster_fifo":
            ffput = self.ff_tx.put
            for _ in range(n):
                ffput(rec, True, 30.0)
        elif case == "faster_fifo.batched":
            many = [rec] * BATCH
            put_many = self.ff_tx.put_many
            for _ in range(n // BATCH):
                put_many(many, True, 30.0)
        else:
            raise ValueError(f"unknown throughput case {case!r}")
        return t0

    # ---- throughput: B consumes n records and returns its end time -------------------

    def consume(self, case: str, n: int) -> int:
        self.ready()
        if case == "ring.batched":
            pop_wait, out, got = self.rx.pop_wait, self.out, 0
            while got < n:
                k = pop_wait(out, SPIN, 30.0)
                if k == 0:
                    raise TimeoutError("ring.batched: producer stopped sending")
                got += k
        elif case == "ring.single":
            pop = self.rx.pop
            for _ in range(n):
                while pop() is None:
                    pass
        elif case == "mp_queue":
            get = self.q_rx.get
            for _ in range(n):
                get()
        elif case == "mp_queue.batched":
            get, got = self.q_rx.get, 0
            while got < n:
                got += len(get())
        elif case == "pipe":
            recv = self.pipe.recv_bytes
            for _ in range(n):
                recv()
        elif case == "zmq":
            zrecv = self.zsock.recv
            for _ in range(n):
                zrecv()
        elif case == "faster_fifo":
            ffget = self.ff_rx.get
            for _ in range(n):
                ffget(True, 30.0)
        elif case == "faster_fifo.batched":
            get_many, got = self.ff_rx.get_many, 0
            while got < n:
                got += len(get_many(True, 30.0, BATCH))
        else:
            raise ValueError(f"unknown throughput case {case!r}")
        return time.perf_counter_ns()

    # ---- round trip: A pings and times, B echoes -------------------------------------

    def ping(self, case: str, n: int) -> tuple[bytes, int]:
        from hdrh.histogram import HdrHistogram

        rec, now = self.rec, time.perf_counter_ns
        lat = array("q", bytes(8 * n))
        if case == "ring":
            push, pop = self.tx.push, self.rx.pop
            for i in range(n):
                t0 = now()
                while not push(rec):
                    pass
                while pop() is None:
                    pass
                lat[i] = now() - t0
        elif case == "ring.wait":
            push, pop, wait = self.tx.push, self.rx.pop, self.rx.wait_readable
            for i in range(n):
                t0 = now()
                while not push(rec):
                    pass
                wait(SPIN)
                pop()
                lat[i] = now() - t0
        else:
            send, recv = self._send_recv(case, pinging=True)
            for i in range(n):
                t0 = now()
                send(rec)
                recv()
                lat[i] = now() - t0
        hist = HdrHistogram(1, HIST_MAX_NS, 3)
        skip = min(n // 10, 1000)  # the first round trips warm caches and branch predictors
        values, counts = np.unique(np.frombuffer(lat, np.int64)[skip:], return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist(), strict=True):
            hist.record_value(max(1, v), c)
        return hist.encode(), sum(lat)

    def echo(self, case: str, n: int) -> None:
        self.ready()
        if case == "ring":
            push, pop = self.tx.push, self.rx.pop
            for _ in range(n):
                while (m := pop()) is None:
                    pass
                while not push(m):
                    pass
        elif case == "ring.wait":
            push, pop, wait = self.tx.push, self.rx.pop, self.rx.wait_readable
            for _ in range(n):
                wait(SPIN)
                m = pop()
                while not push(m):  # type: ignore[arg-type]
                    pass
        else:
            send, recv = self._send_recv(case, pinging=False)
            for _ in range(n):
                send(recv())

    def _send_recv(self, case: str, pinging: bool) -> tuple[Any, Any]:
        if case == "mp_queue":
            return self.q_tx.put, self.q_rx.get
        if case == "pipe":
            return self.pipe.send_bytes, self.pipe.recv_bytes
        if case == "zmq":
            return self.zsock.send, self.zsock.recv
        if case == "faster_fifo":
            tx, rx = self.ff_tx, self.ff_rx
            return (lambda x: tx.put(x, True, 30.0)), (lambda: rx.get(True, 30.0))
        raise ValueError(f"unknown round-trip case {case!r}")


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this worker if the coordinator dies (even by
    SIGKILL), so that no spinning worker outlives the bench."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the coordinator died before prctl took effect
        os._exit(1)


def _place(cpus: list[int]) -> None:
    """Allow every thread of this process (zmq's I/O thread, the Queue feeder thread, ...)
    on ``cpus`` only; a plain sched_setaffinity(0) would move the calling thread alone."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(int(tid), cpus)


def worker_main(name: str, ctl: Any, peers: dict[str, Any], rings: dict[str, str]) -> None:
    """A worker: attach to every transport, then run the cases the coordinator sends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator stops us, and cleans up
    _die_with_parent()
    side = None
    try:
        side = Side(name, ctl, peers, rings)
        ctl.send(("ok", None))
        while True:
            msg = ctl.recv()
            if msg[0] == "quit":
                break
            _, what, case, n, cpus = msg
            try:
                _place(cpus)
                fn = {
                    "produce": side.produce,
                    "consume": side.consume,
                    "ping": side.ping,
                    "echo": side.echo,
                }[what]
                ctl.send(("ok", fn(case, n)))
            except Exception:
                ctl.send(("error", f"worker {name}, {what} {case}:\n{traceback.format_exc()}"))
    except (EOFError, BrokenPipeError):
        pass  # the coordinator went away
    except Exception:
        with contextlib.suppress(OSError):
            ctl.send(("error", f"worker {name} failed to start:\n{traceback.format_exc()}"))
    finally:
        if side is not None:
            side.close()


# ---- the coordinator -----------------------------------------------------------------


class BenchError(RuntimeError):
    pass


class Coordinator:
    """Owns every shared resource (ring segments, queues, the ipc dir) and the workers,
    and releases them all in :meth:`close`, whatever happened."""

    def __init__(self, pin: bool) -> None:
        self.instance = f"{INSTANCE_PREFIX}{os.getpid()}"
        self.rings: list[Ring] = []
        self.procs: list[Any] = []
        self.ctls: dict[str, Any] = {}
        self.queues: list[Any] = []
        self.tmpdir = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")
        self.all_cpus = sorted(os.sched_getaffinity(0))
        self.can_pin = pin and len(self.all_cpus) >= 2

    def placements(self, key: str) -> list[str]:
        """The ring runs pinned (one core per busy-spinning side, as it is meant to be
        deployed); each peer runs both pinned and on shared CPUs, and is credited with
        its better one (blocking peers wake faster on a core they share)."""
        if not self.can_pin:
            return [SHARED]
        return [PINNED] if key.startswith("ring") else [PINNED, SHARED, ONE_CPU]

    def _cpus(self, side: str, placement: str) -> list[int]:
        if placement == PINNED:
            return [self.all_cpus[0 if side == "A" else 1]]
        if placement == ONE_CPU:
            return [self.all_cpus[0]]
        return self.all_cpus

    def start(self) -> None:
        import faster_fifo

        names = {}
        for key, cap in (("ab", CAPACITY), ("ba", PONG_CAPACITY)):
            name = ring_segment_name(self.instance, key)
            self.rings.append(
                Ring.create(
                    name, slot_size=RECORD_SIZE, capacity=cap, layout_version=LAYOUT_VERSION
                )
            )
            names[key] = name
        ctx = mp.get_context("spawn")
        pipe_a, pipe_b = ctx.Pipe(duplex=True)
        peers = {
            "mpq_ab": ctx.Queue(),
            "mpq_ba": ctx.Queue(),
            "ff_ab": faster_fifo.Queue(max_size_bytes=8 << 20),
            "ff_ba": faster_fifo.Queue(max_size_bytes=8 << 20),
            "pipe_a": pipe_a,
            "pipe_b": pipe_b,
            "zmq": f"ipc://{self.tmpdir}/pair.ipc",
        }
        self.queues = [peers["mpq_ab"], peers["mpq_ba"]]
        self._pipes = (pipe_a, pipe_b)
        # a single-threaded BLAS in the workers: its idle threads are noise on 2 cores
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        for side in ("A", "B"):
            mine, theirs = ctx.Pipe(duplex=True)
            proc = ctx.Process(
                target=worker_main,
                args=(side, theirs, peers, names),
                name=f"ring-bench-{side}",
                daemon=True,
            )
            proc.start()
            theirs.close()
            self.procs.append(proc)
            self.ctls[side] = mine
        for side in ("A", "B"):
            self._reply(side, "start-up", 60.0)

    def _reply(self, side: str, what: str, timeout: float) -> Any:
        """The next message from ``side``; fails at once if either worker dies."""
        ctl = self.ctls[side]
        sentinels = {proc.sentinel: proc for proc in self.procs}
        ready = mpc.wait([ctl, *sentinels], timeout)
        if ctl not in ready:
            dead = [sentinels[s] for s in ready if s in sentinels]
            for proc in dead:
                proc.join(1)
            if dead:
                codes = ", ".join(f"{p.name} with exit code {p.exitcode}" for p in dead)
                raise BenchError(f"worker died during {what}: {codes}")
            raise BenchError(f"worker {side} gave no answer to {what} within {timeout:.0f} s")
        try:
            msg = ctl.recv()
        except EOFError:
            raise BenchError(f"worker {side} died during {what}") from None
        if msg[0] == "error":
            raise BenchError(msg[1])
        return msg[1] if len(msg) > 1 else None

    def _pair(self, a_what: str, b_what: str, case: str, placement: str, n: int) -> tuple[Any, Any]:
        """Start B (the receiving side), wait until it is ready, then start A."""
        what = f"{case} {placement} ({n} records)"
        self.ctls["B"].send(("run", b_what, case, n, self._cpus("B", placement)))
        self._reply("B", what, CASE_TIMEOUT_S)  # ("ready",)
        self.ctls["A"].send(("run", a_what, case, n, self._cpus("A", placement)))
        a = self._reply("A", what, CASE_TIMEOUT_S)
        b = self._reply("B", what, CASE_TIMEOUT_S)
        return a, b

    def throughput(self, case: str, placement: str, n: int) -> float:
        t0, t1 = self._pair("produce", "consume", case, placement, n)
        return float(n * 1e9 / max(1, int(t1) - int(t0)))

    def round_trip(self, case: str, placement: str, n: int) -> tuple[bytes, float]:
        (encoded, total_ns), _ = self._pair("ping", "echo", case, placement, n)
        return encoded, total_ns / n

    def close(self, graceful: bool = True) -> None:
        """Stop the workers (asking first when they are idle, else at once), then free
        every segment, queue and file."""
        if graceful:
            for ctl in self.ctls.values():
                with contextlib.suppress(OSError):
                    ctl.send(("quit",))
            deadline = time.monotonic() + 5
            for proc in self.procs:
                proc.join(max(0.1, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for ctl in self.ctls.values():
            ctl.close()
        for q in self.queues:
            q.cancel_join_thread()
            q.close()
        for p in getattr(self, "_pipes", ()):
            p.close()
        for ring in self.rings:
            ring.close()  # the creator unlinks
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def rounded(n: float, multiple: int, floor: int) -> int:
    n = max(floor, int(n))
    return max(multiple, n - n % multiple)


def measure(plan: Plan, pin: bool) -> dict[str, Any]:
    """Calibrate, then run every (case, placement) once per round, rotating the order.

    Returns throughput samples per (key, placement) and merged latency histograms.
    """
    from hdrh.histogram import HdrHistogram

    coord = Coordinator(pin)
    try:
        common.note(f"ring bench: starting workers (cpus {coord.all_cpus}, pin {coord.can_pin})")
        coord.start()
        tp_items = [(k, p) for k, *_ in THROUGHPUT for p in coord.placements(k)]
        rt_items = [(k, p) for k, _ in RTT for p in coord.placements(k)]
        # calibration round, discarded: sets each case's count to its time budget
        spec = {k: (n0, multiple) for k, _, n0, multiple in THROUGHPUT}
        tp_n: dict[tuple[str, str], int] = {}
        for key, pl in tp_items:
            n0, multiple = spec[key]
            n_cal = rounded(n0 / plan.calibration_scale, multiple, multiple)
            rate = coord.throughput(key, pl, n_cal)
            tp_n[key, pl] = rounded(rate * plan.throughput_s, multiple, 10 * multiple)
        rtt_n: dict[tuple[str, str], int] = {}
        for key, pl in rt_items:
            _, mean_ns = coord.round_trip(key, pl, RTT_CALIBRATION // plan.calibration_scale)
            rtt_n[key, pl] = max(plan.rtt_floor, int(plan.rtt_s * 1e9 / mean_ns))
        common.note(
            "ring bench: calibrated; "
            + ", ".join(f"{k}@{p}={v}" for (k, p), v in tp_n.items() if p == PINNED)
        )

        rates: dict[tuple[str, str], list[float]] = {item: [] for item in tp_items}
        hists = {item: HdrHistogram(1, HIST_MAX_NS, 3) for item in rt_items}
        for r in range(plan.rounds):
            t_round = time.perf_counter()
            tp_order = tp_items[r % len(tp_items) :] + tp_items[: r % len(tp_items)]
            rt_order = rt_items[r % len(rt_items) :] + rt_items[: r % len(rt_items)]
            if r % 2:
                tp_order.reverse()
                rt_order.reverse()
            for item in tp_order:
                rates[item].append(coord.throughput(*item, tp_n[item]))
            for item in rt_order:
                encoded, _ = coord.round_trip(*item, rtt_n[item])
                hists[item].decode_and_add(encoded)
            last = {k: v[-1] for (k, p), v in rates.items() if p == coord.placements(k)[0]}
            common.note(
                f"ring bench: round {r + 1}/{plan.rounds} "
                f"({time.perf_counter() - t_round:.1f} s): "
                f"ring.batched {common.fmt_rate(last['ring.batched'])}/s, "
                f"ring.single {common.fmt_rate(last['ring.single'])}/s, "
                f"mp_queue {common.fmt_rate(last['mp_queue'])}/s"
            )
    except BaseException:
        coord.close(graceful=False)  # a worker may be mid-case: do not wait for it
        raise
    coord.close()
    return {"rates": rates, "hists": hists}


# ---- instruction counts (callgrind) -----------------------------------------------------

# The probe marks each measured stretch with calls nothing else in it makes:
# ts_ring_read_info before (counters zeroed), ts_ring_set_consumer after (dumped).
ZERO_MARK = "ts_ring_read_info"
DUMP_MARK = "ts_ring_set_consumer"
PROBE_SINGLE = 20_000
PROBE_BATCHES = 16


def callgrind_probe(instance: str) -> None:
    """Run under callgrind by :func:`instructions`: one process pushes and pops through
    the public Ring API, in two marked stretches (per record, then batched)."""
    from tradsys._native import ffi, lib

    ring = Ring.create(
        ring_segment_name(instance, "cg"),
        slot_size=RECORD_SIZE,
        capacity=CAPACITY,
        layout_version=LAYOUT_VERSION,
    )
    try:
        info = ffi.new("ts_ring_info *")
        rec = bytes(range(RECORD_SIZE))
        batch = np.zeros(BATCH, COMMAND_DTYPE)
        out = np.zeros(BATCH, COMMAND_DTYPE)
        push, pop = ring.push, ring.pop
        for _ in range(1000):  # warm up: specialise the bytecode, fill caches
            push(rec)
            pop()
        ring.push_all(batch, SPIN)
        ring.pop_wait(out, SPIN)

        lib.ts_ring_read_info(ring._base, info)  # zero
        for _ in range(PROBE_SINGLE):
            push(rec)
            pop()
        lib.ts_ring_set_consumer(ring._ring, 0)  # dump 1

        push_all, pop_wait = ring.push_all, ring.pop_wait
        lib.ts_ring_read_info(ring._base, info)  # zero
        for _ in range(PROBE_BATCHES):
            push_all(batch, SPIN)
            pop_wait(out, SPIN)
        lib.ts_ring_set_consumer(ring._ring, 0)  # dump 2
    finally:
        ring.close()


def instructions() -> tuple[list[dict[str, Any]], list[str]]:
    """Instruction counts per record; returns result rows and lines of breakdown."""
    if _callgrind.valgrind() is None:
        return [], ["valgrind not installed: no instruction counts (apt-get install valgrind)"]
    instance = f"{INSTANCE_PREFIX}{os.getpid()}cg"
    argv = [sys.executable, os.path.abspath(__file__), "--callgrind-probe", instance]
    try:
        dumps = _callgrind.run(
            argv,
            zero_before=ZERO_MARK,
            dump_before=DUMP_MARK,
            env={
                "OPENBLAS_NUM_THREADS": "1",
                "PYTHONHASHSEED": "0",  # same dict probing every run: same count
                # valgrind counts every byte `rep movsb` moves as one instruction; make
                # glibc's memcpy use its vector loop so the count reflects the work
                "GLIBC_TUNABLES": "glibc.cpu.x86_rep_movsb_threshold=4294967295",
            },
            timeout=180,
        )
    finally:
        reclaim_stale(instance)  # only if the probe died before unlinking its ring
    if len(dumps) < 2:
        return [], [f"callgrind gave {len(dumps)} dumps, expected 2: no instruction counts"]
    single, batched = dumps[0], dumps[1]
    n1, n2 = PROBE_SINGLE, PROBE_BATCHES * BATCH
    c_single = single.of("ts_ring_push_one", "ts_ring_pop_one") / n1
    c_batched = batched.of("ts_ring_push_all", "ts_ring_pop_wait") / n2
    py_single = single.total / n1
    py_batched = batched.total / n2
    methods = single.of("port_push", "port_pop") / n1
    rows = [
        common.result(
            "ring.push_pop.instructions_per_record",
            "instructions",
            c_single,
            higher_is_better=False,
        ),
        common.result(
            "ring.batched.instructions_per_record",
            "instructions",
            c_batched,
            higher_is_better=False,
        ),
        common.result(
            "ring.single.python_instructions_per_record",
            "instructions",
            py_single,
            higher_is_better=False,
        ),
        common.result(
            "ring.batched.python_instructions_per_record",
            "instructions",
            py_batched,
            higher_is_better=False,
        ),
    ]
    lines = [
        "instructions per record (callgrind; one process, push then pop; exact and repeatable):",
        f"  per record, Ring.push(bytes) + Ring.pop(), whole Python path  {py_single:8.0f}",
        f"    of which the two C methods (native/ring_records.c)            {methods:8.0f}",
        f"      of which the C core: ts_ring_push_one + ts_ring_pop_one     {c_single:8.0f}",
        f"  batched 4096, push_all + pop_wait, whole Python path           {py_batched:8.1f}",
        f"    of which the C core (memcpy in and out included)              {c_batched:8.1f}",
        "  (memcpy counted in its vector loop: GLIBC_TUNABLES raises the rep-movsb threshold)",
    ]
    return rows, lines


# ---- report ----------------------------------------------------------------------------


def percentiles(hist: Any) -> tuple[float, float, float]:
    p50, p99, p999 = (hist.get_value_at_percentile(p) / 1000 for p in (50, 99, 99.9))
    return float(p50), float(p99), float(p999)


def report(data: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """JSON result rows and the human tables. Each transport is credited with its better
    placement: the higher median throughput, the lower round-trip p50."""
    rates: dict[tuple[str, str], list[float]] = data["rates"]
    hists: dict[tuple[str, str], Any] = data["hists"]
    med = {item: common.median(v) for item, v in rates.items()}
    pcts = {item: percentiles(h) for item, h in hists.items()}
    best_tp: dict[str, tuple[str, str]] = {}
    for item in med:
        if item[0] not in best_tp or med[item] > med[best_tp[item[0]]]:
            best_tp[item[0]] = item
    best_rt: dict[str, tuple[str, str]] = {}
    for item in pcts:
        if item[0] not in best_rt or pcts[item][0] < pcts[best_rt[item[0]]][0]:
            best_rt[item[0]] = item
    tp = {k: med[item] for k, item in best_tp.items()}
    pct = {k: pcts[item] for k, item in best_rt.items()}
    peer_tp = tp["mp_queue"]
    batched_peer_tp = tp["mp_queue.batched"]
    peer_p50, peer_p99, peer_p999 = pct["mp_queue"]

    results = [
        common.result(
            "ring.batched.throughput",
            "records/s",
            tp["ring.batched"],
            higher_is_better=True,
            peer=PEER,
            peer_value=peer_tp,
        ),
        common.result(
            "ring.batched.throughput.same_batching",
            "records/s",
            tp["ring.batched"],
            higher_is_better=True,
            peer=BATCHED_PEER,
            peer_value=batched_peer_tp,
        ),
        common.result(
            "ring.single.throughput",
            "records/s",
            tp["ring.single"],
            higher_is_better=True,
            peer=PEER,
            peer_value=peer_tp,
        ),
    ]
    for key, prefix in (("ring", "ring.rtt"), ("ring.wait", "ring.wait.rtt")):
        p50, p99, p999 = pct[key]
        for suffix, v, pv in (
            ("p50", p50, peer_p50),
            ("p99", p99, peer_p99),
            ("p999", p999, peer_p999),
        ):
            results.append(
                common.result(
                    f"{prefix}.{suffix}", "us", v, higher_is_better=False, peer=PEER, peer_value=pv
                )
            )
        # the whole spectrum once per transport, for `tradsys bench` to plot
        results[-2]["percentiles"] = spectrum_of(hists[best_rt[key]])
        results[-2]["peer_percentiles"] = spectrum_of(hists[best_rt["mp_queue"]])
    for key, name in JSON_NAME.items():
        results.append(
            common.result(f"peer.{name}.throughput", "records/s", tp[key], higher_is_better=True)
        )
        if key in pct:
            for suffix, v in zip(("p50", "p99", "p999"), pct[key], strict=True):
                results.append(
                    common.result(f"peer.{name}.rtt.{suffix}", "us", v, higher_is_better=False)
                )

    rows = []
    rtt_of = {"ring.single": "ring", "ring.batched": None}
    for key, label, *_ in THROUGHPUT:
        rkey = rtt_of.get(key, key if key in pct else None)
        samples = rates[best_tp[key]]
        p = pct[rkey] if rkey else (None, None, None)
        rows.append(
            [
                label,
                best_tp[key][1],
                common.fmt_rate(tp[key]) + "/s",
                f"{common.fmt_rate(min(samples))}-{common.fmt_rate(max(samples))}",
                best_rt[rkey][1] if rkey else "",
                *(common.fmt_us(x) for x in p),
                common.fmt_ratio(tp[key] / peer_tp),
                # a batched transport against the Queue carrying the same arrays
                common.fmt_ratio(tp[key] / batched_peer_tp) if key.endswith("batched") else "",
                common.fmt_ratio(peer_p50 / p[0]) if p[0] else "-",
            ]
        )
        if key == "ring.single":
            w = pct["ring.wait"]
            rows.append(
                [
                    "tradsys ring, wait_readable(busy_spin)",
                    "",
                    "",
                    "",
                    best_rt["ring.wait"][1],
                    *(common.fmt_us(x) for x in w),
                    "",
                    "",
                    common.fmt_ratio(peer_p50 / w[0]),
                ]
            )
    text = common.table(
        [
            "transport (64-byte records)",
            "cpus",
            "throughput",
            "min-max",
            "cpus",
            "rtt p50 us",
            "p99 us",
            "p99.9 us",
            "tput vs mp.Queue",
            "vs the same batches",
            "p50 vs mp.Queue",
        ],
        rows,
    )
    placements = sorted({pl for _, pl in med}, reverse=True)
    if len(placements) > 1:
        both = []
        for key, label, *_ in THROUGHPUT:
            if key.startswith("ring"):
                continue
            cells = [label]
            for pl in placements:
                cells.append(common.fmt_rate(med[key, pl]) + "/s")
            for pl in placements:
                pp = pcts.get((key, pl))
                cells.append(f"{common.fmt_us(pp[0])} / {common.fmt_us(pp[1])}" if pp else "-")
            both.append(cells)
        text += (
            "\n\npeers by placement (pinned: each worker on a CPU of its own; shared: both "
            "free; one-cpu: both on one CPU); the table above credits each with its best\n"
        )
        text += common.table(
            [
                "transport",
                *(f"tput {pl}" for pl in placements),
                *(f"rtt p50/p99 us {pl}" for pl in placements),
            ],
            both,
        )
    return results, text


def reclaim_leftovers() -> None:
    """Remove what an earlier run killed by SIGKILL left: ring segments (whose creator is
    gone, per their header) and ipc temp dirs (whose pid no longer runs)."""
    pattern = re.compile(rf"^/tradsys\.({INSTANCE_PREFIX}\d+(?:cg)?)\.")
    stale = {m.group(1) for s in instance_segments() if (m := pattern.match(s))}
    for inst in sorted(stale):
        for name in reclaim_stale(inst):
            common.note(f"ring bench: removed {name}, left by an earlier run that was killed")
    tmp = tempfile.gettempdir()
    for entry in os.listdir(tmp):
        m = re.match(rf"^{TMP_PREFIX}(\d+)-", entry)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            shutil.rmtree(os.path.join(tmp, entry), ignore_errors=True)
            common.note(f"ring bench: removed {os.path.join(tmp, entry)}, left by a killed run")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(1)  # CONVENTIONS: 1 on a user error


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short look (well under a minute)")
    ap.add_argument("--json", action="store_true", help="end stdout with the JSON result line")
    ap.add_argument("--rounds", type=int, help="measured rounds (default 6, quick 2)")
    ap.add_argument("--no-callgrind", action="store_true", help="skip the instruction counts")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the workers to CPUs")
    ap.add_argument("--callgrind-probe", metavar="INSTANCE", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.callgrind_probe:
        callgrind_probe(args.callgrind_probe)
        return 0
    if args.rounds is not None and args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` cleans up
    reclaim_leftovers()

    plan = Plan.of(args.quick, args.rounds)
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    try:
        # the peers block and are woken, TradSys spins: idle CPUs that poll wake the peers
        # sooner (multiprocessing.Queue's round trip p50 ~19 µs instead of ~32 on the
        # 2-vCPU VM), so they are measured as a tuned host runs them
        with common.idle_polling() as idle_line:
            data = measure(plan, pin=not args.no_pin)
        results, text = report(data)
        notes: list[str] = []
        if not args.no_callgrind:
            common.note("ring bench: counting instructions under callgrind")
            rows, notes = instructions()
            results += rows
    except BenchError as exc:
        print(f"ring bench failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ring bench interrupted; workers stopped and segments removed", file=sys.stderr)
        return 130

    print(
        f"ring bench: {'quick' if args.quick else 'full'} run, {plan.rounds} rounds, "
        f"{common.cpu_count()} cpus, python {sys.version.split()[0]}, "
        f"{time.perf_counter() - t_start:.0f} s; load average {load_start:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after (the two workers alone add up to about 2)"
    )
    print(text)
    print(
        "throughput: median of rounds, one-way A->B; rtt: ping-pong A->B->A, one message in "
        f"flight (closed loop), merged HdrHistogram over rounds; {idle_line}"
    )
    for line in notes:
        print(line)
    if args.json:
        common.emit_json(BENCH, args.quick, results)
    return 0


if __name__ == "__main__":
    sys.exit(common.run_bench(BENCH, main))
