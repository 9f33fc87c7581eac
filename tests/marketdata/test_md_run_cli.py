"""`tradsys run` with [md] enabled, as a user runs it: the supervisor starts the md
sidecar, `tradsys run` prints where it publishes, a subscriber rebuilds the book from the
feed, and SIGTERM stops everything with nothing left in /dev/shm."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cores.test_run_cli import RunningInstance, attach, collect
from tradsys import wire
from tradsys.client.marketdata import MarketDataClient
from tradsys.config import load_config
from tradsys.cores.sidecar import read_announcement
from tradsys.matching.commands import batch, new_order
from tradsys.ring import instance_segments

pytestmark = pytest.mark.multiprocess

CONFIG = """
[engine]
instance = "{instance}"
data_dir = "{tmp}/var"
ring_capacity = 1024

[journal]
durability = "none"

[gateway]
enabled = false

[md]
publish = ["ipc://{tmp}/md-pub"]
snapshot = "ipc://{tmp}/md-snap"
heartbeat_ms = 100

[[shard]]
id = 0

[[instrument]]
symbol = "ACME"
symbol_id = 1
reference_price = 100
"""


@pytest.fixture
def running(instance: str, tmp_path: Path) -> Iterator[tuple[RunningInstance, Path]]:
    config = tmp_path / "tradsys.toml"
    config.write_text(CONFIG.format(instance=instance, tmp=tmp_path))
    inst = RunningInstance(config)
    try:
        yield inst, config
    finally:
        inst.kill_all()


def test_tradsys_run_serves_market_data(
    running: tuple[RunningInstance, Path], instance: str
) -> None:
    inst, path = running
    line = inst.wait_for("md: ")  # the connection info names the sidecar's endpoints
    inst.wait_for("ready;")
    doc = read_announcement(load_config(path), "md")
    assert doc is not None and doc["publish"][0] in line
    cmd, evt, _md = attach(instance, 0)
    _md.close()  # the md ring is the sidecar's
    try:
        with MarketDataClient(doc["publish"][0], doc["snapshot"], ["ACME"]) as client:
            book = client.books["ACME"]
            assert client.run_until(lambda: book.synced, 30)
            orders = batch(
                new_order(1, 1, 7, wire.Side.SELL, 10, 101),
                new_order(2, 1, 8, wire.Side.BUY, 4, 102),
                new_order(3, 1, 9, wire.Side.BUY, 2, 99),
            )
            assert cmd.push_all(orders, timeout=10) == len(orders)
            collect(evt, wire.EVENT_DTYPE, 5)  # 3 accepted, 2 trade sides
            want = {"bids": [(99, 2, 1)], "asks": [(101, 6, 1)]}
            assert client.run_until(lambda: book.as_dict() == want, 30), book.as_dict()
    finally:
        cmd.close()
        evt.close()
    assert inst.stop() == 0, "".join(inst.lines)
    assert instance_segments(instance) == []
