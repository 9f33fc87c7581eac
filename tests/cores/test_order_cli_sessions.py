"""`tradsys order` against a running instance (Supervisor, real gateway and shard
workers): what a command's session gets besides the answers to its own commands -- the
events the account's earlier sessions left, the events that come while the shell's
prompt waits -- and what becomes of a resting order when a one-shot command exits."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.edge_rig import KEYS
from tests.cores.test_gateway_e2e import e2e_config_text
from tradsys.cli_order import EARLIER
from tradsys.client.events import Cancelled, Fill
from tradsys.client.orders import OrderClient
from tradsys.config import load_config
from tradsys.cores.sidecar import read_announcement
from tradsys.cores.supervisor import Supervisor

pytestmark = pytest.mark.multiprocess


class Instance:
    def __init__(self, path: Path, sup: Supervisor) -> None:
        self.path = path
        self.sup = sup
        ann = read_announcement(sup.config, "gateway")
        assert ann is not None
        self.unix_socket = str(ann["unix_socket"])

    def client(self, account: int) -> OrderClient:
        return OrderClient.connect(self.unix_socket, account_id=account, api_key=KEYS[account])

    def command(self, account: int, *args: str) -> list[str]:
        return [
            sys.executable, "-m", "tradsys.cli", "order", "--config", str(self.path),
            "--account", f"acct{account}", *args,
        ]  # fmt: skip

    def order(self, account: int, *args: str) -> subprocess.CompletedProcess[str]:
        """One `tradsys order` command of ``account``, run to its end."""
        env = {**os.environ, "TRADSYS_API_KEY": KEYS[account]}
        return subprocess.run(
            self.command(account, *args), capture_output=True, text=True, timeout=60, env=env
        )


@pytest.fixture
def running(instance: str, tmp_path: Path) -> Iterator[Instance]:
    path = tmp_path / "instance.toml"
    path.write_text(e2e_config_text(instance, tmp_path / "data"))
    sup = Supervisor(load_config(str(path)), log=lambda line: None)
    sup.start()
    try:
        yield Instance(path, sup)
    finally:
        sup.stop()


def test_submit_labels_what_earlier_sessions_left_and_counts_only_its_own_rejects(
    running: Instance,
) -> None:
    with running.client(1) as earlier:
        bad = earlier.submit("ACME", "buy", 0, 90)  # INVALID_QUANTITY
        resting = earlier.submit("ACME", "buy", 1, 90)
        earlier.wait_for(resting)  # the reject before it stays unread: it is kept
    # that session left the reject unread, and its resting order is cancelled as it ends:
    # both go to the account's next session, this command's
    out = running.order(1, "submit", "ACME", "buy", "2", "--price", "91")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    theirs = [line for line in lines if line.endswith(EARLIER)]
    assert any(line.startswith(f"Reject    order {bad} ") for line in theirs), lines
    assert any(line.startswith(f"Cancelled order {resting} ") for line in theirs), lines
    own = [line for line in lines if not line.endswith(EARLIER)]
    assert len(own) == 1 and own[0].startswith("Ack") and "quantity=2" in own[0], lines
    # its own reject still decides the exit code
    refused = running.order(1, "submit", "ACME", "buy", "0", "--price", "91")
    assert refused.returncode == 1 and "INVALID_QUANTITY" in refused.stdout


def test_a_market_order_goes_as_ioc_and_leaves_nothing_resting(running: Instance) -> None:
    with running.client(2) as bob:
        ask = bob.submit("ACME", "sell", 5, 101)
        bob.wait_for(ask)
        out = running.order(1, "submit", "ACME", "buy", "2")  # no --price: a market order
        assert out.returncode == 0, out.stdout + out.stderr
        assert "INVALID_TIF" not in out.stdout
        assert any(line.startswith("Fill") and "price=101" for line in out.stdout.splitlines())
        assert "note:" not in out.stderr  # nothing of it rests
        fill = bob.wait_for(ask, (Fill,))
        assert isinstance(fill, Fill) and fill.quantity == 2


def test_replace_says_the_order_is_cancelled_when_the_command_exits(running: Instance) -> None:
    """The session that replaces an order takes it over, so with cancel_on_disconnect the
    order goes when the command's session does: the command says so."""
    with running.client(1) as alice:
        oid = alice.submit("ACME", "buy", 3, 90)
        alice.wait_for(oid)
        out = running.order(1, "replace", str(oid), "ACME", "--price", "91", "--quantity", "2")
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.startswith(f"Replaced  order {oid} ACME")
        assert f"note: order {oid} is cancelled as this command exits" in out.stderr
        assert "cancel_on_disconnect" in out.stderr and "takes the order over" in out.stderr
        # as the note says: cancelled at the command's end, reported to the account's
        # session that is left
        gone = alice.wait_for(oid, (Cancelled,))
        assert isinstance(gone, Cancelled) and gone.quantity == 2
    resting = running.order(1, "submit", "ACME", "buy", "1", "--price", "90")
    assert resting.returncode == 0 and "note: order " in resting.stderr


def test_cancel_of_no_live_order_says_the_account_has_none(running: Instance) -> None:
    out = running.order(1, "cancel", "424242", "ACME")
    assert out.returncode == 1
    assert "UNKNOWN_CLIENT_ID" in out.stdout
    assert "no live order of the account with this client order id" in out.stdout
    assert "note:" not in out.stderr
