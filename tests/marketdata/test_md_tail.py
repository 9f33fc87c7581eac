"""`tradsys md tail`: the view, and the command against a running sidecar."""

from __future__ import annotations

import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.marketdata.md_rig import MdRig, md_config, md_rig
from tradsys.client.md_feed import LocalBook
from tradsys.matching import Phase
from tradsys.matching.commands import batch, control, new_order
from tradsys.wire import ControlCode, Side


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[MdRig]:
    yield from md_rig(md_config(instance, tmp_path))


def test_render_puts_asks_above_bids_and_newest_trades_first() -> None:
    book = LocalBook("ACME")
    book.bids = {99: (5, 1), 98: (7, 2)}
    book.asks = {101: (3, 1), 102: (4, 1)}
    view = render_view(book)
    lines = view.splitlines()
    order = [ln.split()[1] for ln in lines if ln.strip().startswith(("ask", "bid"))]
    assert order == ["102", "101", "99", "98"]
    assert lines.index(next(ln for ln in lines if "2 @ 100" in ln)) < lines.index(
        next(ln for ln in lines if "1 @ 101" in ln)
    )


def test_the_view_shows_the_trading_status() -> None:
    book = LocalBook("ACME")
    assert "status unknown" in render_view(book).splitlines()[0]
    book.phase = Phase.HALTED
    assert "HALTED" in render_view(book).splitlines()[0]
    book.phase, book.reopen_ns = Phase.AUCTION, 1_500
    assert "AUCTION CALL until 1500 ns" in render_view(book).splitlines()[0]


def render_view(book: LocalBook) -> str:
    from tradsys.cli_md import render

    trades = deque([(1, int(Side.BUY), 1, 101), (2, int(Side.SELL), 2, 100)])
    return render(book, trades, 10, "")


def md_tail(rig: MdRig, *args: str) -> subprocess.CompletedProcess[str]:
    """`tradsys md tail ...` against the rig's sidecar."""
    endpoints = ["--publish", rig.publish, "--snapshot", rig.snapshot]
    cmd = [sys.executable, "-m", "tradsys.cli", "md", "tail", *args, *endpoints]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.multiprocess
def test_md_tail_shows_the_live_book(rig: MdRig) -> None:
    rig.send(0, batch(new_order(1, 1, 7, Side.BUY, 5, 990), new_order(2, 1, 8, Side.SELL, 3, 1010)))
    proc = md_tail(rig, "ACME", "--plain", "--updates", "1")
    assert proc.returncode == 0, proc.stderr
    assert "ask" in proc.stdout and "1010" in proc.stdout and "990" in proc.stdout


@pytest.mark.multiprocess
def test_md_tail_shows_a_halt(rig: MdRig) -> None:
    rig.send(0, batch(control(ControlCode.HALT, 1)))
    proc = md_tail(rig, "ACME", "--plain", "--updates", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("ACME  HALTED")


@pytest.mark.multiprocess
def test_md_tail_of_an_unknown_symbol_is_a_user_error(rig: MdRig) -> None:
    proc = md_tail(rig, "NOPE")
    assert proc.returncode == 1
    assert "unknown_symbol" in proc.stderr and "NOPE" in proc.stderr


def rig_toml(rig: MdRig, tmp_path: Path) -> Path:
    """A config file naming the rig's instance: enough to find its sidecar's
    announcement (endpoints and the symbols it publishes)."""
    engine = rig.config.engine
    path = tmp_path / "tail.toml"
    path.write_text(
        f'[engine]\ninstance = "{engine.instance}"\ndata_dir = "{engine.data_dir}"\n\n'
        '[[shard]]\nid = 0\n\n[[instrument]]\nsymbol = "ACME"\nsymbol_id = 1\n'
    )
    return path


@pytest.mark.multiprocess
def test_md_tail_takes_a_symbol_in_any_case_and_lists_the_published_ones(
    rig: MdRig, tmp_path: Path
) -> None:
    rig.send(0, batch(new_order(1, 1, 7, Side.BUY, 5, 990)))
    lower = md_tail(rig, "acme", "--plain", "--updates", "1")
    assert lower.returncode == 0, lower.stderr
    assert lower.stdout.startswith("ACME ") and "990" in lower.stdout
    config = str(rig_toml(rig, tmp_path))
    cmd = [sys.executable, "-m", "tradsys.cli", "md", "tail"]
    found = subprocess.run(
        [*cmd, "acme", "--config", config, "--plain", "--updates", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith("ACME ")
    unknown = subprocess.run(
        [*cmd, "nope", "--config", config], capture_output=True, text=True, timeout=60
    )
    assert unknown.returncode == 1
    assert "unknown symbol 'nope'; the instance publishes: ACME, ACMEX, BRKR" in unknown.stderr


@pytest.mark.parametrize("bad", ["publish", "snapshot"])
def test_a_mistyped_endpoint_is_a_user_error_naming_it(
    bad: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from tradsys.cli import main

    endpoints = {"publish": "tcp://127.0.0.1:1", "snapshot": "tcp://127.0.0.1:2", bad: "bogus"}
    flags = [f"--{k}={v}" for k, v in endpoints.items()]
    assert main(["md", "tail", "ACME", *flags]) == 1
    assert f"bad {bad} endpoint 'bogus'" in capfd.readouterr().err
