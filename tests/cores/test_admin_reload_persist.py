"""A reload is persisted (the instance's effective config, which a restarted gateway
starts from) before it is applied: one that cannot be written is refused whole, and one
the core refuses leaves the file as it was. (Before, a failed write left the new limits
live with no reply to the operator, until a gateway restart silently reverted them.)"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import msgspec

from tests.client.edge_rig import edge_config
from tradsys.config import Config
from tradsys.cores.gateway_admin import AdminEdge, Reload
from tradsys.cores.sidecar import CONFIG_FILE, read_effective_config, write_effective_config
from tradsys.gateway import GatewayError


def _edge(config: Config, reload: Any) -> tuple[AdminEdge, Any]:
    core = types.SimpleNamespace(reload_accounts=reload)
    credentials = types.SimpleNamespace(accounts={a.id: a for a in config.accounts})
    edge = AdminEdge(config, core, credentials, persist=write_effective_config)  # type: ignore[arg-type]
    return edge, credentials


def _request(config: Config) -> bytes:
    new = msgspec.structs.replace(config.accounts[0], credit_limit=12_345)
    return msgspec.json.encode(Reload([new])) + b"\n"


def _credit_on_disk(config: Config) -> int:
    saved = read_effective_config(config.instance_dir / CONFIG_FILE)
    return next(a.credit_limit for a in saved.accounts if a.id == config.accounts[0].id)


def test_a_reload_that_cannot_be_written_is_refused_whole(instance: str, tmp_path: Path) -> None:
    config = edge_config(instance, tmp_path)
    write_effective_config(config)
    (config.instance_dir / "config.tmp").mkdir()  # stands in for a full or read-only disk
    applied: list[Config] = []
    edge, credentials = _edge(config, applied.append)
    reply = edge.apply(_request(config))
    assert reply["ok"] is False and "cannot write the instance's effective config" in reply["error"]
    assert applied == [] and credentials.accounts[1].credit_limit == 0
    assert _credit_on_disk(config) == 0


def test_a_reload_the_core_refuses_leaves_the_file_as_it_was(instance: str, tmp_path: Path) -> None:
    config = edge_config(instance, tmp_path)
    write_effective_config(config)

    def refuse(reloaded: Config) -> None:
        raise GatewayError("max_order_qty: must be >= 0")

    edge, _ = _edge(config, refuse)
    reply = edge.apply(_request(config))
    assert reply["ok"] is False
    assert _credit_on_disk(config) == 0


def test_an_applied_reload_is_on_disk(instance: str, tmp_path: Path) -> None:
    config = edge_config(instance, tmp_path)
    write_effective_config(config)
    edge, _ = _edge(config, lambda reloaded: None)
    assert edge.apply(_request(config))["ok"] is True
    assert _credit_on_disk(config) == 12_345


def test_the_effective_config_is_owner_only(instance: str, tmp_path: Path) -> None:
    """It holds every account's api_key_sha256."""
    config = edge_config(instance, tmp_path)
    path = write_effective_config(config)
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_hand_made_reload_is_held_to_the_config_rules(instance: str, tmp_path: Path) -> None:
    """A request written by hand, not by `tradsys admin reload` from a checked file, gets
    the whole config check: a malformed key hash or an id given twice is refused by name,
    and neither the core, the credentials nor the file on disk change."""
    config = edge_config(instance, tmp_path)
    write_effective_config(config)
    applied: list[Config] = []
    edge, credentials = _edge(config, applied.append)
    account = msgspec.structs.replace(config.accounts[0], credit_limit=12_345)
    bad_key = msgspec.structs.replace(account, api_key_sha256="not-a-hash")
    for accounts, why in (
        ([bad_key], "api_key_sha256 must be 64 lowercase hex digits"),
        ([account, account], "the id is used twice"),
    ):
        reply = edge.apply(msgspec.json.encode(Reload(accounts)) + b"\n")
        assert reply["ok"] is False and why in reply["error"], reply
    assert applied == [] and credentials.accounts[1].credit_limit == 0
    assert _credit_on_disk(config) == 0
