"""`tradsys order` against the real edge (fake core), found through its announcement."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.client.edge_rig import KEYS, EdgeRig, edge_toml
from tradsys.cores.sidecar import announce_ready, withdraw


def order_cli(
    edge: EdgeRig, tmp_path: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess:
    config = tmp_path / "tradsys.toml"
    config.write_text(edge_toml(edge.config.engine.instance, Path(edge.config.engine.data_dir)))
    announce_ready(edge.config, "gateway", unix_socket=edge.unix, tcp=edge.tcp)
    env = {**os.environ, "TRADSYS_API_KEY": KEYS[1]}
    try:
        return subprocess.run(
            [sys.executable, "-m", "tradsys.cli", "order", "--config", str(config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    finally:
        withdraw(edge.config, "gateway")


def test_submit_prints_the_ack_then_a_reject_exits_1(edge: EdgeRig, tmp_path: Path) -> None:
    ok = order_cli(
        edge, tmp_path, "--account", "acct1", "submit", "ACME", "buy", "3", "--price", "99"
    )
    assert ok.returncode == 0, ok.stderr
    assert "Ack" in ok.stdout and "ACME" in ok.stdout and "quantity=3" in ok.stdout
    bad = order_cli(
        edge, tmp_path, "--account", "1", "--tcp", "submit", "ACME", "buy", "0", "--price", "99"
    )
    assert bad.returncode == 1 and "Reject" in bad.stdout and "INVALID_QUANTITY" in bad.stdout
    assert "quantity not allowed" in bad.stdout


def test_user_errors_are_named(edge: EdgeRig, tmp_path: Path) -> None:
    sym = order_cli(edge, tmp_path, "--account", "acct1", "submit", "NOPE", "buy", "1")
    assert sym.returncode == 1 and "unknown symbol 'NOPE'" in sym.stderr
    acct = order_cli(edge, tmp_path, "--account", "zed", "mass-cancel")
    assert acct.returncode == 1 and "no account 'zed'" in acct.stderr
    key = order_cli(edge, tmp_path, "--account", "acct2", "mass-cancel")  # alice's key
    assert key.returncode == 1 and "bad credentials" in key.stderr


def test_shell_keeps_one_session(edge: EdgeRig, tmp_path: Path) -> None:
    script = (
        "submit ACME sell 5 --price 101 --order-id 7\n"
        "bogus\n"
        "replace 7 ACME --price 102 --quantity 4\n"
        "cancel 7 ACME\n"
    )
    out = order_cli(edge, tmp_path, "--account", "acct1", "shell", stdin=script)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("Ack") and "order 7 ACME" in lines[0]
    assert lines[1].startswith("error: argument verb: invalid choice: 'bogus'")
    assert lines[2].startswith("Replaced") and "price=102" in lines[2]
    assert lines[3].startswith("Cancelled") and "reason=USER" in lines[3]


def test_status_lists_the_accounts_live_orders(edge: EdgeRig, tmp_path: Path) -> None:
    script = (
        "submit ACME sell 5 --price 101 --order-id 9\n"
        "submit ACME sell 3 --price 102 --order-id 8\n"
        "status\n"
        "status NOPE\n"
    )
    out = order_cli(edge, tmp_path, "--account", "acct1", "shell", stdin=script)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if not line.startswith("Ack")]
    assert lines[:3] == [
        "order 8 ACME sell price=102 quantity=3 leaves=3 OPEN",
        "order 9 ACME sell price=101 quantity=5 leaves=5 OPEN",
        "2 live order(s) of the account",
    ]
    assert "unknown symbol 'NOPE'" in out.stdout + out.stderr


def test_session_options_also_work_after_the_verb(edge: EdgeRig, tmp_path: Path) -> None:
    """As the README writes it: `tradsys order submit ACME buy 3 --price 99 --account acct1
    --tcp` — and an option given before the verb is not overwritten by the verb's default."""
    after = order_cli(
        edge, tmp_path, "submit", "ACME", "buy", "3", "--price", "99", "--account", "acct1", "--tcp"
    )
    assert after.returncode == 0, after.stderr
    assert "Ack" in after.stdout and "quantity=3" in after.stdout
    before = order_cli(edge, tmp_path, "--account", "acct1", "--tcp", "mass-cancel", "ACME")
    assert before.returncode == 0, before.stderr
    missing = order_cli(edge, tmp_path, "mass-cancel")
    assert missing.returncode == 1 and "--account NAME" in missing.stderr


def test_a_bad_config_is_a_user_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[engine]\nbogus_key = 1\n")
    out = subprocess.run(
        [sys.executable, "-m", "tradsys.cli", "order", "--config", str(config), "mass-cancel"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(f"tradsys order: {config}") and "bogus_key" in out.stderr
    assert "internal error" not in out.stderr


def test_a_value_out_of_its_fields_range_is_a_user_error(edge: EdgeRig, tmp_path: Path) -> None:
    args = ["--account", "acct1", "submit", "ACME", "buy", "1", "--price", "99"]
    out = order_cli(edge, tmp_path, *args, "--order-id", "-1")
    assert out.returncode == 1, out.stderr
    assert "tradsys order:" in out.stderr and "order_id=-1" in out.stderr
    assert "internal error" not in out.stderr
    cancel = order_cli(edge, tmp_path, "--account", "acct1", "cancel", "-1", "ACME")
    assert cancel.returncode == 1 and "order_id=-1" in cancel.stderr, cancel.stderr


def test_help_in_the_shell_prints_the_help_and_the_shell_goes_on(
    edge: EdgeRig, tmp_path: Path
) -> None:
    script = "submit --help\ncancel -h\nsubmit ACME sell 5 --price 101 --order-id 7\n"
    out = order_cli(edge, tmp_path, "--account", "acct1", "shell", stdin=script)
    assert out.returncode == 0, out.stderr
    assert "usage:  submit [-h]" in out.stdout and "usage:  cancel [-h]" in out.stdout
    assert "--order-id ORDER_ID" in out.stdout
    assert out.stdout.splitlines()[-1].startswith("Ack") and "order 7 ACME" in out.stdout


def test_only_a_reject_of_order_id_0_is_the_commands_own() -> None:
    """A mass cancel (or status request) is sent as order 0 and its reject carries 0;
    an order restored without its client id is order 0 too, and is an earlier
    session's: its cancel was printed as the command's own."""
    from tradsys.cli_order import _SentOrders
    from tradsys.client.events import Cancelled, Reject
    from tradsys.wire import CancelReason, RejectReason

    sent = _SentOrders()
    sent.ours.update({0, 7})
    assert sent.owns(Reject(0, 1, RejectReason.UNKNOWN_SYMBOL))
    assert not sent.owns(Cancelled(0, 1, CancelReason.MASS_CANCEL, 5))
    assert sent.owns(Cancelled(7, 1, CancelReason.USER, 5))
    assert not sent.owns(Cancelled(8, 1, CancelReason.USER, 5))
    assert not _SentOrders().owns(Reject(0, 1, RejectReason.UNKNOWN_SYMBOL))
