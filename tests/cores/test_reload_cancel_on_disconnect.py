"""A hot reload of ``cancel_on_disconnect`` reaches the sessions already open: the
session follows its account's setting when it disconnects, not the one it logged in
under. (Sessions used to copy the setting at login, so an operator who turned it off to
keep an account's orders through a client restart still had them cancelled.)"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.edge_rig import KEYS
from tests.cores.test_gateway_admin import Instance, _config_text, _start
from tests.cores.test_gateway_e2e import e2e_config_text
from tests.cores.test_gateway_restart import _await_restart, _gateway_pid
from tests.gateway.test_unread_sessions import _await, _sessions_closed
from tradsys.client.events import Cancelled, Fill
from tradsys.client.orders import OrderClient

pytestmark = pytest.mark.multiprocess


@pytest.fixture
def running(instance: str, tmp_path: Path) -> Iterator[Instance]:
    yield from _start(tmp_path / "instance.toml", _config_text(instance, tmp_path / "data"))


@pytest.mark.parametrize("keep", [True, False])
def test_reloaded_cancel_on_disconnect_applies_to_an_open_session(
    running: Instance, keep: bool
) -> None:
    config = running.sup.config
    address = running.unix_socket
    with OrderClient.connect(address, account_id=1, api_key=KEYS[1]) as alice:
        resting = alice.submit("ACME", "buy", 3, 90)
        alice.wait_for(resting)
        # the demo accounts are cancel-on-disconnect; the edited config turns it off
        # (keep) or sets it on explicitly (not keep) for alice's account while she is in
        extra = f"cancel_on_disconnect = {'false' if keep else 'true'}\n"
        text = e2e_config_text(
            config.engine.instance,
            Path(config.engine.data_dir),
            lambda i: extra if i == 1 else "",
        )
        running.path.write_text(text)
        assert running.admin("reload") == 0
    _await("alice's session removed", lambda: _sessions_closed(config) >= 1)
    # the disconnect's cancel, if any, was staged before bob's order on ACME's shard
    with OrderClient.connect(address, account_id=2, api_key=KEYS[2]) as bob:
        sell = bob.submit("ACME", "sell", 3, 90, tif="ioc")
        got = bob.wait_for(sell, (Fill, Cancelled))
    assert isinstance(got, Fill if keep else Cancelled), got


def test_a_reload_outlives_a_gateway_restart(running: Instance) -> None:
    """A gateway the supervisor restarts starts from the reloaded accounts: before, it
    read the instance's original config, and its cancel-on-start cancelled the orders of
    an account whose cancel_on_disconnect had been reloaded off."""
    config = running.sup.config
    with OrderClient.connect(running.unix_socket, account_id=1, api_key=KEYS[1]) as alice:
        resting = alice.submit("ACME", "buy", 3, 90)
        alice.wait_for(resting)
        text = e2e_config_text(
            config.engine.instance,
            Path(config.engine.data_dir),
            lambda i: "cancel_on_disconnect = false\n" if i == 1 else "",
        )
        running.path.write_text(text)
        assert running.admin("reload") == 0
        pid = _gateway_pid(config)
        os.kill(pid, signal.SIGKILL)
    _await_restart(running.sup, pid)
    with OrderClient.connect(running.unix_socket, account_id=2, api_key=KEYS[2]) as bob:
        got = bob.wait_for(bob.submit("ACME", "sell", 3, 90, tif="ioc"), (Fill, Cancelled))
    assert isinstance(got, Fill), got
