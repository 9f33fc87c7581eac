"""The market-data feed end to end: shard workers and the md sidecar run by a Supervisor
as `tradsys run` runs them, subscribers using tradsys.client.marketdata over ipc:// endpoints. After
random order streams every subscriber's book equals the engine's — also a late joiner,
one made to drop messages, and one whose sidecar was killed and restarted."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zmq

from tests.marketdata.md_rig import (
    DEADLINE_S,
    SHARD_SYMBOLS,
    MdRig,
    md_config,
    md_rig,
    running,
)
from tradsys.client.md_feed import FeedState, Gap, MdEvent, Synced, Trades
from tradsys.cores.control import WorkerState
from tradsys.cores.sidecar import read_announcement
from tradsys.marketdata.protocol import (
    BBO_BOARD_TOPIC,
    HEARTBEAT_TOPIC,
    BookSnapshot,
    SnapshotError,
    SnapshotRequest,
    heartbeat_decoder,
    reply_decoder,
    topic,
)
from tradsys.matching.workload import mixed_stream
from tradsys.wire import MD_DTYPE, MdKind

pytestmark = pytest.mark.multiprocess


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[MdRig]:
    yield from md_rig(md_config(instance, tmp_path))


def streams(n: int, seed: int, rig: MdRig) -> dict[int, np.ndarray]:
    return {
        shard: mixed_stream(n, seed + shard, rig.config.symbols_of(shard))
        for shard in SHARD_SYMBOLS
    }


def test_every_subscriber_rebuilds_the_engines_books(rig: MdRig) -> None:
    events: list[MdEvent] = []
    early = rig.client(on_event=events.append)
    prefix_only = rig.client(["ACME"])  # must never see ACMEX: topics cannot collide
    seen_symbols: set[str] = set()
    prefix_only.on_event = lambda ev: seen_symbols.add(getattr(ev, "symbol", ""))
    rig.wait_converged(early)

    first, second = streams(6000, 11, rig), streams(6000, 12, rig)
    for shard, cmds in first.items():
        rig.send(shard, cmds, pump=lambda: early.poll(0))
    late = rig.client(publish=rig.publish_tcp)  # joins late, over tcp
    for shard, cmds in second.items():
        rig.send(shard, cmds, pump=lambda: (early.poll(0), late.poll(0)))
    for client in (early, late, prefix_only):
        rig.wait_converged(client)
    assert not [e for e in events if isinstance(e, Gap)], "no loss on an unloaded feed"
    # every trade print arrived once, in order
    trades = np.concatenate([e.records for e in events if isinstance(e, Trades)])
    for symbol_id in np.unique(trades["symbol_id"]):
        seqs = trades["seq"][trades["symbol_id"] == symbol_id]
        assert seqs.tolist() == list(range(1, len(seqs) + 1))
    assert len(trades) > 100
    assert seen_symbols <= {"ACME", ""}
    assert late.books["ACME"].l2_seq == early.books["ACME"].l2_seq > 0


def test_a_stalled_and_a_lossy_subscriber_do_not_slow_the_engine(
    instance: str, tmp_path: Path
) -> None:
    config = md_config(instance, tmp_path, sndhwm=20, max_frame_records=4)
    with running(config) as rig:
        healthy = rig.client()
        lossy = rig.client(rcvhwm=10)
        stalled = zmq.Context.instance().socket(zmq.SUB)
        stalled.setsockopt(zmq.RCVHWM, 1)
        stalled.setsockopt(zmq.LINGER, 0)
        stalled.setsockopt(zmq.SUBSCRIBE, b"")
        stalled.connect(rig.publish)
        try:
            rig.wait_converged(healthy)
            rig.wait_converged(lossy)
            started = time.monotonic()
            # the lossy subscriber reads nothing while the stream runs; the stalled never
            for shard, cmds in streams(15_000, 21, rig).items():
                rig.send(shard, cmds, pump=lambda: healthy.poll(0))
            took = time.monotonic() - started
            assert took < 20, f"30k commands took {took:.1f} s with slow subscribers"
            rig.wait_converged(healthy)
            gaps: list[MdEvent] = []
            lossy.on_event = gaps.append
            rig.wait_converged(lossy)
            assert any(isinstance(e, Gap) for e in gaps), "the lossy subscriber lost nothing?"
            assert any(isinstance(e, Synced) for e in gaps)
            assert sum(b.resyncs for b in lossy.books.values()) >= 1
        finally:
            stalled.close()


def test_symbols_subscribed_and_unsubscribed_on_a_running_client(rig: MdRig) -> None:
    """Subscriptions change while the client runs: a symbol added mid-stream gets its
    book from a snapshot and then follows the feed to the engine's book; one removed
    stops: its book goes, and its messages still in flight are dropped (before, a topic
    added by hand made the client raise KeyError on its first message)."""
    events: list[MdEvent] = []
    client = rig.client(["ACME"], on_event=events.append)
    rig.wait_converged(client)
    first, second = streams(3000, 21, rig), streams(3000, 22, rig)
    for shard, cmds in first.items():
        rig.send(shard, cmds, pump=lambda: client.poll(0))
    client.subscribe(["ACMEX", "BRKR"])
    client.unsubscribe(["ACME"])
    cut = len(events)
    assert sorted(client.books) == ["ACMEX", "BRKR"]
    for shard, cmds in second.items():
        rig.send(shard, cmds, pump=lambda: client.poll(0))
    rig.wait_converged(client)  # every followed book is the engine's
    assert client.books["ACMEX"].l2_seq > 0 and client.books["BRKR"].l2_seq > 0
    assert not [e for e in events if isinstance(e, Gap)]
    assert not [e for e in events[cut:] if getattr(e, "symbol", "") == "ACME"]
    assert [e for e in events[:cut] if getattr(e, "symbol", "") == "ACME"], "it was followed"


def test_snapshot_requests_malformed_unknown_and_valid(rig: MdRig) -> None:
    ctx = zmq.Context.instance()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.RCVTIMEO, int(DEADLINE_S * 1000))
    dealer.connect(rig.snapshot)
    try:
        rig.send(0, mixed_stream(2000, 5, rig.config.symbols_of(0)))
        for bad in (b"\xc1garbage", msgspec.msgpack.encode({"symbol": 5}), b""):
            dealer.send(bad)
            reply = reply_decoder.decode(dealer.recv())
            assert isinstance(reply, SnapshotError) and reply.reason == "malformed_request"
            assert reply.id == 0  # no map with an integer id to echo
        # a malformed map's integer id still comes back, to pair the error (audit Y)
        for bad_map in ({"id": 4}, {"symbol": 1, "id": 5}, {"symbol": "ACME", "id": 6, "x": 1}):
            dealer.send(msgspec.msgpack.encode(bad_map))
            reply = reply_decoder.decode(dealer.recv())
            assert isinstance(reply, SnapshotError) and reply.reason == "malformed_request"
            assert reply.id == bad_map["id"]
        dealer.send(msgspec.msgpack.encode(SnapshotRequest("NOPE", id=7)))
        reply = reply_decoder.decode(dealer.recv())
        assert isinstance(reply, SnapshotError)
        assert (reply.reason, reply.id) == ("unknown_symbol", 7) and "NOPE" in reply.message
        # a REQ client's envelope (an empty delimiter) comes back intact
        req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.setsockopt(zmq.RCVTIMEO, int(DEADLINE_S * 1000))
        req.connect(rig.snapshot)
        try:
            req.send(msgspec.msgpack.encode(SnapshotRequest("BRKR", id=9)))
            by_req = reply_decoder.decode(req.recv())
            assert isinstance(by_req, BookSnapshot) and by_req.symbol == "BRKR"
        finally:
            req.close()
        # and it keeps serving
        dealer.send(msgspec.msgpack.encode(SnapshotRequest("ACME", id=8)))
        reply = reply_decoder.decode(dealer.recv())
        assert isinstance(reply, BookSnapshot) and reply.id == 8
        book = rig.engine_book("ACME")
        assert (reply.bids, reply.asks) == (book["bids"], book["asks"])
        assert reply.l2_seq > 0
    finally:
        dealer.close()


def test_a_restarted_sidecar_continues_the_sequence_numbers(rig: MdRig) -> None:
    events: list[MdEvent] = []
    client = rig.client(on_event=events.append, heartbeat_timeout_s=0.5)
    rig.wait_converged(client)
    rig.send(0, mixed_stream(3000, 31, rig.config.symbols_of(0)), pump=lambda: client.poll(0))
    rig.wait_converged(client)
    seq_before = client.books["ACME"].l2_seq
    assert client.run_until(lambda: client.core.last_heartbeat is not None, DEADLINE_S)
    feed_before = client.core.last_heartbeat
    assert feed_before is not None
    os.kill(rig.sidecar_pid, signal.SIGKILL)
    assert client.run_until(lambda: not client.core.alive, DEADLINE_S), "death unnoticed"
    # orders keep flowing while the sidecar is down: the md ring holds their records
    rig.send(0, mixed_stream(3000, 32, rig.config.symbols_of(0))[2500:])
    rig.restart_sidecar()  # it learns the books from the workers (refresh), then publishes
    assert client.run_until(lambda: client.core.alive, DEADLINE_S)
    rig.wait_converged(client)
    # alive again may come from its first data message, before its first heartbeat
    assert client.run_until(
        lambda: (
            (hb := client.core.last_heartbeat) is not None and hb.feed_id != feed_before.feed_id
        ),
        DEADLINE_S,
    ), "no heartbeat of a new feed"
    assert client.books["ACME"].l2_seq > seq_before, "the engine's seqs continue"
    assert FeedState(False) in events and FeedState(True) in events
    # a new subscriber's snapshot comes from the refreshed books
    fresh = rig.client()
    rig.wait_converged(fresh)


def test_sigterm_stops_the_sidecar_cleanly(rig: MdRig) -> None:
    proc = rig.sidecar.process
    assert proc is not None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(DEADLINE_S) == 0
    assert read_announcement(rig.config, "md") is None, "the announcement is withdrawn"


def test_heartbeats_and_the_conflated_bbo_board(instance: str, tmp_path: Path) -> None:
    config = md_config(instance, tmp_path, conflated_bbo=f"ipc://{tmp_path}/md-bbo")
    with running(config) as rig:
        ctx = zmq.Context.instance()
        board = ctx.socket(zmq.SUB)
        board.setsockopt(zmq.CONFLATE, 1)
        board.setsockopt(zmq.SUBSCRIBE, b"")
        board.setsockopt(zmq.LINGER, 0)
        board.setsockopt(zmq.RCVTIMEO, int(DEADLINE_S * 1000))
        board.connect(rig.announcement["conflated_bbo"])
        hb = ctx.socket(zmq.SUB)
        hb.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC)
        hb.setsockopt(zmq.LINGER, 0)
        hb.setsockopt(zmq.RCVTIMEO, int(DEADLINE_S * 1000))
        hb.connect(rig.publish)
        try:
            beat = heartbeat_decoder.decode(hb.recv_multipart()[1])  # a silent market
            assert {s.symbol for s in beat.symbols} == set(rig.all_symbols())
            client = rig.client()  # waits out the subscription's propagation
            rig.wait_converged(client)
            for shard, cmds in streams(3000, 41, rig).items():
                rig.send(shard, cmds)
            rig.wait_converged(client)
            deadline = time.monotonic() + DEADLINE_S
            while True:  # only the newest board is kept: read until it is the final one
                msg = board.recv()
                assert msg.startswith(BBO_BOARD_TOPIC)
                rows = np.frombuffer(msg[len(BBO_BOARD_TOPIC) :], MD_DTYPE)
                want = {
                    sym: client.books[sym].best(side)
                    for sym in rig.all_symbols()
                    for side in (1, 2)
                }
                got = {}
                for r, sym in zip(rows, ["ACME", "ACMEX", "BRKR"], strict=True):
                    got[sym] = (r["kind"], r["price"], r["ask_price"])
                if all(
                    got[s][0] == MdKind.BBO
                    and (client.books[s].best(1) or (0, 0))[0] == got[s][1]
                    and (client.books[s].best(2) or (0, 0))[0] == got[s][2]
                    for s in got
                ):
                    break
                assert time.monotonic() < deadline, f"board {got} never matched {want}"
        finally:
            board.close()
            hb.close()


def test_topics_cannot_prefix_collide() -> None:
    assert not topic("l2", "ACMEX").startswith(topic("l2", "ACME"))
    assert topic("trade", "ACME") == b"trade:ACME\0"


def test_the_async_client_yields_book_updates_and_trades(rig: MdRig) -> None:
    import asyncio

    from tradsys.client.marketdata import AsyncMarketDataClient

    async def watch() -> tuple[bool, int]:
        trades = 0
        async with AsyncMarketDataClient(rig.publish, rig.snapshot, ["ACME"]) as client:
            sent = False
            deadline = time.monotonic() + DEADLINE_S
            async for ev in client:
                if isinstance(ev, Trades):
                    trades += len(ev.records)
                if isinstance(ev, Synced) and not sent:
                    # the book is live: trade, and wait for the stream to show it all
                    rig.send(0, mixed_stream(2000, 51, rig.config.symbols_of(0)))
                    sent = True
                if sent and rig.converged_book(client.books["ACME"]):
                    return True, trades
                if time.monotonic() > deadline:
                    return False, trades

        return False, trades

    converged, trades = asyncio.run(asyncio.wait_for(watch(), DEADLINE_S))
    assert converged, "the async client's book never matched the engine's"
    assert trades > 0


def test_a_worker_killed_mid_stream_costs_subscribers_nothing(rig: MdRig) -> None:
    events: list[MdEvent] = []
    client = rig.client(on_event=events.append)
    rig.wait_converged(client)
    cmds = mixed_stream(4000, 61, rig.config.symbols_of(0))
    rig.send(0, cmds[:2000], pump=lambda: client.poll(0))
    assert rig.supervisor is not None
    sp = next(sp for sp in rig.supervisor.shards if sp.spec.shard_id == 0)
    assert sp.process is not None
    os.kill(sp.process.pid, signal.SIGKILL)
    deadline = time.monotonic() + DEADLINE_S

    def restarted() -> bool:
        return sp.control.incarnations == 2 and sp.control.state == WorkerState.RUNNING

    rig.supervisor.watch(until=lambda: restarted() or time.monotonic() > deadline, tick_s=0.01)
    assert restarted(), "the supervisor did not restart the worker"
    rig.send(0, cmds[2000:], pump=lambda: client.poll(0))
    rig.wait_converged(client)
    # the restarted worker re-emits exactly what was never pushed: no gap, no resync
    assert not [e for e in events if isinstance(e, Gap)]
    assert client.books["ACME"].resyncs == 0


def test_a_clean_stop_publishes_what_the_workers_emitted_while_draining(rig: MdRig) -> None:
    events: list[MdEvent] = []
    client = rig.client(["ACME"], on_event=events.append)
    rig.wait_converged(client)
    cmds = mixed_stream(3000, 71, rig.config.symbols_of(0))
    rig.engines[0].process(cmds)  # what the worker will have matched once it drained
    assert rig.cmd[0].push_all(cmds, timeout=DEADLINE_S) == len(cmds)
    assert rig.supervisor is not None
    rig.supervisor.stop()  # drains the workers, then stops the md sidecar
    rig.supervisor = None
    # the sidecar is gone; the subscriber still receives what it published before exiting
    done = client.run_until(
        lambda: client.books["ACME"].as_dict() == rig.engine_book("ACME"), DEADLINE_S
    )
    assert done, "the md published before the stop does not rebuild the engine's book"
    assert not [e for e in events if isinstance(e, Gap)]
