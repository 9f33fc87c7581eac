"""An instance of more than 1 024 symbols (the scale audit ran 1 000-1 600 on 2 shards):
it used to pass the config check, then the gateway crashed at start (a SYMBOLS frame
holds 1 024 entries). Now the gateway sends its directory in several SYMBOLS frames
and both kinds of client read all of it and trade the last symbol; the `ready` lines
and `tradsys status` name a long list of symbols by count and a few, not one by one;
and the gateway's stats list only what is not idle."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.accounts_toml import account_tables
from tests.client.edge_rig import KEYS
from tests.engine_toml import numbered_instruments
from tradsys.client.events import Ack, Fill
from tradsys.client.orders import OrderClient
from tradsys.config import parse_config
from tradsys.cores.gateway import read_stats
from tradsys.cores.sidecar import read_announcement
from tradsys.cores.status import read_status
from tradsys.cores.supervisor import Supervisor

pytestmark = pytest.mark.multiprocess

SYMBOLS = 1100  # past one SYMBOLS frame's 1 024


def config_text(instance: str, data_dir: Path) -> str:
    lines = [
        "[engine]",
        f'instance = "{instance}"',
        f'data_dir = "{data_dir}"',
        "ring_capacity = 4096",
        "[journal]",
        'durability = "none"',
        "[gateway]",
        'tcp_listen = "127.0.0.1:0"',
        "[md]",
        f'publish = ["ipc://{data_dir}/md-pub"]',
        f'snapshot = "ipc://{data_dir}/md-snap"',
        "[[shard]]",
        "id = 0",
        "[[shard]]",
        "id = 1",
    ]
    lines += numbered_instruments(SYMBOLS, reference_price=100)
    return "\n".join(lines) + "\n" + account_tables(KEYS)


@pytest.fixture
def running(instance: str, tmp_path: Path) -> Iterator[Supervisor]:
    config = parse_config(config_text(instance, tmp_path), "many-symbols")
    sup = Supervisor(config, log=lambda line: None)
    sup.start()
    try:
        yield sup
    finally:
        sup.stop()


def test_more_than_1024_symbols_start_and_trade(running: Supervisor) -> None:
    config = running.config
    ann = read_announcement(config, "gateway")
    assert ann is not None
    last = f"S{SYMBOLS - 1:05d}"
    with (
        OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1]) as alice,
        OrderClient.connect(f"tcp://{ann['tcp']}", account_id=2, api_key=KEYS[2]) as bob,
    ):
        assert len(alice.symbols) == len(bob.symbols) == SYMBOLS
        assert alice.symbols[last] == bob.symbols[last] == SYMBOLS
        ask = alice.submit(last, "sell", 5, 100)
        assert isinstance(alice.wait_for(ask), Ack)
        bid = bob.submit(last, "buy", 2, 100)
        assert isinstance(bob.wait_for(bid), Ack)
        assert isinstance(bob.wait_for(bid, (Fill,)), Fill)
        assert isinstance(alice.wait_for(ask, (Fill,)), Fill)
        # the stats: the two accounts that traded, their one position each
        deadline, stats = time.monotonic() + 10, None
        while time.monotonic() < deadline:
            stats = read_stats(config)
            if stats and stats.get("accounts", {}).get("2", {}).get("positions"):
                break
            time.sleep(0.05)
        assert stats is not None
        assert stats["accounts"]["1"]["positions"] == {last: [-2, 0, 3]}
        assert stats["accounts"]["2"]["positions"] == {last: [2, 0, 0]}
        assert set(stats["accounts"]) == {"1", "2"}  # carol is idle
    lines = running.connection_info()
    shard_lines = [line for line in lines if line.startswith("shard ")]
    assert len(shard_lines) == 2
    for line in lines:
        assert len(line) < 400, line
    assert all(" symbols: S" in line and ", ..., S" in line for line in shard_lines)
    md = next(line for line in lines if line.startswith("md: "))
    assert f"symbols [{SYMBOLS} symbols: S00000, S00001, S00002, ..., {last}]" in md
    status = read_status(config, interval_s=0.01)
    assert all(len(line) < 400 for line in status.splitlines()), status
