"""A start whose configuration does not fit the state the instance left on disk is
refused before anything starts, naming each misfit, and changes nothing on disk; the
configuration that fits still starts. The misfits: a dropped or renumbered shard, a
symbol moved between shards, a removed symbol or account with resting orders, changed
instrument settings, a gateway table too small for the resting orders."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.client.edge_rig import KEYS
from tests.cores.test_gateway_e2e import e2e_config_text
from tradsys.client.events import Ack, Cancelled
from tradsys.client.orders import OrderClient
from tradsys.config import Config, load_config, parse_config
from tradsys.cores.sidecar import read_announcement, write_effective_config
from tradsys.cores.state_check import StateMismatchError, check_state
from tradsys.cores.supervisor import Supervisor, SupervisorError
from tradsys.journal.held import held_state, instrument_settings
from tradsys.journal.snapshots import SnapshotStore
from tradsys.matching import CEngine
from tradsys.matching.commands import new_order
from tradsys.wire import Side

# ---- the check itself, on snapshots written here ------------------------------------------


def _config(tmp_path: Path, edit: Callable[[str], str] = lambda t: t) -> Config:
    text = e2e_config_text("statecheck", tmp_path / "data")
    edited = edit(text)
    return parse_config(edited, "test")


def _write_state(config: Config, resting: dict[int, int]) -> None:
    """Each configured shard's snapshot, its books made from ``config``; ``resting``:
    symbol id -> bids to rest there."""
    for shard in config.shards:
        engine = CEngine()
        for ins in config.symbols_of(shard.id):
            engine.add_instrument(ins)
            for k in range(resting.get(ins.symbol_id, 0)):
                engine.submit(new_order(100 * ins.symbol_id + k, ins.symbol_id, 1, Side.BUY, 1, 90))
        directory = config.shard_data_dir(shard.id)
        directory.mkdir(parents=True, exist_ok=True)
        SnapshotStore(directory, shard.id).write(engine, 0)
        engine.close()


def _problems(config: Config) -> str:
    with pytest.raises(StateMismatchError) as info:
        check_state(config)
    return str(info.value)


def test_the_held_books_are_read_as_written(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _write_state(config, {1: 3})
    state = held_state(config.shard_data_dir(0), 0)
    assert state is not None
    (acme,) = state.books.values()
    assert (acme.symbol_id, acme.orders) == (1, 3)
    assert acme.settings == instrument_settings(config.instruments[0])
    assert held_state(tmp_path / "nowhere", 0) is None


def test_a_configuration_that_fits_passes(tmp_path: Path) -> None:
    check_state(_config(tmp_path))  # no state at all
    config = _config(tmp_path)
    _write_state(config, {1: 2, 2: 1})
    check_state(config)
    # a new symbol is not a misfit: its shard adds it
    check_state(
        _config(tmp_path, lambda t: t + '\n[[instrument]]\nsymbol = "NEWS"\nsymbol_id = 9\n')
    )


def test_a_removed_symbol_with_resting_orders_is_refused_an_empty_one_is_not(
    tmp_path: Path,
) -> None:
    base = _config(tmp_path)
    _write_state(base, {1: 2})
    without_zeta = lambda t: t.replace(  # noqa: E731
        '[[instrument]]\nsymbol = "ZETA"\nsymbol_id = 2\nreference_price = 50\n', ""
    )
    check_state(_config(tmp_path, without_zeta))  # ZETA's book is empty
    without_acme = lambda t: t.replace('symbols = ["ACME"]', "").replace(  # noqa: E731
        '[[instrument]]\nsymbol = "ACME"\nsymbol_id = 1\nreference_price = 100\n', ""
    )
    text = _problems(_config(tmp_path, without_acme))
    assert "shard 0's book of symbol_id 1 holds 2 resting order(s)" in text
    # a new id for the same name is the same case: the old book is out of reach
    renumbered = lambda t: t.replace('"ACME"\nsymbol_id = 1\n', '"ACME"\nsymbol_id = 7\n')  # noqa: E731
    assert "symbol_id 1 holds 2 resting order(s)" in _problems(_config(tmp_path, renumbered))


def test_a_symbol_id_renamed_under_resting_orders_is_refused(tmp_path: Path) -> None:
    """Snapshots hold ids, not names: the previous run's effective config tells that id 1
    was ACME (audit T: renamed, ACME's orders traded as the new symbol)."""
    base = _config(tmp_path)
    _write_state(base, {1: 2})
    write_effective_config(base)
    renamed = lambda t: t.replace('"ACME"', '"ACMX"')  # noqa: E731
    text = _problems(_config(tmp_path, renamed))
    assert "symbol_id 1 was ACME in the previous run and is ACMX now" in text
    assert "holds 2 resting order(s) of ACME" in text
    _write_state(base, {})  # an empty book may be renamed
    check_state(_config(tmp_path, renamed))


def test_a_moved_symbol_is_refused(tmp_path: Path) -> None:
    _write_state(_config(tmp_path), {1: 1})
    moved = lambda t: t.replace('symbols = ["ACME"]', "").replace(  # noqa: E731
        "[[shard]]\nid = 1\n", '[[shard]]\nid = 1\nsymbols = ["ACME"]\n'
    )
    text = _problems(_config(tmp_path, moved))
    assert "ACME's book (symbol_id 1, 1 resting order(s)) is on shard 0" in text
    assert "places it on shard 1" in text


def test_changed_instrument_settings_are_refused_each_named(tmp_path: Path) -> None:
    _write_state(_config(tmp_path), {})
    edited = lambda t: t.replace(  # noqa: E731
        "symbol_id = 2\nreference_price = 50\n",
        "symbol_id = 2\nreference_price = 60\ntick_size = 5\n",
    )
    text = _problems(_config(tmp_path, edited))
    assert "ZETA (symbol_id 2): tick_size 1 in its book, 5 configured" in text
    assert "reference_price 50 in its book, 60 configured" in text
    assert "ACME" not in text


def test_a_shard_the_configuration_dropped_is_refused(tmp_path: Path) -> None:
    _write_state(_config(tmp_path), {2: 1})
    one_shard = lambda t: t.replace("[[shard]]\nid = 1\n", "")  # noqa: E731
    text = _problems(_config(tmp_path, one_shard))
    assert "shard-1 holds the journal of shard 1, which the configuration no longer has" in text
    renumbered = lambda t: t.replace("[[shard]]\nid = 1\n", "[[shard]]\nid = 5\n")  # noqa: E731
    assert "configure [[shard]] id = 1 again" in _problems(_config(tmp_path, renumbered))


# ---- through real starts ------------------------------------------------------------------


def _KEEP_ORDERS(account_id: int) -> str:  # noqa: N802 -- a constant's part
    return "cancel_on_disconnect = false\n"


def _disk(data_dir: Path) -> dict[str, str]:
    """Every file under the data dir and its content's hash (logs aside: a refused
    start may say why)."""
    return {
        str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data_dir.rglob("*"))
        if p.is_file() and p.suffix != ".log"
    }


def _with_a_resting_order(instance: str, tmp_path: Path, order_id: int) -> tuple[Path, str]:
    """An instance's config file (its text too) whose state has one of acct1's orders
    resting on ACME."""
    path = tmp_path / "instance.toml"
    text = e2e_config_text(instance, tmp_path / "data", _KEEP_ORDERS)
    path.write_text(text)
    _rest_an_order(path, order_id)
    return path, text


def _rest_an_order(path: Path, order_id: int) -> None:
    with Supervisor(load_config(str(path)), log=lambda line: None) as sup:
        ann = read_announcement(sup.config, "gateway")
        assert ann is not None
        with OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1]) as alice:
            assert isinstance(
                alice.wait_for(alice.submit("ACME", "buy", 3, 90, order_id=order_id)), Ack
            )


def _cancel_it(path: Path, order_id: int) -> None:
    """Start with ``path``'s config: the order rests still, and its owner can cancel it."""
    with Supervisor(load_config(str(path)), log=lambda line: None) as sup:
        ann = read_announcement(sup.config, "gateway")
        assert ann is not None
        with OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1]) as alice:
            alice.cancel(order_id, "ACME")
            assert isinstance(alice.wait_for(order_id, (Cancelled,)), Cancelled)


def _refused(path: Path, text: str) -> str:
    path.write_text(text)
    sup = Supervisor(load_config(str(path)), log=lambda line: None)
    try:
        with pytest.raises(SupervisorError) as info:
            sup.start()
    finally:
        sup.stop()
    assert info.value.exit_code == 1
    return str(info.value)


@pytest.mark.multiprocess
def test_a_refused_move_changes_nothing_and_the_old_config_still_starts(
    instance: str, tmp_path: Path
) -> None:
    """Before, shard 1 added ACME (and snapshotted it) before shard 0 refused the move:
    from then on neither placement started."""
    path, text = _with_a_resting_order(instance, tmp_path, 41)
    before = _disk(tmp_path / "data")
    moved = text.replace('symbols = ["ACME"]', "").replace(
        "[[shard]]\nid = 1\n", '[[shard]]\nid = 1\nsymbols = ["ACME"]\n'
    )
    assert "is on shard 0, and the configuration places it on shard 1" in _refused(path, moved)
    assert _disk(tmp_path / "data") == before
    path.write_text(text)
    _cancel_it(path, 41)


@pytest.mark.multiprocess
def test_a_removed_account_with_resting_orders_is_refused(
    instance: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Before, acct1's order stayed in the book unknown to the gateway: it could fill
    and its owner was never told."""
    path, text = _with_a_resting_order(instance, tmp_path, 42)
    without_acct1 = (
        text[: text.index("[[account]]\nid = 1\n")] + text[text.index("[[account]]\nid = 2\n") :]
    )
    assert "gateway exited with code 1" in _refused(path, without_acct1)
    log = capfd.readouterr().err
    assert "live orders of accounts the configuration no longer has (account 1: 1 order(s))" in log
    assert "put the [[account]] back" in log
    path.write_text(text)
    _cancel_it(path, 42)


@pytest.mark.multiprocess
def test_too_small_a_gateway_table_names_its_key(
    instance: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path, text = _with_a_resting_order(instance, tmp_path, 43)
    with Supervisor(load_config(str(path)), log=lambda line: None) as sup:
        ann = read_announcement(sup.config, "gateway")
        assert ann is not None
        with OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1]) as alice:
            assert isinstance(alice.wait_for(alice.submit("ACME", "buy", 3, 91, order_id=44)), Ack)
    small = text.replace("[gateway]\n", "[gateway]\nmax_live_orders = 1\n")
    assert "gateway exited with code 1" in _refused(path, small)
    log = capfd.readouterr().err
    assert "2 live orders rest in the books and [gateway] max_live_orders is 1" in log
