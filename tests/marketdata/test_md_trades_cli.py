"""`tradsys md trades` and the library call under it (tradsys.client.trade_replay): a
symbol's last prints, or a range of seqs, as the running sidecar keeps them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.marketdata.md_rig import DEADLINE_S, MdRig, md_config, md_rig
from tradsys.client.md_feed import Trades
from tradsys.client.trade_replay import ReplayRefusedError, fetch_trades, last_trades
from tradsys.matching.commands import batch, new_order
from tradsys.wire import Side

pytestmark = pytest.mark.multiprocess


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[MdRig]:
    yield from md_rig(md_config(instance, tmp_path, trade_history=4))


def five_prints(rig: MdRig) -> list[tuple[int, int, int]]:
    """A resting buy of 5 @ 1000 hit by five sells of one lot: five prints of 1 @ 1000;
    (seq, quantity, price) as a subscriber saw them."""
    seen: list[Trades] = []
    client = rig.client(on_trade=seen.append)
    rig.wait_converged(client)
    orders = [new_order(1, 1, 7, Side.BUY, 5, 1000)]
    orders += [new_order(10 + k, 1, 8, Side.SELL, 1, 1000 - k) for k in range(5)]
    rig.send(0, batch(*orders))
    assert client.run_until(lambda: sum(len(t.records) for t in seen) >= 5, DEADLINE_S)
    recs = np.concatenate([t.records for t in seen])
    return [(int(r["seq"]), int(r["quantity"]), int(r["price"])) for r in recs]


def md_trades(rig: MdRig, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tradsys.cli", "md", "trades", *args, "--snapshot", rig.snapshot]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_md_trades_prints_the_last_ones_and_says_what_is_no_longer_kept(rig: MdRig) -> None:
    seen = five_prints(rig)
    assert [s for s, _, _ in seen] == [1, 2, 3, 4, 5]
    last = md_trades(rig, "acme", "--last", "2")
    assert last.returncode == 0, last.stderr
    assert [ln.split()[0] for ln in last.stdout.splitlines()] == ["4", "5"]
    assert all("sell  1 @ 1000" in ln for ln in last.stdout.splitlines())  # the aggressor
    ranged = md_trades(rig, "ACME", "--seqs", "1-5", "--json")
    assert ranged.returncode == 0, ranged.stderr
    rows = [json.loads(ln) for ln in ranged.stdout.splitlines()]
    # the history keeps 4 (trade_history = 4): seq 1 is gone, and said to be
    assert [(r["seq"], r["quantity"], r["price"]) for r in rows] == seen[1:]
    assert "seq 1 no longer kept" in ranged.stderr


def test_the_library_call_answers_ranges_and_refusals(rig: MdRig) -> None:
    five_prints(rig)
    found = fetch_trades(rig.snapshot, "ACME", 3, 99)
    assert (found.first, found.last, found.trade_seq) == (3, 5, 5)  # stops at the published
    assert found.prints["seq"].tolist() == [3, 4, 5] and found.missing == []
    assert last_trades(rig.snapshot, "ACME", 10).missing == [(1, 1)]
    assert last_trades(rig.snapshot, "ACMEX", 3).trade_seq == 0  # nothing printed there
    with pytest.raises(ReplayRefusedError, match="unknown_symbol"):
        last_trades(rig.snapshot, "NOPE", 3)
    with pytest.raises(ValueError, match="1 <= first <= last"):
        fetch_trades(rig.snapshot, "ACME", 4, 3)


def test_md_trades_refusals_are_user_errors(rig: MdRig, tmp_path: Path) -> None:
    unknown = md_trades(rig, "NOPE")
    assert unknown.returncode == 1 and "unknown_symbol" in unknown.stderr
    bad = md_trades(rig, "ACME", "--seqs", "9-3")
    assert bad.returncode == 1 and "1 <= FIRST <= LAST" in bad.stderr
    cmd = [sys.executable, "-m", "tradsys.cli", "md", "trades", "ACME", "--timeout", "0.2"]
    nobody = subprocess.run(
        [*cmd, "--snapshot", f"ipc://{tmp_path}/nobody"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nobody.returncode == 1 and "no answer from" in nobody.stderr
