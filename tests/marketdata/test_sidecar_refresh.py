"""The sidecar alone, in a thread, with the test playing the shard worker (it owns the md
ring and the control block): at start the sidecar asks for a market-data refresh; until
the image comes, snapshot requests wait, and past the limit get ``not_ready``; the image
then serves them, with the L2 seq and the trade / BBO seqs it carried."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zmq

from tests.cores.test_worker import wait_for
from tests.marketdata.md_rig import md_config
from tradsys.cores.control import WorkerControl
from tradsys.cores.md import MdSidecar
from tradsys.cores.md_endpoints import EndpointError
from tradsys.marketdata.protocol import BookSnapshot, SnapshotError, SnapshotRequest
from tradsys.marketdata.protocol import reply_decoder as replies
from tradsys.ring import Ring, segment_name
from tradsys.wire import LAYOUT_VERSION, MD_DTYPE, RECORD_SIZE, MdKind, Side

TIMEOUT_MS = 10_000


class Rig:
    def __init__(self, instance: str, tmp: Path) -> None:
        self.config = md_config(instance, tmp)
        self.owned: list[Ring] = []
        self.controls: list[WorkerControl] = []
        for shard in self.config.shards:
            self.owned.append(
                Ring.create(
                    segment_name(instance, "md", shard.id),
                    slot_size=RECORD_SIZE,
                    capacity=1024,
                    layout_version=LAYOUT_VERSION,
                )
            )
            self.controls.append(WorkerControl.create(segment_name(instance, "ctl", shard.id)))
        self.sidecar = MdSidecar(self.config, not_ready_after_s=0.3)
        self.stop = threading.Event()
        self.sidecar.open()
        self.thread = threading.Thread(target=self.sidecar.run, args=(self.stop,), daemon=True)
        self.thread.start()
        self.ctx = zmq.Context()
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
        self.dealer.connect(self.sidecar.endpoints["snapshot"])

    def ask(self, symbol: str, request_id: int) -> None:
        self.dealer.send(msgspec.msgpack.encode(SnapshotRequest(symbol, request_id)))

    def reply(self) -> BookSnapshot | SnapshotError:
        return replies.decode(self.dealer.recv())

    def close(self) -> None:
        self.dealer.close()
        self.ctx.term()
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.sidecar.close()
        for c in self.controls:
            c.close()
        for r in self.owned:
            r.close()


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(instance, tmp_path)
    try:
        yield r
    finally:
        r.close()


def image(symbol_id: int, l2_seq: int, trade_seq: int, bbo_seq: int) -> np.ndarray:
    """A refresh image: one bid 990 x 5 (2 orders) and one ask 1010 x 3."""
    out = np.zeros(4, MD_DTYPE)
    out["symbol_id"], out["seq"] = symbol_id, l2_seq
    out["kind"] = [
        MdKind.L2_REFRESH_BEGIN,
        MdKind.L2_REFRESH_LEVEL,
        MdKind.L2_REFRESH_LEVEL,
        MdKind.L2_REFRESH_END,
    ]
    out["quantity"] = [2, 5, 3, 2]
    out["ask_price"][0], out["ask_quantity"][0] = trade_seq, bbo_seq
    out["side"][1:3] = [Side.BUY, Side.SELL]
    out["price"][1:3] = [990, 1010]
    out["order_count"][1:3] = [2, 1]
    return out


def test_requests_wait_for_the_refresh_image_then_get_the_book(rig: Rig) -> None:
    assert [c.md_refresh_requests for c in rig.controls] == [1, 1], "a refresh was asked for"
    rig.ask("ACME", 1)
    assert rig.reply() == SnapshotError(
        1, "not_ready", "ACME: the book is not known yet (waiting for its worker)"
    )
    rig.ask("ACME", 2)  # waits ...
    rig.owned[0].push_all(image(1, l2_seq=40, trade_seq=7, bbo_seq=9), timeout=5)
    snap = rig.reply()  # ... and is answered by the image
    assert isinstance(snap, BookSnapshot) and snap.id == 2
    assert (snap.l2_seq, snap.trade_seq, snap.bbo_seq) == (40, 7, 9)
    assert (snap.bids, snap.asks) == ([(990, 5, 2)], [(1010, 3, 1)])
    # an update after the image moves the book on
    upd = np.zeros(1, MD_DTYPE)
    upd["kind"], upd["symbol_id"], upd["seq"], upd["side"] = MdKind.L2_UPDATE, 1, 41, Side.BUY
    upd["price"], upd["quantity"], upd["order_count"] = 990, 0, 0
    rig.owned[0].push_all(upd, timeout=5)
    # once the sidecar has taken it from the ring, a request is served after it is applied
    # (one thread: pop and apply, then requests)
    assert wait_for(lambda: rig.owned[0].readable == 0, 10), "the sidecar does not drain"
    rig.ask("ACME", 3)
    snap = rig.reply()
    assert isinstance(snap, BookSnapshot)
    assert (snap.l2_seq, snap.bids, snap.asks) == (41, [], [(1010, 3, 1)])


def test_an_endpoint_that_cannot_be_bound_fails_open_and_leaves_nothing(
    instance: str, tmp_path: Path
) -> None:
    config = md_config(instance, tmp_path)
    bad = msgspec.structs.replace(
        config, md=msgspec.structs.replace(config.md, snapshot=f"ipc://{tmp_path}/no/such/dir/s")
    )
    md = Ring.create(segment_name(instance, "md", 0), slot_size=RECORD_SIZE, capacity=64,
                     layout_version=LAYOUT_VERSION)  # fmt: skip
    md1 = Ring.create(segment_name(instance, "md", 1), slot_size=RECORD_SIZE, capacity=64,
                      layout_version=LAYOUT_VERSION)  # fmt: skip
    ctls = [WorkerControl.create(segment_name(instance, "ctl", i)) for i in (0, 1)]
    sidecar = MdSidecar(bad)
    try:
        with pytest.raises(EndpointError, match=r"md\.snapshot = 'ipc://.*/no/such/dir/s'"):
            sidecar.open()
    finally:
        sidecar.close()
        for c in ctls:
            c.close()
        md.close()
        md1.close()
    assert sidecar.feeds == []
