"""The md sidecar's trade history and the replay requests it answers from it, without a
running engine: the history file itself, the request's wire form, and the sidecar's two
publishing paths (batch and quiet) each keeping what they publish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.marketdata.md_rig import md_config
from tradsys.cores.md import MdSidecar
from tradsys.marketdata.protocol import (
    REPLAY_MAX_PRINTS,
    SnapshotError,
    SnapshotRequest,
    TradeReplay,
    TradeReplayRequest,
    decode_request,
    records,
    reply_decoder,
)
from tradsys.marketdata.trade_history import TradeHistory, history_path
from tradsys.wire import MD_DTYPE, MdKind


def prints(symbol_id: int, seqs: range | list[int]) -> np.ndarray:
    """Trade prints with recognisable prices (the seq times ten)."""
    out = np.zeros(len(seqs), MD_DTYPE)
    out["kind"], out["symbol_id"], out["seq"] = MdKind.TRADE, symbol_id, list(seqs)
    out["price"], out["quantity"], out["time_ns"] = out["seq"] * 10, 3, 1_000
    return out


def seqs_of(recs: np.ndarray) -> list[int]:
    return [int(s) for s in recs["seq"]]


@pytest.fixture
def history(tmp_path: Path) -> Any:
    h = TradeHistory([7, 8], [tmp_path / "shard-0", tmp_path / "shard-1"], depth=16)
    yield h
    h.close()


def test_the_history_keeps_the_last_depth_prints_of_each_symbol(history: TradeHistory) -> None:
    history.keep(0, prints(7, range(1, 41)))  # 40 prints through 16 slots
    history.keep_one(1, 1, memoryview(prints(8, [1]).tobytes()))
    assert seqs_of(history.prints(0, 1, 40)) == list(range(25, 41))
    kept = history.prints(0, 30, 33)
    assert seqs_of(kept) == [30, 31, 32, 33] and kept["price"].tolist() == [300, 310, 320, 330]
    assert seqs_of(history.prints(1, 1, 5)) == [1]  # 2..5 never written: not kept
    assert seqs_of(history.prints(0, 41, 60)) == []  # not printed yet


def test_a_slot_answers_only_for_the_print_it_holds(history: TradeHistory) -> None:
    """A slot is shared by every seq equal modulo the depth: an old print must not
    stand in for a newer seq, nor another symbol's for this one."""
    history.keep(0, prints(7, [3]))
    assert seqs_of(history.prints(0, 19, 19)) == []  # slot 3, but it holds seq 3
    history.keep(0, prints(8, [4]))  # a stray record of another symbol in the file
    assert seqs_of(history.prints(0, 3, 4)) == [3]


def test_the_history_survives_the_process_and_not_a_change_of_depth(tmp_path: Path) -> None:
    dirs = [tmp_path / "shard-0"]
    first = TradeHistory([7], dirs, depth=16)
    first.keep(0, prints(7, range(1, 11)))
    first.close()
    again = TradeHistory([7], dirs, depth=16)  # a restarted sidecar
    assert seqs_of(again.prints(0, 1, 10)) == list(range(1, 11))
    again.close()
    assert history_path(dirs[0], 7).stat().st_size == 16 * 64
    other = TradeHistory([7], dirs, depth=32)
    assert seqs_of(other.prints(0, 1, 10)) == []  # started afresh: slots would be misread
    other.close()


def test_a_disk_that_cannot_keep_the_file_costs_the_history_not_the_feed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "shard-0"
    blocker.write_text("a file where the shard's directory should be")
    h = TradeHistory([7, 8], [blocker, tmp_path / "shard-1"], depth=16)
    try:
        h.keep(0, prints(7, [1, 2]))  # nothing raised: the sidecar publishes on
        h.keep_one(0, 3, memoryview(prints(7, [3]).tobytes()))
        h.keep(1, prints(8, [1]))
        assert seqs_of(h.prints(0, 1, 3)) == [] and seqs_of(h.prints(1, 1, 1)) == [1]
        assert h.unkept == {0}
        said = [r.getMessage() for r in caplog.records if "no trade history" in r.getMessage()]
        assert len(said) == 1 and "symbol id 7" in said[0]  # once, not at every print
    finally:
        h.close()


@settings(max_examples=60, deadline=None)
@given(
    depth=st.integers(1, 40),
    runs=st.lists(st.integers(1, 50), min_size=1, max_size=8),
    scalar=st.lists(st.booleans(), min_size=8, max_size=8),
    window=st.tuples(st.integers(1, 300), st.integers(0, 300)),
)
def test_the_history_answers_as_a_model_of_the_last_depth_prints(
    tmp_path_factory: pytest.TempPathFactory,
    depth: int,
    runs: list[int],
    scalar: list[bool],
    window: tuple[int, int],
) -> None:
    """Whatever runs the prints come in, and through either write path: asked for any
    range, the history gives exactly the prints among the last ``depth`` in it."""
    h = TradeHistory([7], [tmp_path_factory.mktemp("h")], depth)
    try:
        seq = 0
        for n, one_by_one in zip(runs, scalar, strict=False):
            run = prints(7, range(seq + 1, seq + n + 1))
            if one_by_one:
                for r in run:
                    h.keep_one(0, int(r["seq"]), memoryview(r.tobytes()))
            else:
                h.keep(0, run)
            seq += n
        first, length = window
        last = first + length
        expected = [s for s in range(first, last + 1) if seq - depth < s <= seq]
        got = h.prints(0, first, last)
        assert seqs_of(got) == expected
        assert got["price"].tolist() == [10 * s for s in expected]
    finally:
        h.close()


def test_a_replay_request_is_a_snapshot_request_with_first_and_last() -> None:
    encode = msgspec.msgpack.encode
    assert decode_request(encode({"symbol": "ACME", "id": 4})) == SnapshotRequest("ACME", 4)
    body = encode({"symbol": "ACME", "first": 5, "last": 9, "id": 4})
    assert decode_request(body) == TradeReplayRequest("ACME", 5, 9, 4)
    assert encode(TradeReplayRequest("ACME", 5, 9, 4)) == body  # the client's form
    for bad, why in (
        ({"symbol": "ACME", "first": 5}, "both `first` and `last`"),
        ({"symbol": "ACME", "first": 9, "last": 5}, "1 <= first <= last"),
        ({"symbol": "ACME", "first": 0, "last": 5}, "1 <= first <= last"),
        ({"symbol": "ACME", "first": "1", "last": 5}, "Expected `int | null`"),
        ({"symbol": "ACME", "frist": 1, "last": 5}, "unknown field `frist`"),
    ):
        with pytest.raises(msgspec.ValidationError, match=why):
            decode_request(encode(bad))


class Router:
    """The ROUTER's two calls the snapshot service makes; replies decoded."""

    def __init__(self, *requests: dict[str, Any]) -> None:
        self.queued = [[b"c", msgspec.msgpack.encode(r)] for r in requests]
        self.replies: list[Any] = []

    def recv_multipart(self, flags: int = 0) -> list[bytes]:
        if not self.queued:
            raise zmq.Again()
        return self.queued.pop(0)

    def send_multipart(self, frames: list[bytes]) -> None:
        self.replies.append(reply_decoder.decode(frames[-1]))


@pytest.fixture
def sidecar(ctx: zmq.Context[Any], instance: str, tmp_path: Path) -> Any:
    """A sidecar that publishes (to nobody) and knows its books: no rings, no engine."""
    s = MdSidecar(md_config(instance, tmp_path, trade_history=64))
    s.pub = ctx.socket(zmq.PUB)
    s.store.ready[:] = True
    s.store.status_known[:] = True
    yield s
    s.pub.close()
    assert s.history is not None
    s.history.close()


def replay(sidecar: MdSidecar, first: int, last: int) -> Any:
    router = Router({"symbol": "ACME", "first": first, "last": last, "id": 3})
    sidecar.snapshots.serve(router)
    (reply,) = router.replies
    return reply


def test_both_publishing_paths_keep_what_they_publish_for_replay(sidecar: MdSidecar) -> None:
    acme = sidecar.symbol_ids[sidecar.names.index("ACME")]
    batch = prints(acme, range(1, 101))  # the batch path (more than SMALL_BATCH)
    sidecar.handle(batch)
    quiet = prints(acme, [101, 102])  # the scalar path
    sidecar._buf[:2] = quiet
    assert sidecar._publish_small(2)
    reply = replay(sidecar, 50, 500)
    assert isinstance(reply, TradeReplay) and reply.symbol == "ACME"
    assert (reply.first, reply.last, reply.trade_seq) == (50, 102, 102)  # up to the published
    published = batch.tobytes() + quiet.tobytes()
    assert reply.records == published[-53 * 64 :]  # byte for byte
    # a range older than the history's 64 prints: only what is kept comes back
    assert seqs_of(records(replay(sidecar, 1, 50).records)) == list(range(39, 51))
    assert sidecar.stats.replays_served == 2
    assert sidecar.stats.replayed_prints == 53 + 12


def test_a_replay_reply_is_bounded_and_says_where_to_go_on(
    ctx: zmq.Context[Any], instance: str, tmp_path: Path
) -> None:
    s = MdSidecar(md_config(instance, tmp_path, trade_history=4 * REPLAY_MAX_PRINTS))
    s.pub = ctx.socket(zmq.PUB)
    s.store.ready[:] = s.store.status_known[:] = True
    try:
        total = 2 * REPLAY_MAX_PRINTS + 5
        s.handle(prints(s.symbol_ids[s.names.index("ACME")], range(1, total + 1)))
        first, got = 1, []
        while first <= total:
            reply = replay(s, first, total)
            assert reply.last - reply.first < REPLAY_MAX_PRINTS
            got += seqs_of(records(reply.records))
            first = reply.last + 1
        assert got == list(range(1, total + 1))
    finally:
        s.pub.close()
        assert s.history is not None
        s.history.close()


def test_a_sidecar_that_keeps_no_prints_says_so(
    ctx: zmq.Context[Any], instance: str, tmp_path: Path
) -> None:
    s = MdSidecar(md_config(instance, tmp_path, trade_history=0))
    s.store.ready[:] = s.store.status_known[:] = True
    reply = replay(s, 1, 5)
    assert isinstance(reply, SnapshotError) and reply.reason == "no_trade_history"
    assert s.stats.snapshot_errors["no_trade_history"] == 1
    assert not (tmp_path / "var").exists() or not list((tmp_path / "var").rglob("*.trades"))


def test_reading_a_symbol_that_never_traded_makes_no_file(history: TradeHistory) -> None:
    """A replay request for a symbol with no print yet allocated its whole file (4 MiB
    by default): a client asking for every symbol would have filled the disk."""
    assert seqs_of(history.prints(1, 1, 10)) == []
    assert not history_path(history.shard_dirs[1], 8).exists()
    history.keep(1, prints(8, [1]))  # the first print makes it
    assert seqs_of(history.prints(1, 1, 10)) == [1]
