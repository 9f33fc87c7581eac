"""The conflated BBO board helper: sync and asyncio clients end to end, and the decoder's
refusals."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from tests.marketdata.md_rig import DEADLINE_S, SHARD_SYMBOLS, MdRig, md_config, running
from tradsys.client.marketdata import AsyncBboBoardClient, BboBoard, BboBoardClient
from tradsys.client.md_feed import decode_board
from tradsys.marketdata.protocol import BBO_BOARD_TOPIC
from tradsys.matching.workload import mixed_stream
from tradsys.wire import MD_DTYPE, MdKind

pytestmark = pytest.mark.multiprocess


def engine_tops(rig: MdRig) -> dict[str, tuple[int, int, int, int]]:
    """(bid price, bid qty, ask price, ask qty) per symbol from the reference engines;
    an empty side is (0, 0) — compared by quantity only."""
    out = {}
    for sym in rig.all_symbols():
        book = rig.engine_book(sym)
        bid = book["bids"][0][:2] if book["bids"] else (0, 0)
        ask = book["asks"][0][:2] if book["asks"] else (0, 0)
        out[sym] = (*bid, *ask)
    return out


def matches(board: BboBoard | None, want: dict[str, tuple[int, int, int, int]]) -> bool:
    if board is None or set(board.quotes) != set(want):
        return False
    for sym, (bp, bq, ap, aq) in want.items():
        q = board.quotes[sym]
        if (q.bid_quantity, q.ask_quantity) != (bq, aq):
            return False
        if (bq and q.bid_price != bp) or (aq and q.ask_price != ap):
            return False
    return True


def send_streams(rig: MdRig, seed: int) -> None:
    for shard in SHARD_SYMBOLS:
        rig.send(shard, mixed_stream(3000, seed + shard, rig.config.symbols_of(shard)))


def test_the_board_client_sees_every_symbols_latest_bbo(instance: str, tmp_path: Path) -> None:
    config = md_config(instance, tmp_path, conflated_bbo=f"ipc://{tmp_path}/md-bbo")
    with running(config) as rig, BboBoardClient.from_announcement(rig.announcement) as board:
        assert board.symbols == sorted(
            rig.all_symbols(), key=lambda s: next(
                i.symbol_id for i in config.instruments if i.symbol == s)
        )  # fmt: skip
        # a quiet market: the board still comes, with the heartbeat, and is empty
        first = board.latest(timeout_s=DEADLINE_S)
        assert first is not None and first.quotes == {}
        send_streams(rig, 51)
        want = engine_tops(rig)
        deadline = time.monotonic() + DEADLINE_S
        while not matches(board.latest(timeout_s=0.2), want):
            assert time.monotonic() < deadline, f"{board.board} never matched {want}"
        got = board.latest()
        assert got is not None and got.received_ns >= first.received_ns
        for q in got.quotes.values():
            assert q.seq > 0 and q.time_ns >= 0


def test_the_async_board_client(instance: str, tmp_path: Path) -> None:
    config = md_config(instance, tmp_path, conflated_bbo=f"ipc://{tmp_path}/md-bbo")
    with running(config) as rig:

        async def first_board() -> BboBoard:
            async with AsyncBboBoardClient.from_announcement(rig.announcement) as board:
                async for b in board:
                    return b
            raise AssertionError("unreachable")

        assert asyncio.run(asyncio.wait_for(first_board(), DEADLINE_S)).quotes == {}
        send_streams(rig, 61)
        want = engine_tops(rig)

        async def until_matches() -> BboBoard | None:
            async with AsyncBboBoardClient.from_announcement(rig.announcement) as board:
                deadline = time.monotonic() + DEADLINE_S
                while time.monotonic() < deadline:
                    got = await board.latest(timeout_s=0.2)
                    if matches(got, want):
                        return got
            return None

        assert asyncio.run(until_matches()) is not None, "the async board never matched"


def test_a_sidecar_without_a_board_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"\[md\] conflated_bbo"):
        BboBoardClient.from_announcement({"conflated_bbo": "", "symbols": ["A"]})


def test_decode_board_refuses_what_is_not_a_board_of_these_symbols() -> None:
    rows = np.zeros(2, MD_DTYPE)
    rows[0] = (MdKind.BBO, 0, 7, 3, 100, 5, 101, 6, 1, 42)
    message = BBO_BOARD_TOPIC + rows.tobytes()
    board = decode_board(message, ["A", "B"])
    assert set(board.quotes) == {"A"}  # B has no BBO yet
    a = board.quotes["A"]
    assert (a.symbol_id, a.seq, a.bid_price, a.bid_quantity, a.ask_price, a.ask_quantity) == (
        7, 3, 100, 5, 101, 6)  # fmt: skip
    with pytest.raises(ValueError, match="not a BBO board"):
        decode_board(b"hb\0" + rows.tobytes(), ["A", "B"])
    with pytest.raises(ValueError, match="whole 64-byte records"):
        decode_board(message[:-1], ["A", "B"])
    with pytest.raises(ValueError, match="has 2 symbols but this client was given 3"):
        decode_board(message, ["A", "B", "C"])
