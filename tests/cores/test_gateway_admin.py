"""Through the Supervisor and the real gateway process: an operator's ``tradsys admin``
commands reach the running gateway over its admin socket and take effect at once -- a
symbol halted and resumed, an account's kill switch on and off, account limits reloaded
from the edited config file -- and every refusal names its reason and changes nothing."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from tests.client.edge_rig import KEYS
from tests.cores.test_gateway_e2e import e2e_config_text
from tradsys import cli
from tradsys.client.events import Ack, Cancelled
from tradsys.client.marketdata import MarketDataClient
from tradsys.client.md_feed import StatusChange
from tradsys.client.orders import OrderClient, OrderRejected
from tradsys.config import load_config
from tradsys.cores.gateway_admin import Reload, admin_socket_path
from tradsys.cores.sidecar import read_announcement
from tradsys.cores.supervisor import Supervisor, SupervisorError
from tradsys.matching import Phase, StatusReason
from tradsys.wire import RejectReason

pytestmark = pytest.mark.multiprocess


def _config_text(instance: str, data_dir: Path, max_order_qty: int = 0) -> str:
    return e2e_config_text(instance, data_dir, lambda i: f"max_order_qty = {max_order_qty}\n")


class Instance:
    """A running instance, its config file, and an admin command line against it."""

    def __init__(self, path: Path, sup: Supervisor) -> None:
        self.path = path
        self.sup = sup
        ann = read_announcement(sup.config, "gateway")
        assert ann is not None
        self.unix_socket = str(ann["unix_socket"])

    def admin(self, *args: str) -> int:
        return cli.main(["admin", *args, "--config", str(self.path)])


def _with_md(text: str) -> str:
    """The config with its market-data sidecar on (ports the kernel picks)."""
    return text.replace(
        "[md]\nenabled = false\n",
        '[md]\npublish = ["tcp://127.0.0.1:0"]\nsnapshot = "tcp://127.0.0.1:0"\n',
    )


def _start(path: Path, text: str, kind: type[Instance] = Instance) -> Iterator[Instance]:
    path.write_text(text)
    sup = Supervisor(load_config(str(path)), log=lambda line: None)
    sup.start()
    try:
        yield kind(path, sup)
    finally:
        sup.stop()


@pytest.fixture
def running(instance: str, tmp_path: Path) -> Iterator[Instance]:
    yield from _start(tmp_path / "instance.toml", _config_text(instance, tmp_path / "data"))


@pytest.fixture
def running_md(instance: str, tmp_path: Path) -> Iterator[Instance]:
    text = _with_md(_config_text(instance, tmp_path / "data"))
    yield from _start(tmp_path / "instance.toml", text)


def _rejected(client: OrderClient, qty: int, symbol: str = "ACME") -> RejectReason | None:
    """The reject reason of a buy of qty, or None if it was acknowledged."""
    try:
        ev = client.wait_for(client.submit(symbol, "buy", qty, 90))
    except OrderRejected as exc:
        return RejectReason(exc.reason)
    assert isinstance(ev, Ack), ev
    return None


def test_halt_and_resume_a_symbol(running: Instance, capsys: pytest.CaptureFixture[str]) -> None:
    with OrderClient.connect(running.unix_socket, account_id=1, api_key=KEYS[1]) as alice:
        assert _rejected(alice, 1) is None
        assert running.admin("halt", "ACME") == 0
        out = capsys.readouterr().out
        assert "halt sent for ACME" in out
        assert "not confirmed: no market-data sidecar runs" in out
        assert _rejected(alice, 1) == RejectReason.HALTED
        assert _rejected(alice, 1, "ZETA") is None  # the other symbol trades on
        assert running.admin("resume", "--all") == 0
        assert _rejected(alice, 1) is None


def test_kill_switch_on_and_off(running: Instance) -> None:
    with OrderClient.connect(running.unix_socket, account_id=1, api_key=KEYS[1]) as alice:
        resting = alice.submit("ACME", "buy", 3, 90)
        alice.wait_for(resting)
        assert running.admin("kill", "acct1") == 0
        assert isinstance(alice.wait_for(resting, (Cancelled,)), Cancelled)
        assert _rejected(alice, 1) == RejectReason.KILL_SWITCH
        with OrderClient.connect(running.unix_socket, account_id=2, api_key=KEYS[2]) as bob:
            assert _rejected(bob, 1) is None  # only alice's account
        assert running.admin("kill", "acct1", "--off") == 0
        assert _rejected(alice, 1) is None


def test_kill_switches_outlive_the_run_that_set_them(
    instance: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stop and a new `tradsys run` (or a crash the systemd unit restarts) keep every
    switch an operator left on; before, a new run lifted them without a word. Each run is
    a `tradsys run` process of its own: a run is named by its supervisor's process."""
    from tests.cores.run_instance import RunningInstance

    path = tmp_path / "instance.toml"
    path.write_text(_config_text(instance, tmp_path / "data"))
    config = load_config(str(path))

    def admin(*args: str) -> int:
        return cli.main(["admin", *args, "--config", str(path)])

    def run() -> tuple[RunningInstance, str]:
        inst = RunningInstance(path)
        inst.ready()
        ann = read_announcement(config, "gateway")
        assert ann is not None
        return inst, str(ann["unix_socket"])

    inst, _ = run()
    try:
        assert admin("kill", "acct1") == 0 and admin("kill", "--all") == 0
        assert cli.main(["status", "--config", str(path), "--interval", "0.01"]) == 0
        said = capsys.readouterr().out
        assert "kill switches: every account; account(s) 1" in said.splitlines(), said
        assert inst.stop() == 0
        inst, sock = run()
        said = "kill switches on, as an operator left them: every account; account(s) 1"
        assert said in "".join(inst.lines)  # before it was ready
        with (
            OrderClient.connect(sock, account_id=1, api_key=KEYS[1]) as alice,
            OrderClient.connect(sock, account_id=2, api_key=KEYS[2]) as bob,
        ):
            assert _rejected(alice, 1) == RejectReason.KILL_SWITCH
            assert _rejected(bob, 1) == RejectReason.KILL_SWITCH  # the global one
            assert admin("kill", "--all", "--off") == 0
            assert _rejected(bob, 1) is None
            assert _rejected(alice, 1) == RejectReason.KILL_SWITCH  # its own is still on
            assert admin("kill", "acct1", "--off") == 0
        assert inst.stop() == 0
        inst, sock = run()
        with OrderClient.connect(sock, account_id=1, api_key=KEYS[1]) as alice:
            assert _rejected(alice, 1) is None  # turned off: off for good
        assert inst.stop() == 0
    finally:
        inst.kill_all()


def test_reload_applies_the_edited_limits(
    running: Instance, capsys: pytest.CaptureFixture[str]
) -> None:
    with OrderClient.connect(running.unix_socket, account_id=1, api_key=KEYS[1]) as alice:
        assert _rejected(alice, 10) is None
        config = running.sup.config
        running.path.write_text(_config_text(config.engine.instance, config.engine.data_dir, 5))
        assert running.admin("reload") == 0
        assert f"{len(KEYS)} account(s) reloaded" in capsys.readouterr().out
        assert _rejected(alice, 10) == RejectReason.MAX_ORDER_QTY
        assert _rejected(alice, 5) is None
        # a limit the gateway refuses: nothing is applied, the reason is printed
        running.path.write_text(_config_text(config.engine.instance, config.engine.data_dir, -1))
        assert running.admin("reload") == 1
        assert "max_order_qty" in capsys.readouterr().err
        assert _rejected(alice, 10) == RejectReason.MAX_ORDER_QTY


def test_a_reload_names_the_changes_it_did_not_apply(
    running: Instance, capsys: pytest.CaptureFixture[str]
) -> None:
    """Audit W: a file that also changed engine.wait and an instrument's band said
    "reloaded" and nothing more, and none of it applied."""
    config = running.sup.config
    text = _config_text(config.engine.instance, config.engine.data_dir)
    running.path.write_text(text)
    assert running.admin("reload") == 0
    assert capsys.readouterr().err == ""  # the same file: nothing left unapplied
    edited = text.replace("[engine]\n", '[engine]\nwait = "spin-yield"\n', 1)
    edited = edited.replace('symbol = "ZETA"\n', 'symbol = "ZETA"\nband_bps = 300\n', 1)
    assert edited.count("spin-yield") == 1 and edited.count("band_bps = 300") == 1
    running.path.write_text(edited)
    assert running.admin("reload") == 0
    captured = capsys.readouterr()
    assert "account(s) reloaded" in captured.out
    assert "not applied, these take a restart" in captured.err
    assert "  engine.wait\n" in captured.err
    assert "  instrument ZETA: band_bps\n" in captured.err
    assert "account" not in captured.err.split("sections reload):")[1]


def test_refusals_name_their_reason(running: Instance, capsys: pytest.CaptureFixture[str]) -> None:
    assert running.admin("halt", "NOPE") == 1
    assert "unknown symbol 'NOPE'" in capsys.readouterr().err
    assert running.admin("kill", "nobody") == 1
    assert "no account 'nobody'" in capsys.readouterr().err
    assert _raw(running, b'{"op": "explode"}\n').startswith(b'{"ok":false,"error":"malformed')
    # the gateway checks what it is sent, whoever sent it: a negative limit is refused
    bad = msgspec.json.encode(
        Reload([msgspec.structs.replace(running.sup.config.accounts[0], max_order_qty=-1)])
    )
    assert b"max_order_qty" in _raw(running, bad + b"\n")
    with OrderClient.connect(running.unix_socket, account_id=1, api_key=KEYS[1]) as alice:
        assert _rejected(alice, 1) is None  # nothing changed


def test_a_reload_with_one_limit_past_64_bits_changes_nothing(
    running: Instance, capsys: pytest.CaptureFixture[str]
) -> None:
    """One account's new limit is valid, the next one's does not fit the pump's int64:
    the whole request is refused by name, and the first account's limit is not applied
    either (before, it was, with no reply, until a gateway restart took it back)."""
    acc1, acc2 = running.sup.config.accounts[:2]
    request = Reload(
        [
            msgspec.structs.replace(acc1, max_order_qty=50),
            msgspec.structs.replace(acc2, max_order_qty=2**63),
        ]
    )
    reply = msgspec.json.decode(_raw(running, msgspec.json.encode(request) + b"\n"))
    assert reply["ok"] is False and "max_order_qty must be in 0..2^63-1" in reply["error"]
    with OrderClient.connect(running.unix_socket, account_id=1, api_key=KEYS[1]) as alice:
        assert _rejected(alice, 51) is None  # acct1 still has no max_order_qty
    # the same edit in the file: `tradsys admin reload` refuses it before sending
    engine = running.sup.config.engine
    limits = lambda i: f"max_order_qty = {2**63 if i == 2 else 50}\n"  # noqa: E731
    running.path.write_text(e2e_config_text(engine.instance, Path(engine.data_dir), limits))
    assert running.admin("reload") == 1
    assert "account 2 ('acct2'): max_order_qty must be in 0..2^63-1" in capsys.readouterr().err


def test_an_account_a_reload_left_out_is_still_reachable(
    running: Instance, capsys: pytest.CaptureFixture[str]
) -> None:
    """An account missing from a reloaded file keeps trading with its limits (README), so
    the operator's kill switch and mass cancel must still find it, by name or by id."""
    config = running.sup.config
    text = _config_text(config.engine.instance, config.engine.data_dir)
    without_acct2 = (
        text[: text.index("[[account]]\nid = 2\n")] + text[text.index("[[account]]\nid = 3\n") :]
    )
    running.path.write_text(without_acct2)
    assert running.admin("reload") == 0
    with OrderClient.connect(running.unix_socket, account_id=2, api_key=KEYS[2]) as bob:
        resting = bob.submit("ACME", "buy", 3, 90)
        bob.wait_for(resting)
        assert running.admin("mass-cancel", "acct2") == 0
        assert isinstance(bob.wait_for(resting, (Cancelled,)), Cancelled)
        assert running.admin("kill", "2") == 0
        assert "kill switch of account 2 (acct2) on" in capsys.readouterr().out
        assert _rejected(bob, 1) == RejectReason.KILL_SWITCH
        assert running.admin("kill", "acct2", "--off") == 0
        assert _rejected(bob, 1) is None
    assert running.admin("kill", "acct9") == 1
    err = capsys.readouterr().err
    assert "no account 'acct9' at the gateway; it has: acct1 (1), acct2 (2), acct3 (3)" in err


def test_a_symbol_moved_to_another_shard_is_refused_at_start(instance: str, tmp_path: Path) -> None:
    """ACME's book is in shard 0's journal; a configuration that puts ACME on shard 1
    would leave its resting orders where no command can reach them (the gateway routes by
    the configuration). The start is refused, naming the symbol and what to do."""
    path = tmp_path / "instance.toml"
    text = _config_text(instance, tmp_path / "data")
    path.write_text(text)
    with Supervisor(load_config(str(path)), log=lambda line: None) as sup:
        running = Instance(path, sup)
        with OrderClient.connect(running.unix_socket, account_id=1, api_key=KEYS[1]) as alice:
            assert _rejected(alice, 3) is None  # a resting bid on ACME, shard 0
    moved = text.replace('symbols = ["ACME"]', "").replace(
        "[[shard]]\nid = 1\n", '[[shard]]\nid = 1\nsymbols = ["ACME"]\n'
    )
    assert moved != text
    path.write_text(moved)
    sup = Supervisor(load_config(str(path)), log=lambda line: None)
    with pytest.raises(SupervisorError, match=r"ACME's book .* is on shard 0, and the config"):
        sup.start()
    sup.stop()


def test_an_operator_halt_reaches_market_data_subscribers(
    instance: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole way: `tradsys admin halt ACME` -> the gateway -> the shard's engine -> the
    md sidecar -> a subscriber's StatusChange and its book's phase; then resume."""
    text = _with_md(_config_text(instance, tmp_path / "data"))
    path = tmp_path / "instance.toml"
    path.write_text(text)
    with Supervisor(load_config(str(path)), log=lambda line: None) as sup:
        md = read_announcement(sup.config, "md")
        assert md is not None
        changes: list[StatusChange] = []
        with MarketDataClient(
            md["publish"][0], md["snapshot"], ["ACME"], on_status=changes.append
        ) as feed:
            assert feed.run_until(lambda: feed.books["ACME"].synced, 30.0)
            assert feed.books["ACME"].phase == Phase.CONTINUOUS
            running = Instance(path, sup)
            assert running.admin("halt", "ACME") == 0
            assert feed.run_until(lambda: feed.books["ACME"].phase == Phase.HALTED, 30.0)
            assert running.admin("resume", "ACME") == 0
            assert feed.run_until(lambda: feed.books["ACME"].phase == Phase.CONTINUOUS, 30.0)
    moves = [(Phase(c.phase).name, c.reason) for c in changes if c.reason is not None]
    assert moves == [("HALTED", StatusReason.HALT), ("CONTINUOUS", StatusReason.RESUME)]


def test_a_phase_control_is_confirmed_on_the_status_channel(
    running_md: Instance, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a market-data sidecar running, `tradsys admin` says what the engine did with
    a phase control, per symbol -- and exits 1 when the engine did not apply it. A control
    that finds the symbol where it leads already changes nothing and is no error."""
    for control in ("resume", "auction-uncross", "session-open"):
        assert running_md.admin(control, "ACME") == 0, control
        got = capsys.readouterr()
        assert "ACME: already CONTINUOUS, nothing to do" in got.out, control
        assert "still" not in got.err and "(was CONTINUOUS)" not in got.out
    assert running_md.admin("halt", "ACME") == 0
    assert "ACME: HALTED (was CONTINUOUS)" in capsys.readouterr().out
    # AUCTION_UNCROSS applies only to an auction call: sent, but ACME stays halted
    assert running_md.admin("auction-uncross", "ACME") == 1
    got = capsys.readouterr()
    assert "auction-uncross sent for ACME" in got.out
    assert "ACME: still HALTED after 2 s: the engine did not apply auction-uncross" in got.err
    assert running_md.admin("halt", "ACME") == 0
    assert "ACME: already HALTED, nothing to do" in capsys.readouterr().out
    assert running_md.admin("resume", "--all") == 0
    out = capsys.readouterr().out
    assert "ACME: CONTINUOUS (was HALTED)" in out
    assert "ZETA: already CONTINUOUS, nothing to do" in out
    with OrderClient.connect(running_md.unix_socket, account_id=1, api_key=KEYS[1]) as alice:
        assert _rejected(alice, 1) is None  # it trades again


def _status_until(running: Instance, capsys: pytest.CaptureFixture[str], *wanted: str) -> str:
    """`tradsys status` until its output holds every line of ``wanted`` (the sidecars
    rewrite their stats files about once a second), within a deadline."""
    deadline = time.monotonic() + 30
    while True:
        assert cli.main(["status", "--config", str(running.path), "--interval", "0.01"]) == 0
        out = capsys.readouterr().out
        if all(line in out.splitlines() for line in wanted):
            return out
        assert time.monotonic() < deadline, out


def test_status_shows_sessions_live_orders_and_the_symbols_not_trading(
    running_md: Instance, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator sees a halt someone left on, and who is connected, in `tradsys
    status` (before, only the admin command's own confirmation said either)."""
    _status_until(running_md, capsys, "trading phases: every symbol continuous")
    assert running_md.admin("halt", "ACME") == 0
    with OrderClient.connect(running_md.unix_socket, account_id=1, api_key=KEYS[1]) as alice:
        alice.wait_for(alice.submit("ZETA", "buy", 2, 40))
        _status_until(
            running_md,
            capsys,
            "trading phases: HALTED ACME (the rest continuous)",
            "gateway sessions: 1 (1 colocated, 0 TCP), 1 live order(s)",
        )
    assert running_md.admin("resume", "ACME") == 0
    _status_until(running_md, capsys, "trading phases: every symbol continuous")


def test_a_mixed_case_symbol_is_controlled_by_its_name(
    instance: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Symbol names are case-sensitive in the config (`Zeta.b` is valid). Before, `tradsys
    admin halt Zeta.b` upper-cased the name and refused it as unknown, naming it among
    the symbols it routes: only --all reached the symbol. Any case still finds a name
    that only one symbol has."""
    text = _with_md(_config_text(instance, tmp_path / "data")).replace('"ZETA"', '"Zeta.b"')
    with contextlib.contextmanager(_start)(tmp_path / "instance.toml", text) as running:
        assert running.admin("halt", "Zeta.b") == 0
        assert "Zeta.b: HALTED (was CONTINUOUS)" in capsys.readouterr().out
        assert running.admin("resume", "zeta.B") == 0
        assert "Zeta.b: CONTINUOUS (was HALTED)" in capsys.readouterr().out
        with OrderClient.connect(running.unix_socket, account_id=1, api_key=KEYS[1]) as alice:
            assert _rejected(alice, 1, "zeta.b") is None


def test_auction_start_in_a_volatility_auction_says_it_reopens_by_itself(
    instance: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tripped breaker's call ends by itself; `auction-start` then changes nothing, and
    says so, with the way to a call that lasts until an auction-uncross."""
    breaker = "reference_price = 100\nbreaker_bps = 500\nbreaker_halt_ns = 600000000000\n"
    text = _with_md(_config_text(instance, tmp_path / "data")).replace(
        "reference_price = 100\n", breaker, 1
    )
    with (
        contextlib.contextmanager(_start)(tmp_path / "instance.toml", text) as running,
        OrderClient.connect(running.unix_socket, account_id=1, api_key=KEYS[1]) as alice,
        OrderClient.connect(running.unix_socket, account_id=2, api_key=KEYS[2]) as bob,
    ):
        for price in (100, 110):  # a trade at 100, then one 10 % away trips the breaker
            alice.wait_for(alice.submit("ACME", "sell", 1, price))
            bob.wait_for(bob.submit("ACME", "buy", 1, price))
        assert running.admin("auction-start", "ACME") == 0
        out = capsys.readouterr().out
        assert "ACME: already AUCTION, nothing to do" in out
        assert "volatility auction's and reopens by itself" in out
        assert running.admin("halt", "ACME") == 0
        assert running.admin("auction-start", "ACME") == 0
        out = capsys.readouterr().out
        assert "ACME: AUCTION (was HALTED)" in out and "reopens by itself" not in out


def _raw(running: Instance, request: bytes) -> bytes:
    """One request written straight to the admin socket; the reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(admin_socket_path(running.sup.config)))
        sock.sendall(request)
        return sock.makefile("rb").readline()


def test_no_running_instance_is_a_user_error(
    tmp_path: Path, instance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "instance.toml"
    path.write_text(_config_text(instance, tmp_path / "data"))
    assert cli.main(["admin", "halt", "ACME", "--config", str(path)]) == 1
    assert "no gateway answers" in capsys.readouterr().err
