"""The conflated BBO board after a refresh image: a restarted sidecar learns each book
from its worker's image, which carries the BBO's seq but not its values; the board row
must still say what the engine's last BBO record said (its best levels at that seq), not
"no BBO yet" until the symbol's BBO next changes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from tests.marketdata.md_rig import DEADLINE_S, instruments, md_config, running
from tradsys.client.marketdata import BboBoardClient
from tradsys.client.md_feed import Bbo, BboBoard, decode_board
from tradsys.cores.md import MdSidecar
from tradsys.matching import CEngine, Instrument
from tradsys.matching.workload import mixed_stream
from tradsys.wire import MD_DTYPE, MdKind, Side


class Sent:
    """A stand-in for the sidecar's PUB sockets: keeps what was sent."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, data: Any, flags: int = 0) -> None:
        self.frames.append(bytes(data))


def refresh_image(engine: CEngine, md: np.ndarray, ins: Instrument) -> np.ndarray:
    """What native/md_refresh.c pushes for one symbol: BEGIN (the seqs, the phase),
    a LEVEL per level best first, END."""
    sid = ins.symbol_id

    def last(kind: MdKind) -> int:
        return int(md["seq"][(md["symbol_id"] == sid) & (md["kind"] == kind)].max(initial=0))

    bids, asks = engine.depth(sid, Side.BUY, 1000), engine.depth(sid, Side.SELL, 1000)
    out = np.zeros(2 + len(bids) + len(asks), MD_DTYPE)
    out["symbol_id"], out["seq"] = sid, last(MdKind.L2_UPDATE)
    out["kind"] = MdKind.L2_REFRESH_LEVEL
    out["kind"][0], out["kind"][-1] = MdKind.L2_REFRESH_BEGIN, MdKind.L2_REFRESH_END
    out["quantity"][0] = out["quantity"][-1] = len(bids) + len(asks)
    out["ask_price"][0], out["ask_quantity"][0] = last(MdKind.TRADE), last(MdKind.BBO)
    out["price"][0], out["order_count"][0] = last(MdKind.STATUS), engine.phase(sid)
    out["price"][-1] = -1
    levels = out[1:-1]
    levels["side"] = [Side.BUY] * len(bids) + [Side.SELL] * len(asks)
    for name in ("price", "quantity", "order_count"):
        levels[name] = np.concatenate([bids[name], asks[name]])
    return out


def last_bbos(md: np.ndarray, names: dict[int, str]) -> dict[str, Bbo]:
    """Each symbol's last BBO record, as the board client reads one (time_ns 0)."""
    out = {}
    for r in md[md["kind"] == MdKind.BBO]:  # in seq order: the last one stays
        sid = int(r["symbol_id"])
        out[names[sid]] = Bbo(
            names[sid],
            sid,
            int(r["seq"]),
            int(r["price"]),
            int(r["quantity"]),
            int(r["ask_price"]),
            int(r["ask_quantity"]),
            0,
        )
    return out


def untimed(q: Bbo) -> Bbo:
    """A board row as a refresh image gives it: the time of the change is not known."""
    return msgspec.structs.replace(q, time_ns=0)


def latest_board(sent: Sent, sidecar: MdSidecar) -> BboBoard:
    assert sent.frames, "no board was sent"
    return decode_board(sent.frames[-1], sidecar.names)


@pytest.mark.parametrize("seed", [41, 42, 43])
def test_a_refresh_image_fills_the_board_with_the_engines_last_bbo(
    instance: str, tmp_path: Path, seed: int
) -> None:
    config = md_config(instance, tmp_path, conflated_bbo=f"ipc://{tmp_path}/md-bbo")
    traded = [i for i in instruments() if i.symbol in ("ACME", "BRKR")]
    quiet = next(i for i in instruments() if i.symbol == "ACMEX")  # never had a BBO
    with CEngine() as engine:
        for ins in [*traded, quiet]:
            engine.add_instrument(ins)
        md = engine.process(mixed_stream(3000, seed, traded)).md
        image = np.concatenate([refresh_image(engine, md, ins) for ins in [*traded, quiet]])
    want = last_bbos(md, {i.symbol_id: i.symbol for i in instruments()})
    assert set(want) == {"ACME", "BRKR"}

    restarted = MdSidecar(config)  # knows nothing: only the image tells it the books
    restarted.conflated = board = Sent()
    restarted.handle(image)
    assert latest_board(board, restarted).quotes == want

    # a sidecar that published the BBO records itself keeps them, engine time included
    running_since_start = MdSidecar(config)
    running_since_start.pub, running_since_start.conflated = Sent(), Sent()
    running_since_start.handle(md)
    before = latest_board(running_since_start.conflated, running_since_start).quotes
    running_since_start.handle(image)
    after = latest_board(running_since_start.conflated, running_since_start).quotes
    assert after == before
    assert {s: untimed(q) for s, q in after.items()} == want


@pytest.mark.multiprocess
def test_the_board_survives_a_sidecar_restart(instance: str, tmp_path: Path) -> None:
    config = md_config(instance, tmp_path, conflated_bbo=f"ipc://{tmp_path}/md-bbo")
    with running(config) as rig:
        client = rig.client()
        rig.wait_converged(client)
        rig.send(0, mixed_stream(3000, 41, rig.config.symbols_of(0)))
        rig.wait_converged(client)

        def board_now(until: Any) -> BboBoard | None:
            deadline = time.monotonic() + DEADLINE_S
            with BboBoardClient.from_announcement(rig.announcement) as b:
                got = b.latest(0.2)
                while not until(got) and time.monotonic() < deadline:
                    got = b.latest(0.2)
            return got

        before = board_now(lambda b: b is not None and {"ACME", "BRKR"} <= set(b.quotes))
        assert before is not None and {"ACME", "BRKR"} <= set(before.quotes)
        for sym, q in before.quotes.items():  # the engine's book says the same
            book = rig.engine_book(sym)
            bid = book["bids"][0][:2] if book["bids"] else (0, 0)
            ask = book["asks"][0][:2] if book["asks"] else (0, 0)
            assert (q.bid_price, q.bid_quantity, q.ask_price, q.ask_quantity) == (*bid, *ask)

        os.kill(rig.sidecar_pid, signal.SIGKILL)
        rig.restart_sidecar()
        # a quiet market: nothing but the refresh image can tell the new sidecar the BBOs
        want = {s: untimed(q) for s, q in before.quotes.items()}
        after = board_now(lambda b: b is not None and b.quotes == want)
        assert after is not None and after.quotes == want, (
            f"after the restart the board says {after.quotes if after else None}"
        )
