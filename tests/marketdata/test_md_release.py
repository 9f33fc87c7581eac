"""The md sidecar releases a batch from its shard's ring only once it has published it:
one killed in between leaves the batch for its successor (trade prints included, which
no snapshot brings back), where taking it first lost it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.marketdata.md_rig import md_config
from tradsys.cores.control import WorkerControl
from tradsys.cores.md import MdSidecar
from tradsys.ring import Ring, segment_name
from tradsys.wire import LAYOUT_VERSION, MD_DTYPE, RECORD_SIZE, MdKind


class DiedError(Exception):
    """The sidecar's death in the middle of publishing."""


@pytest.fixture
def md_ring(instance: str, tmp_path: Path) -> Iterator[tuple[MdSidecar, Ring]]:
    config = md_config(instance, tmp_path)
    owned = [
        Ring.create(
            segment_name(instance, "md", shard.id),
            slot_size=RECORD_SIZE,
            capacity=1024,
            layout_version=LAYOUT_VERSION,
        )
        for shard in config.shards
    ]
    controls = [
        WorkerControl.create(segment_name(instance, "ctl", shard.id)) for shard in config.shards
    ]
    sidecar = MdSidecar(config)
    sidecar.open()
    try:
        yield sidecar, owned[0]
    finally:
        sidecar.close()
        for seg in (*controls, *owned):
            seg.close()


def _trades(n: int) -> np.ndarray:
    out = np.zeros(n, MD_DTYPE)
    out["kind"], out["symbol_id"], out["seq"] = MdKind.TRADE, 1, np.arange(1, n + 1)
    out["price"], out["quantity"] = 100, 1
    return out


@pytest.mark.parametrize("n", [1, 200])  # the quiet path and the batch path
def test_a_batch_stays_in_the_ring_until_it_is_published(
    md_ring: tuple[MdSidecar, Ring], n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    sidecar, ring = md_ring
    assert ring.push_batch(_trades(n)) == n

    def die(*args: object) -> bool:
        raise DiedError

    with monkeypatch.context() as m:
        m.setattr(sidecar, "_publish_small", die)
        m.setattr(sidecar, "handle", die)
        with pytest.raises(DiedError):
            sidecar.drain_once()
    assert ring.readable == n  # all still there for the next sidecar
    assert sidecar.stats.drained[0] == 0
    assert sidecar.drain_once()
    assert ring.readable == 0
    assert sidecar.stats.drained[0] == n
    assert sum(sidecar.stats.records) == n  # published, each once
