"""Trade replay end to end: shard workers and the md sidecar run by a Supervisor as
`tradsys run` runs them, subscribers using tradsys.client.marketdata over ipc://.

A trade print is an event, not a state: a subscriber that lost some (it fell behind its
high-water mark) cannot rebuild them from a book snapshot. The sidecar keeps each
symbol's recent prints in a memory-mapped file and answers replay requests on its
snapshot socket; the subscriber asks for what it lost by itself. These tests hold the
whole path to an oracle: a reference engine fed the same commands tells every print
the engine made, so "every print once, in order, byte for byte" is checked against what
the engine did, not only between two subscribers."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from tradsys.client.marketdata import MarketDataClient
from tradsys.client.md_feed import FeedError, Gap, MdEvent, Trades
from tradsys.marketdata.protocol import (
    REPLAY_MAX_PRINTS,
    Channel,
    SnapshotError,
    TradeReplay,
    TradeReplayRequest,
    reply_decoder,
)
from tradsys.matching import CEngine
from tradsys.matching.workload import mixed_stream
from tradsys.wire import COMMAND_DTYPE, MD_DTYPE, CommandKind, MdKind, OrderType, Side, TimeInForce

pytestmark = pytest.mark.multiprocess


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[MdRig]:
    yield from md_rig(md_config(instance, tmp_path))


# ---- helpers -------------------------------------------------------------------------------


def raw_copy(records: np.ndarray) -> np.ndarray:
    """A copy of MD_DTYPE records with all 64 bytes of each, pad bytes included."""
    return np.frombuffer(np.ascontiguousarray(records).tobytes(), MD_DTYPE)


def raw_rows(records: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``records[index]`` (a mask or positions) by whole 64-byte rows: indexing the
    structured array would leave the copy's pad bytes undefined."""
    rows = np.ascontiguousarray(records).view(np.uint8).reshape(len(records), MD_DTYPE.itemsize)
    return np.frombuffer(rows[index].tobytes(), MD_DTYPE)


def joined(parts: list[np.ndarray]) -> np.ndarray:
    """MD_DTYPE arrays end to end, their raw 64-byte records kept as they are
    (np.concatenate would pack the dtype, dropping its padding bytes from the compare)."""
    assert all(p.dtype == MD_DTYPE for p in parts), [p.dtype for p in parts]
    return np.frombuffer(b"".join(p.tobytes() for p in parts), MD_DTYPE)


class TradeLog:
    """What one subscriber was delivered, in delivery order: its trade prints per symbol
    (each Trades event's records as they came), and every other event."""

    def __init__(self) -> None:
        self.events: list[MdEvent] = []
        self.batches: dict[str, list[np.ndarray]] = {}
        self.last: dict[str, int] = {}
        self.accounted: dict[str, int] = {}  # the last seq delivered or reported lost

    def __call__(self, ev: MdEvent) -> None:
        self.events.append(ev)
        if isinstance(ev, Trades) and len(ev.records):
            # a byte copy: a numpy copy of a structured array leaves its pad bytes undefined
            self.batches.setdefault(ev.symbol, []).append(raw_copy(ev.records))
            self.last[ev.symbol] = int(ev.records["seq"][-1])
            self.accounted[ev.symbol] = max(self.accounted.get(ev.symbol, 0), self.last[ev.symbol])
        elif isinstance(ev, Gap) and ev.channel == Channel.TRADE:
            self.accounted[ev.symbol] = max(self.accounted.get(ev.symbol, 0), ev.got - 1)

    def prints(self, symbol: str) -> np.ndarray:
        return joined(self.batches.get(symbol, []))

    def seqs(self, symbol: str) -> list[int]:
        return [int(s) for s in self.prints(symbol)["seq"]]

    @property
    def replayed(self) -> list[Trades]:
        return [e for e in self.events if isinstance(e, Trades) and e.replayed]

    @property
    def trade_gaps(self) -> list[Gap]:
        return [e for e in self.events if isinstance(e, Gap) and e.channel == Channel.TRADE]


class Reference:
    """Engines of the test's own, fed what each shard is sent: the trade prints the
    workers made, per symbol, in seq order."""

    def __init__(self, rig: MdRig) -> None:
        self.config = rig.config
        self.engines: dict[int, CEngine] = {}
        for shard in self.config.shards:
            engine = self.engines[shard.id] = CEngine()
            for ins in self.config.symbols_of(shard.id):
                engine.add_instrument(ins)
        self.ids = {i.symbol: i.symbol_id for i in self.config.instruments}
        self.trades: dict[str, list[np.ndarray]] = {s: [] for s in self.ids}

    def process(self, shard: int, cmds: np.ndarray) -> None:
        md = self.engines[shard].process(np.ascontiguousarray(cmds, COMMAND_DTYPE)).md
        for symbol, sid in self.ids.items():
            mine = (md["kind"] == MdKind.TRADE) & (md["symbol_id"] == sid)
            self.trades[symbol].append(raw_rows(md, mine))

    def prints(self, symbol: str) -> np.ndarray:
        return joined(self.trades[symbol])

    def last_seq(self, symbol: str) -> int:
        return len(self.prints(symbol))  # seqs are 1, 2, ... per symbol

    def close(self) -> None:
        for e in self.engines.values():
            e.close()


def send(rig: MdRig, ref: Reference, shard: int, cmds: np.ndarray, pump: Any = None) -> None:
    ref.process(shard, cmds)
    rig.send(shard, cmds, pump=pump)


def streams(n: int, seed: int, rig: MdRig) -> dict[int, np.ndarray]:
    return {
        shard: mixed_stream(n, seed + shard, rig.config.symbols_of(shard))
        for shard in SHARD_SYMBOLS
    }


def crossing_stream(n: int, symbol_id: int, first_order_id: int) -> np.ndarray:
    """One resting sell at 1000, then ``n`` IOC buys of 1 to 3 lots crossing it: exactly
    ``n`` trade prints (on a symbol in continuous trading with an empty book), cheaply."""
    c = np.zeros(n + 1, COMMAND_DTYPE)
    c["kind"] = CommandKind.NEW_ORDER
    c["symbol_id"] = symbol_id
    c["order_type"] = OrderType.LIMIT
    c["price"] = 1000
    c["order_id"] = np.arange(first_order_id, first_order_id + n + 1)
    c["side"], c["tif"], c["account_id"] = Side.BUY, TimeInForce.IOC, 2
    c["quantity"][1:] = 1 + np.arange(n) % 3
    c["side"][0], c["tif"][0], c["account_id"][0] = Side.SELL, TimeInForce.GTC, 1
    c["quantity"][0] = c["quantity"][1:].sum()
    return c


def caught_up(client: MarketDataClient, log: TradeLog, ref: Reference) -> bool:
    """For every followed symbol, the subscriber has accounted for the engine's last
    print (delivered it, or reported it lost: the tests then tell which), and the
    sidecar's heartbeat names that print as its last one (none published beyond it)."""
    hb = client.core.last_heartbeat
    if hb is None:
        return False
    heard = {s.symbol: s.trade_seq for s in hb.symbols}
    return all(
        log.accounted.get(sym, 0) == ref.last_seq(sym) == heard.get(sym) for sym in client.books
    )


def wait_caught_up(client: MarketDataClient, log: TradeLog, ref: Reference, who: str) -> None:
    if not client.run_until(lambda: caught_up(client, log, ref), DEADLINE_S):
        hb = client.core.last_heartbeat
        raise AssertionError(
            f"{who} never caught up: delivered up to {log.last} (with the gaps: "
            f"{log.accounted}), engine made "
            f"{ {s: ref.last_seq(s) for s in client.books} }, heartbeat "
            f"{hb and {s.symbol: s.trade_seq for s in hb.symbols}}"
        )


def dealer(ctx: zmq.Context[Any], endpoint: str) -> zmq.Socket[Any]:
    sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(DEADLINE_S * 1000))
    sock.connect(endpoint)
    return sock


def ask(sock: zmq.Socket[Any], request: Any) -> TradeReplay | SnapshotError:
    """Send one request (a struct or a plain map) and read its reply."""
    sock.send(msgspec.msgpack.encode(request))
    reply = reply_decoder.decode(sock.recv())
    assert isinstance(reply, TradeReplay | SnapshotError), reply
    return reply


def replayed_range(sock: zmq.Socket[Any], symbol: str, first: int, last: int) -> np.ndarray:
    """The prints first..last the sidecar keeps, asked reply by reply as a client must
    (each at most REPLAY_MAX_PRINTS prints, ``last`` clamped by the sidecar)."""
    parts, at, rid = [], first, 100
    while at <= last:
        rid += 1
        reply = ask(sock, TradeReplayRequest(symbol, at, last, id=rid))
        assert isinstance(reply, TradeReplay), reply
        assert (reply.id, reply.symbol, reply.first) == (rid, symbol, at)
        assert reply.last == min(last, reply.trade_seq, at + REPLAY_MAX_PRINTS - 1)
        parts.append(np.frombuffer(reply.records, MD_DTYPE))
        if reply.last < at:
            break
        at = reply.last + 1
    return joined(parts)


def lossy_run(rig: MdRig, ref: Reference, seed: int) -> TradeLog:
    """What a subscriber that reads nothing while 8 000 commands a shard run (its
    high-water mark 10) was delivered, once it has caught up with the engine."""
    log = TradeLog()
    lossy = rig.client(rcvhwm=10, on_event=log)
    rig.wait_converged(lossy)
    for shard, cmds in streams(8_000, seed, rig).items():
        send(rig, ref, shard, cmds)
    wait_caught_up(lossy, log, ref, "the lossy subscriber")
    return log


def assert_same_records(got: np.ndarray, want: np.ndarray, who: str) -> None:
    """Byte for byte, all 64 of each record: for what the sidecar sends, which are the
    engine's records as they are, pad bytes (zero) included."""
    _assert_same(got, want, who, lambda a: a.tobytes())


def assert_same_prints(got: np.ndarray, want: np.ndarray, who: str) -> None:
    """Byte for byte, all 64 of each record, for what a subscriber was delivered too:
    FeedCore once handed out masked copies, whose pad bytes (2-3, 52-55) numpy leaves
    undefined -- heap garbage where the wire had zeros; it now keeps whole rows."""
    _assert_same(got, want, who, lambda a: a.tobytes())


def _assert_same(got: np.ndarray, want: np.ndarray, who: str, key: Any) -> None:
    """With a readable message on the first difference."""
    assert got.dtype == want.dtype == MD_DTYPE, (got.dtype, want.dtype)
    if len(got) == len(want) and key(got) == key(want):
        return
    got_seqs, want_seqs = got["seq"].tolist(), want["seq"].tolist()
    at = next(
        (k for k in range(min(len(got), len(want))) if key(got[k : k + 1]) != key(want[k : k + 1])),
        min(len(got), len(want)),
    )
    raise AssertionError(
        f"{who}: {len(got)} prints (seqs {got_seqs[:3]}..{got_seqs[-3:]}), "
        f"expected {len(want)} (seqs {want_seqs[:3]}..{want_seqs[-3:]}); first difference "
        f"at index {at}: {got[at : at + 1]} vs {want[at : at + 1]}"
    )


def assert_delivered_or_lost_once(log: TradeLog, ref: Reference, symbol: str) -> list[int]:
    """Every seq the engine made for ``symbol`` was either delivered (in order, the
    engine's bytes) or reported lost in a trade Gap -- exactly one of the two, once.
    Returns the seqs reported lost."""
    delivered = log.seqs(symbol)
    lost = [s for g in log.trade_gaps if g.symbol == symbol for s in range(g.expected, g.got)]
    assert delivered == sorted(set(delivered)), f"{symbol}: out of order or twice"
    assert sorted(delivered + lost) == list(range(1, ref.last_seq(symbol) + 1)), (
        f"{symbol}: delivered and reported lost are not every seq, once"
    )
    want = raw_rows(ref.prints(symbol), np.asarray(delivered, np.int64) - 1)
    assert_same_prints(log.prints(symbol), want, f"{symbol}: the engine's")
    return lost


# ---- tests ---------------------------------------------------------------------------------


def test_a_lossy_subscriber_gets_every_trade_print_back_by_replay(
    instance: str, tmp_path: Path
) -> None:
    """A subscriber that read nothing while ~30k commands ran overflowed its high-water
    mark and lost prints on the feed; replay must give it back every one: once, in seq
    order, byte for byte what the engine made and what a subscriber polled during the
    stream was delivered (with a publisher queue this short that one may lose a few too,
    and must get them back as well) -- and no trade Gap, which would mean a print lost
    for good. At least one replayed batch proves the loss (and the replay) happened."""
    config = md_config(instance, tmp_path, sndhwm=20, max_frame_records=4)
    with running(config) as rig:
        ref = Reference(rig)
        try:
            healthy_log, lossy_log = TradeLog(), TradeLog()
            healthy = rig.client(on_event=healthy_log)
            lossy = rig.client(rcvhwm=10, on_event=lossy_log)
            rig.wait_converged(healthy)
            rig.wait_converged(lossy)
            # the lossy subscriber reads nothing while the stream runs
            for shard, cmds in streams(15_000, 81, rig).items():
                send(rig, ref, shard, cmds, pump=lambda: healthy.poll(0))
            wait_caught_up(healthy, healthy_log, ref, "the healthy subscriber")
            wait_caught_up(lossy, lossy_log, ref, "the lossy subscriber")

            assert not lossy_log.trade_gaps, f"prints lost for good: {lossy_log.trade_gaps}"
            assert lossy_log.replayed, "the lossy subscriber lost no print: nothing proven"
            assert not healthy_log.trade_gaps, f"prints lost for good: {healthy_log.trade_gaps}"
            assert not [e for e in lossy_log.events if isinstance(e, FeedError)]
            for symbol in rig.all_symbols():
                want = ref.prints(symbol)
                assert len(want) > 100, f"{symbol}: too few prints to prove anything"
                for who, log in (("healthy", healthy_log), ("lossy", lossy_log)):
                    assert log.seqs(symbol) == list(range(1, len(want) + 1)), (
                        f"{who} {symbol}: not every seq exactly once, ascending"
                    )
                assert_same_prints(lossy_log.prints(symbol), healthy_log.prints(symbol), symbol)
                assert_same_prints(lossy_log.prints(symbol), want, f"{symbol}: the engine's")
        finally:
            ref.close()


def test_a_sidecar_killed_and_restarted_still_replays_its_predecessors_prints(
    rig: MdRig, ctx: zmq.Context[Any]
) -> None:
    """The prints live in a memory-mapped file, not in the sidecar's memory: after a
    kill -9 and a restart, the new sidecar answers for every print its predecessor
    published, byte for byte as a subscriber saw them -- more than REPLAY_MAX_PRINTS of
    them, so the replies are capped and asked again from ``last + 1``; those of a busy
    market and of a quiet one (the sidecar keeps them on two paths). ACME trades nothing
    while it is down, so the new sidecar knows ACME's last print only from its worker's
    refresh image; BRKR does trade meanwhile. Afterwards a subscriber following the new
    sidecar has every print of both, once, in order, and the new sidecar answers for
    the whole of both ranges."""
    ref = Reference(rig)
    sock = None
    try:
        log = TradeLog()
        client = rig.client(["ACME", "BRKR"], on_event=log, heartbeat_timeout_s=0.5)
        rig.wait_converged(client)
        acme, brkr = ref.ids["ACME"], ref.ids["BRKR"]
        n_busy = REPLAY_MAX_PRINTS + 300
        # order ids only grow on a shard: each stream starts past the one before
        send(rig, ref, 0, crossing_stream(n_busy, acme, 10_000_000), lambda: client.poll(0))
        send(rig, ref, 0, crossing_stream(50, brkr, 20_000_000), lambda: client.poll(0))
        # and a quiet market: one print at a time (the sidecar's scalar path keeps those)
        quiet = crossing_stream(10, acme, 30_000_000)
        for k in range(len(quiet)):
            send(rig, ref, 0, quiet[k : k + 1])
            assert client.run_until(
                lambda: log.accounted.get("ACME") == ref.last_seq("ACME"), DEADLINE_S
            )
        wait_caught_up(client, log, ref, "the subscriber")
        assert not log.trade_gaps, log.trade_gaps
        seen = log.prints("ACME")
        last_seen = int(seen["seq"][-1])
        assert last_seen == len(seen) == n_busy + 10
        assert_same_prints(seen, ref.prints("ACME"), "seen before the kill")

        os.kill(rig.sidecar_pid, signal.SIGKILL)
        assert client.run_until(lambda: not client.core.alive, DEADLINE_S), "death unnoticed"
        # BRKR trades while the sidecar is down: the md ring holds those records
        send(rig, ref, 0, crossing_stream(200, brkr, 40_000_000))
        rig.restart_sidecar()

        sock = dealer(ctx, rig.snapshot)
        replayed = replayed_range(sock, "ACME", 1, last_seen)
        assert_same_records(replayed, ref.prints("ACME")[:last_seen], "ACME after the restart")
        assert_same_prints(replayed, seen, "ACME replayed by the new sidecar vs seen")
        # past the end: clamped to the last print published, nothing invented
        reply = ask(sock, TradeReplayRequest("ACME", last_seen - 1, 10**9, id=7))
        assert isinstance(reply, TradeReplay)
        assert reply.last == reply.trade_seq == last_seen
        tail = np.frombuffer(reply.records, MD_DTYPE)
        assert tail["seq"].tolist() == [last_seen - 1, last_seen]

        # trading goes on: the subscriber follows the new sidecar
        send(rig, ref, 0, crossing_stream(100, acme, 50_000_000), lambda: client.poll(0))
        wait_caught_up(client, log, ref, "the subscriber after the restart")
        assert not log.trade_gaps, log.trade_gaps
        for symbol, made in (("ACME", n_busy + 10 + 100), ("BRKR", 50 + 200)):
            everything = ref.prints(symbol)
            assert len(everything) == made
            assert log.seqs(symbol) == list(range(1, made + 1)), f"{symbol}: once, in order"
            assert_same_prints(log.prints(symbol), everything, f"{symbol} delivered")
            assert_same_records(replayed_range(sock, symbol, 1, made), everything, symbol)
    finally:
        if sock is not None:
            sock.close()
        ref.close()


def test_without_trade_history_replay_is_refused_and_losses_are_reported_as_gaps(
    instance: str, tmp_path: Path, ctx: zmq.Context[Any]
) -> None:
    """``[md] trade_history = 0`` keeps no prints: a replay request is answered
    ``no_trade_history``, and a subscriber that lost prints gets none back -- each
    lost seq is reported in exactly one trade-channel Gap instead (the delivered prints
    and the gaps together are every seq the engine made, none twice), and no print is
    ever marked replayed."""
    config = md_config(instance, tmp_path, sndhwm=20, max_frame_records=4, trade_history=0)
    with running(config) as rig:
        ref = Reference(rig)
        sock = dealer(ctx, rig.snapshot)
        try:
            lossy_log = lossy_run(rig, ref, 101)

            reply = ask(sock, TradeReplayRequest("ACME", 1, 5, id=3))
            assert isinstance(reply, SnapshotError), reply
            assert (reply.reason, reply.id) == ("no_trade_history", 3)

            assert not lossy_log.replayed, "replayed prints from a sidecar that keeps none"
            assert lossy_log.trade_gaps, "the lossy subscriber lost no print: nothing proven"
            for symbol in rig.all_symbols():
                assert_delivered_or_lost_once(lossy_log, ref, symbol)
        finally:
            sock.close()
            ref.close()


def test_a_short_trade_history_replays_what_it_keeps_and_reports_the_rest_lost(
    instance: str, tmp_path: Path, ctx: zmq.Context[Any]
) -> None:
    """With ``[md] trade_history = 64`` the sidecar keeps each symbol's last 64 prints
    only (slot ``seq % 64``, older ones overwritten). Asked directly, it answers with
    exactly the kept prints of the range asked, whether the range spans the whole
    history or less -- never an overwritten slot passed off as another seq's print. A
    subscriber that lost far more than that gets back those still kept (marked
    replayed, the engine's bytes) and every older lost seq as a trade Gap: each seq
    delivered or reported lost, once, in order."""
    depth = 64
    config = md_config(instance, tmp_path, sndhwm=20, max_frame_records=4, trade_history=depth)
    with running(config) as rig:
        ref = Reference(rig)
        sock = dealer(ctx, rig.snapshot)
        try:
            lossy_log = lossy_run(rig, ref, 121)

            assert lossy_log.replayed, "nothing replayed: the kept prints were not asked for"
            assert lossy_log.trade_gaps, "the lossy subscriber lost nothing beyond the history"
            for symbol in rig.all_symbols():
                # a replayed print is the engine's print of its seq: checked byte for byte
                lost = assert_delivered_or_lost_once(lossy_log, ref, symbol)
                # the last `depth` prints are never overwritten: none of them is lost
                n = ref.last_seq(symbol)
                assert max(lost, default=0) <= n - depth, symbol
                # asked directly: exactly the kept prints of each range, whichever way
                # the sidecar looks them up
                assert n > 2 * depth, f"{symbol}: too few prints to wrap the history"
                kept_from = n - depth + 1
                for first, last in (
                    (1, n),  # >= depth seqs: every slot is looked at
                    (n - 70, n - 5),  # so too, cut at both ends
                    (n - 100, n - 40),  # < depth seqs: those slots only
                    (1, 10),  # all overwritten long ago
                    (n - 10, n),
                ):
                    reply = ask(sock, TradeReplayRequest(symbol, first, last, id=first))
                    assert isinstance(reply, TradeReplay), reply
                    assert (reply.first, reply.last, reply.trade_seq) == (first, last, n)
                    want = ref.prints(symbol)[max(first, kept_from) - 1 : last]
                    got = np.frombuffer(reply.records, MD_DTYPE)
                    assert_same_records(got, want, f"{symbol} {first}..{last}")
        finally:
            sock.close()
            ref.close()


def test_malformed_and_unknown_replay_requests_are_refused_and_the_sidecar_keeps_serving(
    rig: MdRig, ctx: zmq.Context[Any]
) -> None:
    """A replay request naming only ``first``, one with ``first`` > ``last`` or
    ``first`` = 0 is ``malformed_request``, and one for a symbol the sidecar does not
    publish is ``unknown_symbol`` -- each with the request's id, so it pairs -- and a
    valid request afterwards is still answered with the engine's prints."""
    ref = Reference(rig)
    sock = dealer(ctx, rig.snapshot)
    try:
        log = TradeLog()
        client = rig.client(["BRKR"], on_event=log)
        rig.wait_converged(client)
        send(rig, ref, 0, mixed_stream(3000, 111, rig.config.symbols_of(0)), lambda: client.poll(0))
        wait_caught_up(client, log, ref, "the subscriber")  # every print published
        n = ref.last_seq("BRKR")
        assert n > 10

        bad: list[tuple[dict[str, Any], str]] = [
            ({"symbol": "BRKR", "first": 1, "id": 21}, "malformed_request"),
            ({"symbol": "BRKR", "last": 5, "id": 22}, "malformed_request"),
            ({"symbol": "BRKR", "first": 6, "last": 5, "id": 23}, "malformed_request"),
            ({"symbol": "BRKR", "first": 0, "last": 5, "id": 24}, "malformed_request"),
            ({"symbol": "BRKR", "first": -3, "last": 5, "id": 25}, "malformed_request"),
            ({"symbol": "BRKR", "first": "1", "last": 5, "id": 26}, "malformed_request"),
            ({"symbol": "NOPE", "first": 1, "last": 5, "id": 27}, "unknown_symbol"),
        ]
        for request, reason in bad:
            reply = ask(sock, request)
            assert isinstance(reply, SnapshotError), (request, reply)
            assert (reply.reason, reply.id) == (reason, request["id"]), (request, reply)
        # and it keeps serving: the whole range, the engine's prints
        got = replayed_range(sock, "BRKR", 1, n)
        assert got["seq"].tolist() == list(range(1, n + 1))
        assert_same_records(got, ref.prints("BRKR"), "replayed after the refusals")
        assert_same_prints(got, log.prints("BRKR"), "replayed vs delivered on the feed")
    finally:
        sock.close()
        ref.close()
