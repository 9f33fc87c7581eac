"""`tradsys order` against a running instance (Supervisor, real gateway and shard
workers): what a command's session gets besides the answers to its own commands -- the
events the account's earlier sessions left, the events that come while the shell's
prompt waits -- and what becomes of a resting order when a one-shot command exits."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.edge_rig import KEYS
from tests.cores.run_instance import OutputLines
from tests.cores.test_gateway_admin import Instance as AdminInstance
from tests.cores.test_gateway_admin import _start
from tests.cores.test_gateway_e2e import e2e_config_text
from tests.ctrl_c import ctrl_c
from tradsys.cli_order import EARLIER
from tradsys.client.events import Ack, Cancelled, Fill
from tradsys.client.orders import OrderClient

pytestmark = pytest.mark.multiprocess


class Instance(AdminInstance):
    """A running instance, its config file, and `tradsys order` command lines against it."""

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
    text = e2e_config_text(instance, tmp_path / "data")
    for started in _start(tmp_path / "instance.toml", text, Instance):
        assert isinstance(started, Instance)
        yield started


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
    # its own reject still decides the exit code -- also with --wait 0: the command waits
    # for its own answer whatever --wait says (it exited 0 before that came)
    for wait in ("0.5", "0"):
        refused = running.order(1, "submit", "ACME", "buy", "0", "--price", "91", "--wait", wait)
        assert refused.returncode == 1 and "INVALID_QUANTITY" in refused.stdout, refused


def test_status_prints_what_earlier_sessions_left_before_the_listing(
    running: Instance,
) -> None:
    """The listing is the account's orders after every event before its answer: the
    events an earlier session left come first, as they happened (they used to be printed
    after the listing, as if news that changed it)."""
    with running.client(1) as earlier:
        kept = earlier.submit("ACME", "buy", 2, 90)
        earlier.wait_for(kept)
    # that session's resting order is cancelled as it ends: its Cancelled waits for the
    # account's next session, the status command's
    out = running.order(1, "status")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"Cancelled order {kept} ") and lines[0].endswith(EARLIER), lines
    assert lines[-1] == "0 live order(s) of the account", lines


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


class Shell:
    """`tradsys order shell` with a pipe for its input and its output read line by line
    as it comes (a thread drains it into a queue: waiting for a line waits on data)."""

    def __init__(self, running: Instance, account: int) -> None:
        env = {**os.environ, "TRADSYS_API_KEY": KEYS[account]}
        self.proc = subprocess.Popen(
            running.command(account, "shell"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        self.output = OutputLines(self.proc.stdout)

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_for(self, prefix: str, timeout: float = 15.0) -> str:
        line = self.output.wait_for(lambda line: line.startswith(prefix), repr(prefix), timeout)
        return line.rstrip("\n")

    def end(self) -> tuple[int, list[str]]:
        """Close its input, wait for it to exit; its exit code and every line it printed."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=30)
        return code, [line.rstrip("\n") for line in self.output.rest()]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()


@pytest.fixture
def shell(running: Instance) -> Iterator[Shell]:
    sh = Shell(running, 1)
    try:
        yield sh
    finally:
        sh.kill()


def test_the_shell_prints_events_while_it_waits_and_reads_them_all_before_it_ends(
    running: Instance, shell: Shell
) -> None:
    shell.type("submit ACME sell 5 --price 101 --order-id 7")
    assert "order 7 ACME" in shell.wait_for("Ack")
    # a line it answers at once, after the submit's own wait for events: once it has
    # answered, the shell waits at its prompt
    shell.type("cancel")
    shell.wait_for("error: the following arguments are required")
    with running.client(2) as bob:
        bob.wait_for(bob.submit("ACME", "buy", 2, 101, tif="ioc"), (Fill,))
        # nothing typed: the shell prints its maker fill as it comes
        assert "quantity=2 leaves_qty=3" in shell.wait_for("Fill      order 7")
        bob.wait_for(bob.submit("ACME", "buy", 1, 101, tif="ioc"), (Fill,))
    shell.type("quit")  # at once: the second fill may still be in the session's ring
    code, lines = shell.end()
    assert code == 0, shell.proc.stderr.read() if shell.proc.stderr else ""
    fills = [line for line in lines if line.startswith("Fill      order 7")]
    assert len(fills) == 2 and "quantity=1 leaves_qty=2" in fills[1], lines
    # what rests goes with the shell's session: said, as a one-shot command says it
    assert shell.proc.stderr is not None
    assert "note: order 7 is cancelled as the shell exits" in shell.proc.stderr.read()
    # read and handed, so not redelivered: the account's next session gets, before the
    # answer to its own order, only the cancel of what the shell left resting
    with running.client(1) as after:
        mine = after.submit("ACME", "buy", 1, 90)
        after.wait_for(mine)
        earlier = [e for e in after.poll() if e.order_id == 7]
    assert not any(isinstance(e, Fill | Ack) for e in earlier), earlier


def test_the_shell_has_help(shell: Shell) -> None:
    shell.type("help")
    assert "mass-cancel [SYMBOL]" in shell.wait_for("  mass-cancel")
    shell.type("mass-cancel")
    assert shell.wait_for("mass cancel sent") == (
        "mass cancel sent: every order of the account, every symbol"
    )
    code, _ = shell.end()
    assert code == 0


def test_ctrl_c_during_a_submit_wait_still_says_the_order_is_cancelled(running: Instance) -> None:
    """Ctrl-C is how a person ends `--wait`; the note that the resting order goes with
    the command's session was skipped then, though the order was cancelled all the same."""
    env = {**os.environ, "TRADSYS_API_KEY": KEYS[1]}
    cmd = running.command(1, "submit", "ACME", "buy", "1", "--price", "90", "--wait", "600")
    code, _, err = ctrl_c(cmd, "stdout", lambda line: line.startswith("Ack"), env=env)
    assert code == 0, err
    assert "is cancelled as this command exits" in err, err
