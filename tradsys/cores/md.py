"""The market-data sidecar: drains every shard's ``md`` ring and publishes it on ZeroMQ.

``python -m tradsys.cores.md <instance_dir>/config.json`` (the contract of
``tradsys.cores.sidecar``). One thread, one loop:

- pop a batch from each shard's md ring; group it by (symbol, channel) and send one
  message per group (``tradsys.marketdata.framing``) on the PUB socket, bound to every
  ``[md] publish`` endpoint; remember the L2 books it published (``L2Store``). A batch of
  a few records (a quiet market: the latency path) takes a plain-Python path instead;
- when every ring is empty, wait on all of them at once (``RingSet``: one futex_waitv);
- answer snapshot requests on the ROUTER socket between batches — so a snapshot is
  always valid at a sequence number the feed has already published;
- every ``heartbeat_ms``: a heartbeat with every symbol's last sequence numbers;
- once a second, when idle: its counters to ``md.stats.json`` for ``/metrics``
  (``tradsys.marketdata.stats``; encoded here, written by a thread of its own).

At start (and after a crash, when it is restarted) it knows none of the books the
workers hold, so it asks each worker for a market-data refresh through its control
block (native/worker.h); snapshot requests for a symbol wait until its image arrives,
and its row of the conflated BBO board is filled from the image's book.
Slow subscribers never slow it: the PUB socket drops a subscriber's messages past the
high-water mark (``[md] sndhwm``), and that subscriber recovers by snapshot.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import psutil
import zmq

from tradsys import logs
from tradsys.config import Config, ConfigError
from tradsys.cores.control import WorkerControl
from tradsys.cores.memory_lock import lock_if_asked
from tradsys.cores.parent_watch import stop_with_supervisor
from tradsys.cores.sched_slice import set_thread_slice
from tradsys.cores.sidecar import announce_ready, read_effective_config, stop_event, withdraw
from tradsys.marketdata.framing import (
    CHANNEL_NO,
    N_CHANNELS,
    STATUS_CHANNEL,
    FramePacker,
    group,
)
from tradsys.marketdata.l2store import L2Store
from tradsys.marketdata.placement import io_thread_cpus, place_io_threads
from tradsys.marketdata.protocol import (
    BBO_BOARD_TOPIC,
    CHANNELS,
    HEARTBEAT_TOPIC,
    BookSnapshot,
    Channel,
    Heartbeat,
    SnapshotError,
    SnapshotRequest,
    heartbeat_encoder,
    request_decoder,
)
from tradsys.marketdata.ring_set import RingSet, idle_wait
from tradsys.marketdata.stats import (
    PublishStats,
    StageLog,
    StatsFileWriter,
    remove_stats,
    stats_bytes,
    write_stats,
)
from tradsys.ring import Ring, WaitStrategy, segment_name
from tradsys.ring.errors import RingError
from tradsys.wire import LAYOUT_VERSION, MD_DTYPE, RECORD_SIZE, MdKind

EXIT_OK, EXIT_USER_ERROR, EXIT_FAILURE = 0, 1, 2
BATCH = 32768  # records drained per ring per turn: bigger batches, fewer messages
# Batches up to this size take the scalar path, one message per record. The batch path
# sends nothing before ~55 µs of numpy work (hot; whatever the size); the scalar path's
# first message leaves after ~2 µs, then ~2 µs a record hot but 6-8 µs in the md bench's
# sidecar on a busy host (its stage log). A quiet market drains a command's few records,
# and, after a stall, a few commands' worth: up to 16 records the scalar path's last
# message still leaves about when the batch path's first would (it was 8: a stall's
# 9-16 records all waited for numpy).
SMALL_BATCH = 16
IDLE_WAIT_S = 0.002  # longest wait on the rings before looking at snapshot requests again
# the stats file for /metrics, refreshed once a second when idle: the loop only encodes
# it (a few µs); the file system calls (ms at their tail) run in StatsFileWriter's thread
STATS_EVERY_NS = 1_000_000_000
# MD_DTYPE as one struct: the scalar path reads a record's fields in one call
_RECORD = struct.Struct("<BB2xIQqqqqI4xq")
assert _RECORD.size == RECORD_SIZE and MD_DTYPE.itemsize == RECORD_SIZE
_CHANNEL_OF_KIND = CHANNEL_NO.tolist()
# pyzmq's native send, under its Python "sugar" (which only adds keyword handling we do
# not use): about 0.35 µs less per frame on the quiet path, where each record costs two
_BACKEND_SEND = zmq.backend.Socket.send
NOT_READY_AFTER_S = 5.0  # a snapshot request waits this long for a refresh image
# snapshot requests served per turn of the loop, then back to the rings: a client sending
# requests faster than they are answered (a flood, or garbage) must not stop the feed --
# and, once a shard's md ring is full, the shard itself
REQUESTS_PER_TURN = 64

log = logging.getLogger("tradsys.md")
BBO_CHANNEL = CHANNELS.index(Channel.BBO)


def bind_endpoint(sock: zmq.Socket[Any], endpoint: str) -> str:
    """Bind, turning a tcp port 0 into "any free port"; return the bound endpoint."""
    if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
        endpoint = endpoint[:-1] + "*"
    sock.bind(endpoint)
    return str(sock.getsockopt_string(zmq.LAST_ENDPOINT))


@dataclass
class ShardFeed:
    """One shard's md ring (this process its consumer) and control block."""

    shard_id: int
    ring: Ring
    control: WorkerControl
    refresh_asked: int = 0


@dataclass
class Waiting:
    envelope: list[bytes]
    request: SnapshotRequest
    deadline: float


@dataclass
class MdSidecar:
    """The sidecar's state; :meth:`open`, :meth:`run`, :meth:`close` (see the module)."""

    config: Config
    feeds: list[ShardFeed] = field(default_factory=list)
    endpoints: dict[str, Any] = field(default_factory=dict)
    not_ready_after_s: float = NOT_READY_AFTER_S
    # where ZeroMQ's I/O thread may run; None: where this process does (placement.py)
    io_cpus: set[int] | None = None

    def __post_init__(self) -> None:
        self.symbols = sorted(self.config.instruments, key=lambda i: i.symbol_id)
        self.names = [i.symbol for i in self.symbols]
        self.symbol_ids = [i.symbol_id for i in self.symbols]
        self.by_name = {i.symbol: k for k, i in enumerate(self.symbols)}
        self.store = L2Store([i.symbol_id for i in self.symbols])
        self._si_of_id = {i.symbol_id: k for k, i in enumerate(self.symbols)}
        self.packer = FramePacker(self.names, self.config.md.max_frame_records)
        self.feed_id = random.getrandbits(63)
        self.wait = idle_wait(WaitStrategy.named(self.config.engine.wait))
        self._buf = np.zeros(BATCH, MD_DTYPE)
        self._raw = self._buf.view(np.uint8).data  # the same bytes, for the scalar path
        self.stats = PublishStats([s.id for s in self.config.shards])
        self.stages = StageLog.from_env()
        self._waiting: list[Waiting] = []
        self._board = np.zeros(len(self.symbols), MD_DTYPE)
        self._board_raw = self._board.view(np.uint8).data
        self._ctx: zmq.Context[Any] | None = None
        self.pub: Any = None
        self.router: Any = None
        self.conflated: Any = None
        self.ring_set: RingSet | None = None
        self.stats_writer: StatsFileWriter | None = None

    # ---- start and stop --------------------------------------------------------------------

    def open(self) -> None:
        """Attach every shard's md ring and control block, bind the sockets, and ask the
        workers for their books."""
        md = self.config.md
        instance = self.config.engine.instance
        for shard in self.config.shards:
            ring = Ring.attach(
                segment_name(instance, "md", shard.id),
                slot_size=RECORD_SIZE,
                layout_version=LAYOUT_VERSION,
                role="consumer",
            )
            try:
                control = WorkerControl.attach(segment_name(instance, "ctl", shard.id))
            except BaseException:
                ring.close()
                raise
            self.feeds.append(ShardFeed(shard.id, ring, control))
        self._ctx = zmq.Context()
        place_io_threads(self._ctx, self.io_cpus)
        self.pub = self._ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, md.sndhwm)
        self.pub.setsockopt(zmq.LINGER, 1000)
        self.endpoints["publish"] = [bind_endpoint(self.pub, e) for e in md.publish]
        self.router = self._ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.endpoints["snapshot"] = bind_endpoint(self.router, md.snapshot)
        if md.conflated_bbo:
            self.conflated = self._ctx.socket(zmq.PUB)
            self.conflated.setsockopt(zmq.CONFLATE, 1)
            self.conflated.setsockopt(zmq.LINGER, 0)
            self.endpoints["conflated_bbo"] = bind_endpoint(self.conflated, md.conflated_bbo)
        self.ring_set = RingSet([f.ring for f in self.feeds], self.wait) if self.feeds else None
        for feed in self.feeds:
            feed.refresh_asked = feed.control.request_md_refresh()
        self.stats_writer = StatsFileWriter(self.config.instance_dir)

    def close(self) -> None:
        """Close the sockets (queued messages get LINGER to leave) and unmap the rings;
        the stats file gets its last write first."""
        if self.stats_writer is not None:
            self.stats_writer.close()
            self.stats_writer = None
        if self._ctx is not None:
            for sock in (self.pub, self.router, self.conflated):
                if sock is not None:
                    sock.close()
            self._ctx.term()
            self._ctx = None
        for feed in self.feeds:
            feed.ring.close()
            feed.control.close()
        self.feeds.clear()
        self.ring_set = None
        if self.stages is not None:
            self.stages.save()

    # ---- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Publish until ``stop`` is set, then publish what the rings still hold."""
        interval_ns = self.config.md.heartbeat_ms * 1_000_000
        next_beat = next_stats = time.monotonic_ns()
        while not stop.is_set():
            busy = self.drain_once()
            if int(self.router.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                self._serve_requests()
            now = time.monotonic_ns()
            if now >= next_beat:
                self._heartbeat()
                self._tick()
                next_beat = now + interval_ns
            if now >= next_stats and (not busy or now >= next_stats + STATS_EVERY_NS):
                # when idle (a file write must not sit between a record and its
                # message), or, under constant load, a little late
                self.write_stats()
                next_stats = now + STATS_EVERY_NS
            if not busy and self.ring_set is not None:
                # on every ring at once, bounded so snapshot requests are served
                left = max(0.0, min(IDLE_WAIT_S, (next_beat - now) / 1e9))
                self.ring_set.wait_readable(left)
        while self.drain_once():  # the workers have drained: publish all they emitted
            pass
        self._heartbeat()
        self.write_stats()

    def write_stats(self) -> None:
        """Refresh ``md.stats.json`` for /metrics (see tradsys.marketdata.stats): encoded
        here, written by the writer thread once :meth:`open` has started it."""
        if self.stats_writer is not None:
            self.stats_writer.submit(stats_bytes(self.stats))
            return
        try:
            write_stats(self.config.instance_dir, self.stats)
        except OSError as exc:  # monitoring must not stop the feed
            log.warning("md: cannot write its stats file: %s", exc)

    def drain_once(self) -> bool:
        """Pop and publish one batch from every shard; True if any had records."""
        busy = False
        buf = self._buf
        drained = self.stats.drained
        for feed in self.feeds:
            n = feed.ring.pop_batch(buf)
            if n:
                drained[feed.shard_id] += n
                if n > SMALL_BATCH or not self._publish_small(n):
                    self.handle(buf[:n])
                busy = True
        return busy

    def handle(self, batch: np.ndarray) -> None:
        """Publish a batch of md records and keep the books (refresh images included)."""
        sym = self.store.index(batch["symbol_id"])
        if (sym < 0).any():
            log.warning("dropping %d md records of unknown symbols", int((sym < 0).sum()))
            keep = sym >= 0
            # mask raw rows: masking the structured dtype leaves the copy's padding undefined
            rows = batch.view(np.uint8).reshape(len(batch), RECORD_SIZE)[keep]
            batch, sym = rows.reshape(-1).view(MD_DTYPE), sym[keep]
        kind = batch["kind"]
        special = kind >= MdKind.L2_REFRESH_BEGIN  # a refresh image or a STATUS record
        if not special.any():
            self._publish(batch, sym)
            return
        # runs of: engine records (grouped by channel as usual), refresh images, and each
        # STATUS record on its own -- published after what the engine emitted before it
        # and before what came after, so a phase change keeps its place among the trades
        # and book changes of every channel (a batch's channels are otherwise reordered)
        cls = np.where(kind == MdKind.STATUS, 2, special.astype(np.int8))
        cut = (cls[1:] != cls[:-1]) | (cls[1:] == 2)
        cuts = (np.flatnonzero(cut) + 1).tolist()
        for a, b in zip([0, *cuts], [*cuts, len(batch)], strict=True):
            if cls[a] == 1:
                refreshed = self.store.apply_refresh(batch[a:b], sym[a:b])
                if refreshed and self.conflated is not None:
                    self._board_from_books(refreshed)
            else:
                self._publish(batch[a:b], sym[a:b])
        if self._waiting:
            self._answer_waiting()

    def _publish(self, batch: np.ndarray, sym: np.ndarray) -> None:
        drained = time.time_ns() if self.stages is not None else 0
        g = group(batch, sym)
        self.store.apply(g)
        pub, topics, raw = self.pub, self.packer.topics, g.raw
        stats = self.stats
        messages = [0] * N_CHANNELS
        size = 0
        spans = list(self.packer.spans(g))
        sent = time.time_ns()
        for k, a, b in spans:
            t = topics[k]
            pub.send(t, zmq.SNDMORE)
            pub.send(raw[a * RECORD_SIZE : b * RECORD_SIZE])
            messages[k % N_CHANNELS] += 1
            size += len(t) + (b - a) * RECORD_SIZE
        records = np.bincount(g.channel, minlength=N_CHANNELS).tolist()
        for c in range(N_CHANNELS):
            stats.records[c] += records[c]
            stats.messages[c] += messages[c]
        stats.bytes += size
        stats.lag_many(sent, batch["time_ns"])
        if self.stages is not None:
            seqs = g.records["seq"].tolist()
            for k, a, b in spans:
                c, si = k % N_CHANNELS, k // N_CHANNELS
                self.stages.note(c, si, seqs[a], seqs[b - 1], drained, sent)
        if self.conflated is not None:
            bbo = batch["kind"] == MdKind.BBO
            if bbo.any():
                # the last BBO of each symbol in the batch (seqs grow, so the greatest)
                rows, s = batch[bbo], sym[bbo]
                last = len(s) - 1 - np.unique(s[::-1], return_index=True)[1]
                self._board[s[last]] = rows[last]
                self._send_board()

    def _publish_small(self, n: int) -> bool:
        """Publish the first ``n`` records of the buffer one message each, in plain
        Python: when the market is quiet records come a few at a time and this is the
        latency path, where numpy's per-call costs would dominate. False (nothing done)
        when the batch holds refresh records, which take the batch path."""
        raw = self._raw
        end = n * RECORD_SIZE
        for off in range(0, end, RECORD_SIZE):
            if MdKind.L2_REFRESH_BEGIN <= raw[off] <= MdKind.L2_REFRESH_END:
                return False
        drained = time.time_ns() if self.stages is not None else 0
        pub, topics, store, stats = self.pub, self.packer.topics, self.store, self.stats
        unpack, si_of_id, channel_of = _RECORD.unpack_from, self._si_of_id, _CHANNEL_OF_KIND
        send = _BACKEND_SEND
        for off in range(0, end, RECORD_SIZE):
            kind, side, symbol_id, seq, price, qty, ask, _, count, stamp = unpack(raw, off)
            si = si_of_id.get(symbol_id, -1)
            if si < 0:
                log.warning("dropping an md record of unknown symbol %d", symbol_id)
                continue
            channel = channel_of[kind]
            if channel == STATUS_CHANNEL:
                store.apply_status(si, seq, price, ask)
            else:
                store.apply_scalar(si, channel, seq, side, price, qty, count)
            t = topics[si * N_CHANNELS + channel]
            sent = time.time_ns()  # before the send: it may hand the CPU to ZeroMQ's thread
            send(pub, t, zmq.SNDMORE)
            send(pub, raw[off : off + RECORD_SIZE])  # copied: the buffer is reused
            stats.records[channel] += 1
            stats.messages[channel] += 1
            stats.bytes += len(t) + RECORD_SIZE
            if stamp:
                stats.lag_one(sent - stamp)
            if self.stages is not None:
                self.stages.note(channel, si, seq, seq, drained, sent)
            if self.conflated is not None and channel == BBO_CHANNEL:
                self._board_raw[si * RECORD_SIZE : (si + 1) * RECORD_SIZE] = raw[
                    off : off + RECORD_SIZE
                ]
                self._send_board()
        return True

    def _send_board(self) -> None:
        self.conflated.send(BBO_BOARD_TOPIC + self._board.tobytes())
        self.stats.board_messages += 1

    def _board_from_books(self, symbols: list[int]) -> None:
        """Board rows for symbols whose refresh image just completed, from their books.
        The image carries the BBO's seq but not its values, so a restarted sidecar would
        say "no BBO" for every quiet symbol until its BBO next changed; the book's best
        levels are those values (L2Store.bbo_record). A symbol that never had a BBO (seq
        0) keeps its empty row; a row already at the seq came from the record itself
        and keeps its engine time."""
        board, seqs, changed = self._board, self.store.bbo_seq, False
        for si in symbols:
            row = board[si]
            if seqs[si] == 0 or (row["kind"] == MdKind.BBO and row["seq"] >= seqs[si]):
                continue
            rec = self.store.bbo_record(si)
            self._board_raw[si * RECORD_SIZE : (si + 1) * RECORD_SIZE] = rec.tobytes()
            changed = True
        if changed:
            self._send_board()

    @property
    def io_threads(self) -> int:
        """ZeroMQ I/O threads of the sidecar's context (0 before :meth:`open`)."""
        return 0 if self._ctx is None else int(self._ctx.get(zmq.IO_THREADS))

    @property
    def published_records(self) -> int:
        return sum(self.stats.records)

    @property
    def published_messages(self) -> int:
        return sum(self.stats.messages)

    # ---- snapshots ------------------------------------------------------------------------

    def _serve_requests(self) -> None:
        for _ in range(REQUESTS_PER_TURN):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            envelope, body = frames[:-1], frames[-1]
            try:
                req = request_decoder.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self._reply(envelope, SnapshotError(0, "malformed_request", str(exc)))
                continue
            si = self.by_name.get(req.symbol)
            if si is None:
                msg = f"unknown symbol {req.symbol!r}"
                self._reply(envelope, SnapshotError(req.id, "unknown_symbol", msg))
            elif self.store.servable(si):
                self._reply(envelope, self._snapshot(si, req.id))
            else:
                deadline = time.monotonic() + self.not_ready_after_s
                self._waiting.append(Waiting(envelope, req, deadline))

    def _snapshot(self, si: int, request_id: int) -> BookSnapshot:
        bids, asks = self.store.book(si)
        s = self.store
        status_seq, phase, reopen_ns = s.status(si)
        return BookSnapshot(
            id=request_id,
            symbol=self.names[si],
            symbol_id=self.symbols[si].symbol_id,
            l2_seq=int(s.l2_seq[si]),
            trade_seq=int(s.trade_seq[si]),
            bbo_seq=int(s.bbo_seq[si]),
            bids=bids,
            asks=asks,
            time_ns=time.time_ns(),
            status_seq=status_seq,
            phase=phase,
            reopen_ns=reopen_ns,
        )

    def _answer_waiting(self) -> None:
        now = time.monotonic()
        still: list[Waiting] = []
        for w in self._waiting:
            si = self.by_name[w.request.symbol]
            if self.store.servable(si):
                self._reply(w.envelope, self._snapshot(si, w.request.id))
            elif now > w.deadline:
                msg = f"{w.request.symbol}: the book is not known yet (waiting for its worker)"
                self._reply(w.envelope, SnapshotError(w.request.id, "not_ready", msg))
            else:
                still.append(w)
        self._waiting = still

    def _reply(self, envelope: list[bytes], reply: BookSnapshot | SnapshotError) -> None:
        if isinstance(reply, SnapshotError):
            errors = self.stats.snapshot_errors
            errors[reply.reason] = errors.get(reply.reason, 0) + 1
        else:
            self.stats.snapshots_served += 1
        self.router.send_multipart([*envelope, msgspec.msgpack.encode(reply)])

    # ---- heartbeats and refreshes -------------------------------------------------------------

    def _heartbeat(self) -> None:
        s = self.store
        # (symbol, symbol_id, trade, l2, bbo, status) tuples, which msgspec encodes as the
        # array-like SymbolSeqs they decode to: a struct per symbol cost 250 µs of this
        # loop per heartbeat with 1 000 symbols, the tuples 77 µs
        # (tests/marketdata/test_heartbeat_rows.py holds the bytes equal)
        rows: list[Any] = list(
            zip(
                self.names,
                self.symbol_ids,
                s.trade_seq.tolist(),
                s.l2_seq.tolist(),
                s.bbo_seq.tolist(),
                s.status_seq.tolist(),
                strict=True,
            )
        )
        hb = Heartbeat(time.time_ns(), self.feed_id, self.config.md.heartbeat_ms, rows)
        self.pub.send_multipart([HEARTBEAT_TOPIC, heartbeat_encoder.encode(hb)])
        self.stats.heartbeats += 1
        if self.conflated is not None:
            self._send_board()  # so a board subscriber that joins a quiet market gets one

    def _tick(self) -> None:
        """Once per heartbeat: time out waiting requests, and ask again for a refresh a
        worker served but whose image did not complete (cut by a crash)."""
        if self._waiting:
            self._answer_waiting()
        if self.store.all_servable():
            return
        for feed in self.feeds:
            served = feed.control.md_refreshes_served
            # served first, then the ring: an image pushed before `served` is drained
            if served == feed.refresh_asked and feed.ring.readable == 0:
                mine = self.store.index(
                    np.array([i.symbol_id for i in self.config.symbols_of(feed.shard_id)])
                )
                if len(mine) and not self.store.all_servable(mine):
                    feed.refresh_asked = feed.control.request_md_refresh()


def _short_slices(slice_us: int, io_threads: int) -> None:
    """The publishing thread and ZeroMQ's I/O threads (started with the first socket)
    hand each quiet-market record on to each other, and on a shared core to the shard
    worker: a short slice lets each run as soon as it is woken (tradsys.cores.sched_slice).
    The stats writer thread keeps the default: its file writes are not on the path."""
    if not slice_us:
        return
    me = threading.get_native_id()
    for tid, name in _threads_once_named(io_threads).items():
        if tid == me or name.startswith("ZMQbg/IO"):
            try:
                set_thread_slice(slice_us * 1000, tid)
            except OSError as exc:
                log.warning("md: %s; running with the default slice", exc)


def _threads_once_named(io_threads: int, timeout_s: float = 2.0) -> dict[int, str]:
    """{tid: name} of this process's threads, once ZeroMQ's ``io_threads`` I/O threads
    carry their names: each names itself after it starts, so one listed in that instant
    is still called after the process and would be taken for another thread."""
    deadline = time.monotonic() + timeout_s
    while True:
        names = {}
        for tid in sorted(int(t) for t in os.listdir("/proc/self/task")):
            try:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    names[tid] = f.read().strip()
            except OSError:  # a thread that just ended
                continue
        named = sum(name.startswith("ZMQbg/IO") for name in names.values())
        if named >= io_threads or time.monotonic() >= deadline:
            return names
        time.sleep(0.0005)


def run_md(config: Config) -> int:
    """The body of the sidecar process; returns its exit code."""
    stop = stop_event()
    stop_with_supervisor()  # the supervisor's death is a SIGTERM too
    allowed = set(psutil.Process().cpu_affinity() or ())
    if config.md.core is not None:
        psutil.Process().cpu_affinity([config.md.core])
    wait = WaitStrategy.named(config.engine.wait)
    sidecar = MdSidecar(config, io_cpus=io_thread_cpus(config.md.core, wait, allowed))
    try:
        try:
            sidecar.open()
        except (RingError, OSError, zmq.ZMQError) as exc:
            log.error("md: cannot start: %s", exc)
            return EXIT_USER_ERROR
        _short_slices(config.engine.sched_slice_us, sidecar.io_threads)
        # what start-up made is never garbage: freeze it, so a collection (rare: the
        # loop's objects die by reference counting) never scans it mid-publish
        gc.collect()
        gc.freeze()
        announce_ready(
            config,
            "md",
            symbols=sidecar.names,
            **sidecar.endpoints,
        )
        log.info(
            "md: publishing on %s, snapshots on %s",
            ", ".join(sidecar.endpoints["publish"]),
            sidecar.endpoints["snapshot"],
        )
        sidecar.run(stop)
        log.info(
            "md: stopped after %d records in %d messages",
            sidecar.published_records,
            sidecar.published_messages,
        )
        return EXIT_OK
    finally:
        sidecar.close()
        withdraw(config, "md")
        remove_stats(config.instance_dir)


def main(argv: list[str] | None = None) -> int:
    """``python -m tradsys.cores.md <instance_dir>/config.json``."""
    args = sys.argv[1:] if argv is None else argv
    logs.configure("md")
    if len(args) != 1:
        print("usage: python -m tradsys.cores.md CONFIG_JSON", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        config = read_effective_config(args[0])
    except ConfigError as exc:
        print(f"tradsys.md: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    if not lock_if_asked(config.engine.lock_memory, "md", log.error):
        return EXIT_USER_ERROR
    try:
        return run_md(config)
    except Exception:
        log.exception("md: failed (pid %d)", os.getpid())
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
