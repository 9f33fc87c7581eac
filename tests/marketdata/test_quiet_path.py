"""The sidecar's scalar quiet path publishes exactly what the batch path publishes with
one record per message, keeps the same books and seqs, and counts the same figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zmq

from tests.marketdata.md_rig import md_config
from tradsys.cores.md import SMALL_BATCH, MdSidecar
from tradsys.matching import CEngine
from tradsys.matching.workload import mixed_stream
from tradsys.wire import MD_DTYPE, MdKind


def engine_md(config: Any) -> list[np.ndarray]:
    """Each command's market data, as a quiet market's drained batches."""
    out = []
    for shard in config.shards:
        engine = CEngine()
        symbols = config.symbols_of(shard.id)
        for ins in symbols:
            engine.add_instrument(ins)
        for cmd in mixed_stream(1500, 3 + shard.id, symbols):
            md = engine.process(cmd.reshape(1)).md
            for a in range(0, len(md), SMALL_BATCH):  # a sweep's output comes in pieces
                out.append(np.ascontiguousarray(md[a : a + SMALL_BATCH]))
        engine.close()
    return out


def published(ctx: zmq.Context[Any], sidecar: MdSidecar, name: str, feed: Any) -> list[Any]:
    """Run ``feed`` with the sidecar publishing on an inproc PUB; every message it sent."""
    sidecar.pub = ctx.socket(zmq.PUB)
    sidecar.pub.bind(f"inproc://{name}")
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.connect(f"inproc://{name}")  # inproc: connected (and subscribed) at once
    sidecar.pub.setsockopt(zmq.SNDHWM, 0)
    try:
        feed()
        messages = []
        while sub.poll(0):
            messages.append(tuple(sub.recv_multipart()))
        return messages
    finally:
        sub.close()
        sidecar.pub.close()


def test_the_scalar_path_publishes_what_the_batch_path_does(
    ctx: zmq.Context[Any], instance: str, tmp_path: Path
) -> None:
    config = md_config(instance, tmp_path, max_frame_records=1)
    batches = engine_md(config)
    scalar, vector = MdSidecar(config), MdSidecar(config)
    for sidecar in (scalar, vector):  # no refresh image: the books start empty
        sidecar.store.ready[:] = True

    def by_scalar() -> None:
        for b in batches:
            scalar._buf[: len(b)] = b
            assert scalar._publish_small(len(b))

    def by_batch() -> None:
        for b in batches:
            vector.handle(b)

    got, want = published(ctx, scalar, "scalar", by_scalar), published(ctx, vector, "v", by_batch)
    n = sum(len(b) for b in batches)
    assert len(got) == n > 1000  # one message per record
    # the same messages, except that the batch path orders a batch's channels
    assert sorted(got) == sorted(want)
    for symbol in range(len(config.instruments)):
        assert scalar.store.book(symbol) == vector.store.book(symbol)
    for seqs in ("trade_seq", "bbo_seq", "l2_seq", "status_seq", "phase", "reopen_ns"):
        assert getattr(scalar.store, seqs).tolist() == getattr(vector.store, seqs).tolist()
    assert scalar.store.status_seq.any(), "the stream changed some phase"
    a, b = scalar.stats.doc(), vector.stats.doc()
    # the lag's sum depends on when each path ran; which records counted, not
    assert sum(a["publish_lag"].pop("counts")) == sum(b["publish_lag"].pop("counts"))
    a["publish_lag"].pop("sum_s"), b["publish_lag"].pop("sum_s")
    assert a == b
    assert scalar.stats.records == vector.stats.records and sum(scalar.stats.records) == n


def test_a_small_batch_with_a_refresh_record_takes_the_batch_path(
    instance: str, tmp_path: Path
) -> None:
    sidecar = MdSidecar(md_config(instance, tmp_path))
    sidecar._buf[:2] = np.zeros(2, MD_DTYPE)
    sidecar._buf["kind"][1] = MdKind.L2_REFRESH_BEGIN
    assert not sidecar._publish_small(2)  # nothing done: the caller hands it to handle()
    assert sum(sidecar.stats.records) == 0
