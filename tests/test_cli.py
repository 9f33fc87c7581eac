"""The `tradsys` command's own messages: what a newcomer sees when something is not where
the command looks, and the help texts. No instance runs here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.accounts_toml import account_tables
from tradsys.cli import build_parser, main
from tradsys.wire import TimeInForce

KEYS = {1: "alice-key"}


def _config(tmp_path: Path, instance: str, data_dir: str = "var") -> Path:
    path = tmp_path / "tradsys.toml"
    path.write_text(
        f'[engine]\ninstance = "{instance}"\ndata_dir = "{data_dir}"\n\n[[shard]]\nid = 0\n\n'
        '[[instrument]]\nsymbol = "ACME"\nsymbol_id = 1\nreference_price = 100\n\n'
        + account_tables(KEYS)
    )
    return path


def _tradsys(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRADSYS_API_KEY": KEYS[1]}
    return subprocess.run(
        [sys.executable, "-m", "tradsys.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_relative_data_dir_is_named_absolute_in_not_running_messages(
    tmp_path: Path, instance: str
) -> None:
    """Run from another directory than `tradsys run`, a relative data_dir is looked for
    there: the message says where it looked and why."""
    config = _config(tmp_path, instance)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    looked = f"{elsewhere / 'var' / instance}"
    for args in (
        ["status", "--config", str(config)],
        ["latency", "--config", str(config)],
        ["order", "--config", str(config), "--account", "acct1", "mass-cancel"],
        ["admin", "halt", "ACME", "--config", str(config)],
    ):
        out = _tradsys(elsewhere, *args)
        assert out.returncode == 1, (args, out.stderr)
        assert "relative to the current directory" in out.stderr, (args, out.stderr)
        assert looked in out.stderr, (args, out.stderr)
        assert "where `tradsys run` was started" in out.stderr, (args, out.stderr)
    absolute = _config(tmp_path, instance, str(tmp_path / "data"))
    out = _tradsys(elsewhere, "status", "--config", str(absolute))
    assert out.returncode == 1 and "relative to the current directory" not in out.stderr


def test_python_dash_m_reports_a_user_error_as_one(tmp_path: Path, instance: str) -> None:
    """`python -m tradsys.cli`: the command modules' UserError is caught as the console
    script catches it (exit 1), not reported as an internal error (exit 2)."""
    out = _tradsys(
        tmp_path, "admin", "kill", "nobody", "--config", str(_config(tmp_path, instance))
    )
    assert out.returncode == 1, out.stderr
    assert "no gateway answers" in out.stderr and "internal error" not in out.stderr


def test_replay_of_an_instance_directory_names_a_shard_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shard = tmp_path / "var" / "default" / "shard-0"
    shard.mkdir(parents=True)
    assert main(["replay", str(tmp_path / "var" / "default")]) == 1
    err = capsys.readouterr().err
    assert f"no journal here ({tmp_path / 'var' / 'default'})" in err
    assert f"give a shard directory, such as {shard}" in err
    assert "shards none" not in err
    assert main(["replay", str(shard)]) == 1
    assert f"no journal or snapshot in {shard} yet" in capsys.readouterr().err


def test_replay_of_another_shard_than_the_directory_holds_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shard = tmp_path / "shard-0"
    shard.mkdir()
    (shard / "journal-000-00000000000000000001.tsj").write_bytes(b"")
    assert main(["replay", str(shard), "--shard", "3"]) == 1  # it said "0 live orders"
    assert "holds no journal or snapshot of shard 3, only of shard 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["status", "--interval", "-1"], "argument --interval: '-1': give a number above 0"),
        (["md", "tail", "ACME", "--depth", "-2"], "'-2': give a whole number at least 1"),
        (["replay", "x", "--upto", "-5"], "argument --upto: '-5': give a whole number at least 0"),
        (["order", "submit", "ACME", "buy", "1", "--wait", "nan"], "'nan': give a number"),
        (["tune", "jitter", "--seconds", "0"], "'0': give a number above 0"),
        (["tune", "stalls", "--floor-ms", "abc"], "'abc' is not a number"),
    ],
)
def test_a_number_out_of_range_is_a_usage_error_naming_the_option(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each was an internal error (exit 2, a ValueError) or a quietly wrong answer."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 1
    assert named in capsys.readouterr().err


def test_shm_ls_says_when_there_is_nothing(
    instance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["shm", "ls", "--instance", instance]) == 0
    assert capsys.readouterr().out == f"no segments of instance {instance!r}\n"
    assert main(["shm", "reclaim", "--instance", instance]) == 0
    assert capsys.readouterr().out == "no stale segments\n"


def _help(*args: str) -> None:
    """Print a command's help (argparse exits after it)."""
    with pytest.raises(SystemExit):
        build_parser().parse_args([*args, "--help"])


def test_admin_all_says_what_it_means_per_command(capsys: pytest.CaptureFixture[str]) -> None:
    _help("admin", "mass-cancel")
    mass_cancel = " ".join(capsys.readouterr().out.split())
    assert "--all every account" in mass_cancel and "global switch" not in mass_cancel
    _help("admin", "kill")
    assert "--all every account (the global switch)" in " ".join(capsys.readouterr().out.split())


def test_a_market_order_defaults_to_ioc_and_help_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tradsys.cli_order import _send_verb, _SentOrders
    from tradsys.client.commands import order_record
    from tradsys.config import load_config

    class Recorder:
        """Stands in for the session: keeps the record each submit would send."""

        def submit(self, symbol_id, side, quantity, price=None, *, order_id=None, **kw):  # type: ignore[no-untyped-def]
            self.sent = order_record(order_id or 1, symbol_id, side, quantity, price, **kw)
            return order_id or 1

    config = load_config(_config(tmp_path, "clitif"))
    parser = build_parser()

    def tif(*extra: str) -> TimeInForce:
        client: Any = Recorder()
        args = parser.parse_args(["order", "submit", "ACME", "buy", "1", *extra])
        _send_verb(args, config, client, _SentOrders())
        return TimeInForce(client.sent["tif"][0])

    assert tif() == TimeInForce.IOC
    assert tif("--price", "9") == TimeInForce.GTC
    assert tif("--stop", "9") == TimeInForce.GTC
    assert tif("--tif", "fok") == TimeInForce.FOK
    _help("order", "submit")
    assert "ioc for a market order" in " ".join(capsys.readouterr().out.split())


def test_a_reader_that_goes_away_is_no_internal_error() -> None:
    """`tradsys shm ls | head -1`: once the reader has gone, stdout is a broken pipe; the
    command used to end with "internal error: BrokenPipeError" and exit 2."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # gone before the command writes its first line
    try:
        out = subprocess.run(
            [sys.executable, "-m", "tradsys.cli", "shm", "ls"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert (out.returncode, out.stderr) == (0, "")
