"""The md sidecar's state and its publishing loop (the process around it:
:mod:`tradsys.cores.md`).

One thread, one loop:

- read a batch from each shard's md ring; group it by (symbol, channel) and send one
  message per group (``tradsys.marketdata.framing``) on the PUB socket, bound to every
  ``[md] publish`` endpoint; remember the L2 books it published (``L2Store``); release
  it from the ring only then (a kill -9 in between loses none of it). A batch of
  a few records (a quiet market: the latency path) takes a plain-Python path instead;
- when every ring is empty, wait on all of them at once (``RingSet``: one futex_waitv);
- keep every trade print it publishes (``TradeHistory``), and answer snapshot and
  trade replay requests on the ROUTER socket between batches
  (:mod:`tradsys.cores.md_snapshots`) — so a snapshot is always valid at a sequence
  number the feed has already published, and a replay finds every print published;
- every ``heartbeat_ms``: a heartbeat with every symbol's last sequence numbers
  (:mod:`tradsys.cores.md_heartbeat`), and the conflated BBO board
  (:mod:`tradsys.cores.md_board`);
- once a second, when idle: its counters to ``md.stats.json`` for ``/metrics``
  (``tradsys.marketdata.stats``; encoded here, written by a thread of its own).
"""

from __future__ import annotations

import logging
import random
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from tradsys.config import Config, symbol_placement
from tradsys.cores.liveness import Beater, beat_interval_s
from tradsys.cores.md_board import ConflatedBoard
from tradsys.cores.md_endpoints import EndpointBinder
from tradsys.cores.md_heartbeat import heartbeat_payload
from tradsys.cores.md_shards import ShardFeed, ask_again_for_cut_images
from tradsys.cores.md_snapshots import NOT_READY_AFTER_S, SnapshotService
from tradsys.cores.md_unknown_symbols import UnknownSymbols
from tradsys.marketdata.framing import (
    CHANNEL_NO,
    N_CHANNELS,
    STATUS_CHANNEL,
    FramePacker,
    group,
)
from tradsys.marketdata.l2store import L2Store
from tradsys.marketdata.placement import place_io_threads
from tradsys.marketdata.protocol import CHANNELS, HEARTBEAT_TOPIC, Channel
from tradsys.marketdata.ring_set import RingSet, idle_wait
from tradsys.marketdata.stats import (
    PublishStats,
    StageLog,
    StatsFileWriter,
    stats_bytes,
    write_stats,
)
from tradsys.marketdata.trade_history import TradeHistory
from tradsys.matching import Phase
from tradsys.ring import WaitStrategy
from tradsys.wire import MD_DTYPE, RECORD_SIZE, MdKind

BATCH = 32768  # records drained per ring per turn: bigger batches, fewer messages
# Batches up to this size take the scalar path, one message per record. The batch path
# sends nothing before ~55 µs of numpy work (hot; whatever the size); the scalar path's
# first message leaves after ~2 µs, then ~2 µs a record hot but 6-8 µs in the md bench's
# sidecar on a busy host (its stage log). A quiet market drains a command's few records,
# and, after a stall, a few commands' worth: up to 16 records the scalar path's last
# message still leaves about when the batch path's first would (it was 8: a stall's
# 9-16 records all waited for numpy).
SMALL_BATCH = 16
# The longest wait on the rings before looking at snapshot requests again (a record on a
# ring ends the wait at once, whatever its bound): short while the market moves, long once
# it has been quiet for a while, so an idle sidecar does not wake 500 times a second
# (7 % of a CPU) only to find no request. A late joiner to a quiet market waits at most
# the long bound for its snapshot.
IDLE_WAIT_S = 0.002
IDLE_WAIT_QUIET_S = 0.05
QUIET_AFTER_NS = 1_000_000_000


def idle_wait_s(quiet_ns: int) -> float:
    """The bound of an idle wait after ``quiet_ns`` without records or requests."""
    return IDLE_WAIT_QUIET_S if quiet_ns >= QUIET_AFTER_NS else IDLE_WAIT_S


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
BBO_CHANNEL = CHANNELS.index(Channel.BBO)
TRADE_CHANNEL = CHANNELS.index(Channel.TRADE)

log = logging.getLogger("tradsys.md")


@dataclass
class MdSidecar:
    """The sidecar's state; :meth:`open`, :meth:`run`, :meth:`close` (see the module)."""

    config: Config
    feeds: list[ShardFeed] = field(default_factory=list)
    endpoints: dict[str, Any] = field(default_factory=dict)
    not_ready_after_s: float = NOT_READY_AFTER_S
    # where ZeroMQ's I/O thread may run; None: where this process does (placement.py)
    io_cpus: set[int] | None = None
    # a restarted sidecar's first announced endpoints, whose wildcards it binds again
    # (tradsys.cores.md_endpoints); empty at a first start
    kept_endpoints: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.symbols = sorted(self.config.instruments, key=lambda i: i.symbol_id)
        self.names = [i.symbol for i in self.symbols]
        self.symbol_ids = [i.symbol_id for i in self.symbols]
        self.store = L2Store([i.symbol_id for i in self.symbols])
        self._si_of_id = {i.symbol_id: k for k, i in enumerate(self.symbols)}
        self.packer = FramePacker(self.names, self.config.md.max_frame_records)
        self.feed_id = random.getrandbits(63)
        self.wait = idle_wait(WaitStrategy.named(self.config.engine.wait))
        self._buf = np.zeros(BATCH, MD_DTYPE)
        self._raw = self._buf.view(np.uint8).data  # the same bytes, for the scalar path
        self.stats = PublishStats([s.id for s in self.config.shards])
        self.stages = StageLog.from_env()
        self.history = self._trade_history()
        self.snapshots = SnapshotService(
            self.names,
            self.symbol_ids,
            self.store,
            self.stats,
            self.not_ready_after_s,
            self.config.md.snapshot_rate,
            self.history,
        )
        self.board = ConflatedBoard(len(self.symbols), self.stats)
        self.unknown = UnknownSymbols(self.stats)
        self._ctx: zmq.Context[Any] | None = None
        self.pub: Any = None
        self.router: Any = None
        self.conflated: Any = None
        self.ring_set: RingSet | None = None
        self.stats_writer: StatsFileWriter | None = None
        self.binder = EndpointBinder()

    def _trade_history(self) -> TradeHistory | None:
        """The prints kept for replay, each symbol's in its shard's directory."""
        depth = self.config.md.trade_history
        if not depth:
            return None
        shard_of = symbol_placement(self.config)
        dirs = [self.config.shard_data_dir(shard_of[name]) for name in self.names]
        return TradeHistory(self.symbol_ids, dirs, depth)

    # ---- start and stop --------------------------------------------------------------------

    def open(self) -> None:
        """Attach every shard's md ring and control block, bind the sockets, and ask the
        workers for their books."""
        md = self.config.md
        instance = self.config.engine.instance
        binder = self.binder = EndpointBinder(self.kept_endpoints)
        for shard in self.config.shards:
            self.feeds.append(ShardFeed.attach(instance, shard.id))
        self._ctx = zmq.Context()
        place_io_threads(self._ctx, self.io_cpus)
        self.pub = self._ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, md.sndhwm)
        self.pub.setsockopt(zmq.LINGER, 1000)
        self.endpoints["publish"] = [
            binder.bind(self.pub, "publish", e, i) for i, e in enumerate(md.publish)
        ]
        self.router = self._ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.endpoints["snapshot"] = binder.bind(self.router, "snapshot", md.snapshot)
        if md.conflated_bbo:
            self.conflated = self._ctx.socket(zmq.PUB)
            self.conflated.setsockopt(zmq.CONFLATE, 1)
            self.conflated.setsockopt(zmq.LINGER, 0)
            self.endpoints["conflated_bbo"] = binder.bind(
                self.conflated, "conflated_bbo", md.conflated_bbo
            )
        self.ring_set = RingSet([f.ring for f in self.feeds], self.wait) if self.feeds else None
        for feed in self.feeds:
            feed.ask_for_refresh()
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
            self.binder.remove_made_sockets()
        for feed in self.feeds:
            feed.close()
        self.feeds.clear()
        self.ring_set = None
        if self.history is not None:
            self.history.close()
        if self.stages is not None:
            self.stages.save()

    # ---- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Publish until ``stop`` is set, then publish what the rings still hold."""
        interval_ns = self.config.md.heartbeat_ms * 1_000_000
        next_beat = next_stats = last_active = time.monotonic_ns()
        alive = Beater(beat_interval_s(self.config.engine.heartbeat_timeout_ms))
        while not stop.is_set():
            busy = self.drain_once()
            asked = int(self.router.getsockopt(zmq.EVENTS)) & zmq.POLLIN
            if asked:
                self._serve_requests()
            now = time.monotonic_ns()
            alive.maybe_beat(now / 1e9)  # the supervisor's sign that this loop runs
            if busy or asked:
                last_active = now
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
                bound = idle_wait_s(now - last_active)
                left = max(0.0, min(bound, (next_beat - now) / 1e9, alive.interval_s))
                self.ring_set.wait_readable(left)
        while self.drain_once():  # the workers have drained: publish all they emitted
            pass
        self._heartbeat()
        self.write_stats()

    def write_stats(self) -> None:
        """Refresh ``md.stats.json`` for /metrics (see tradsys.marketdata.stats): encoded
        here, written by the writer thread once :meth:`open` has started it."""
        phases = self.phases_not_continuous()
        if self.stats_writer is not None:
            self.stats_writer.submit(stats_bytes(self.stats, phases=phases))
            return
        try:
            write_stats(self.config.instance_dir, self.stats, phases=phases)
        except OSError as exc:  # monitoring must not stop the feed
            log.warning("md: cannot write its stats file: %s", exc)

    def phases_not_continuous(self) -> dict[str, str]:
        """Each symbol the engine does not trade continuously (halted, in an auction
        call) by its phase's name, as the status channel last said: `tradsys status`
        shows them, so an operator sees a halt someone left on. A symbol whose phase is
        not known yet (no refresh image so far) is not listed."""
        phase = self.store.phase
        off = np.flatnonzero((phase != 0) & (phase != Phase.CONTINUOUS)).tolist()
        return {self.names[i]: Phase(int(phase[i])).name for i in off}

    def drain_once(self) -> bool:
        """Publish one batch from every shard; True if any had records. A batch leaves
        its ring only once published: a sidecar killed in between (kill -9) left its
        batch in the ring for the next one, which publishes it again (the same seqs: a
        subscriber drops what it has) -- taken first, it was lost, trade prints included,
        which no snapshot brings back."""
        busy = False
        buf = self._buf
        drained = self.stats.drained
        for feed in self.feeds:
            n = feed.ring.peek_batch(buf)
            if n:
                if n > SMALL_BATCH or not self._publish_small(n):
                    self.handle(buf[:n])
                feed.ring.release(n)
                drained[feed.shard_id] += n
                busy = True
        return busy

    def handle(self, batch: np.ndarray) -> None:
        """Publish a batch of md records and keep the books (refresh images included)."""
        sym = self.store.index(batch["symbol_id"])
        if (sym < 0).any():
            keep = sym >= 0
            self.unknown.dropped_many(batch["symbol_id"][~keep])
            # mask raw rows: masking the structured dtype leaves the copy's padding undefined
            rows = batch.view(np.uint8).reshape(len(batch), RECORD_SIZE)[keep]
            batch, sym = rows.reshape(-1).view(MD_DTYPE), sym[keep]
            if not len(batch):  # nothing left to publish (grouping nothing would fail)
                return
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
                if (
                    refreshed
                    and self.conflated is not None
                    and self.board.fill_from_books(refreshed, self.store)
                ):
                    self.board.send(self.conflated)
            else:
                self._publish(batch[a:b], sym[a:b])
        if self.snapshots.waiting:
            self.snapshots.answer_waiting(self.router)

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
        history = self.history
        if history is not None and records[TRADE_CHANNEL]:
            for k, a, b in zip(g.keys.tolist(), g.starts.tolist(), g.ends.tolist(), strict=True):
                if k % N_CHANNELS == TRADE_CHANNEL:
                    history.keep(k // N_CHANNELS, g.records[a:b])
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
        if self.conflated is not None and self.board.take_last_bbos(batch, sym):
            self.board.send(self.conflated)

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
                self.unknown.dropped(symbol_id)
                continue
            channel = channel_of[kind]
            if channel == STATUS_CHANNEL:
                store.apply_status(si, seq, price, ask)
            else:
                store.apply_scalar(si, channel, seq, side, price, qty, count)
            t = topics[si * N_CHANNELS + channel]
            sent = time.time_ns()  # before the send: it may hand the CPU to ZeroMQ's thread
            send(pub, t, zmq.SNDMORE)
            record = raw[off : off + RECORD_SIZE]
            send(pub, record)  # copied: the buffer is reused
            stats.records[channel] += 1
            stats.messages[channel] += 1
            stats.bytes += len(t) + RECORD_SIZE
            if channel == TRADE_CHANNEL and self.history is not None:
                self.history.keep_one(si, seq, record)  # after the send: off the latency
            if stamp:
                stats.lag_one(sent - stamp)
            if self.stages is not None:
                self.stages.note(channel, si, seq, seq, drained, sent)
            if self.conflated is not None and channel == BBO_CHANNEL:
                self.board.raw[si * RECORD_SIZE : (si + 1) * RECORD_SIZE] = raw[
                    off : off + RECORD_SIZE
                ]
                self.board.send(self.conflated)
        return True

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

    # ---- snapshots, heartbeats and refreshes ----------------------------------------------

    def _serve_requests(self) -> None:
        self.snapshots.serve(self.router)

    def _heartbeat(self) -> None:
        hb = heartbeat_payload(
            self.store, self.names, self.symbol_ids, self.feed_id, self.config.md.heartbeat_ms
        )
        self.pub.send_multipart([HEARTBEAT_TOPIC, hb])
        self.stats.heartbeats += 1
        if self.conflated is not None:  # so a board subscriber joining a quiet market gets one
            self.board.send(self.conflated)

    def _tick(self) -> None:
        """Once per heartbeat: time out waiting requests, and ask again for a refresh a
        worker served but whose image did not complete (cut by a crash)."""
        if self.snapshots.waiting:
            self.snapshots.answer_waiting(self.router)
        ask_again_for_cut_images(self.feeds, self.store, self.config)
