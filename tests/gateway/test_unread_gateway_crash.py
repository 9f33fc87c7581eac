"""Through the Supervisor, with real processes: when the *gateway* is killed (SIGKILL)
while a colocated client has fills in its session's ring that it never read, the
restarted gateway reads them out of the dead gateway's session ring (which outlives it
in /dev/shm) and gives them to the account's next session first, by exec id, each once,
ahead of what came while no gateway ran (issue 5: nothing acknowledged is ever lost)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.client.edge_rig import KEYS
from tests.gateway.test_unread_sessions import (
    _address,
    _bob_buys,
    _core_stats,
    alice_resting,
    alices_next_session,
    unread_config,
)
from tradsys.client.events import Fill
from tradsys.client.orders import OrderClient
from tradsys.cores.sidecar import read_announcement
from tradsys.cores.supervisor import Supervisor
from tradsys.ring import Ring, instance_segments
from tradsys.wire import LAYOUT_VERSION, RECORD_SIZE

pytestmark = pytest.mark.multiprocess


def _restart_gateway(sup: Supervisor) -> None:
    """SIGKILL the gateway and supervise until its successor serves."""
    (gw,) = [sc for sc in sup.sidecars if sc.name == "gateway"]
    assert gw.process is not None
    old = gw.process.pid
    os.kill(old, signal.SIGKILL)

    def restarted() -> bool:
        ann = read_announcement(sup.config, "gateway")
        return ann is not None and ann.get("pid") not in (None, old)

    deadline = time.monotonic() + 60
    sup.watch(until=lambda: restarted() or time.monotonic() > deadline, tick_s=0.05)
    assert restarted(), "the supervisor did not restart the gateway"


def test_a_killed_gateway_loses_no_event_its_sessions_had_not_read(
    instance: str, tmp_path: Path
) -> None:
    config = unread_config(instance, tmp_path / "data")
    with Supervisor(config, log=lambda line: None) as sup:
        address = _address(config)
        with alice_resting(address) as (_, ring_name):
            with OrderClient.connect(address, account_id=2, api_key=KEYS[2]) as bob:
                taker = _bob_buys(bob, [(4, 101), (10, 102)])
                assert [(f.price, f.quantity) for f in taker] == [(101, 4), (101, 6), (102, 4)]
                watch = Ring.attach(ring_name, slot_size=RECORD_SIZE, layout_version=LAYOUT_VERSION)
                try:
                    deadline = time.monotonic() + 10
                    while watch.info().fill != 3:  # her three fills, routed, unread
                        assert time.monotonic() < deadline, "alice's fills never came"
                        time.sleep(0.01)
                finally:
                    watch.close()
                _restart_gateway(sup)  # bob's session dies with it
            # her session ring was the dead gateway's: read back, then removed
            assert ring_name not in instance_segments(instance)
            assert _core_stats(config).get("events_unread_held") == 3
            # a fill that comes while she has no session: after the three
            with OrderClient.connect(address, account_id=2, api_key=KEYS[2]) as bob:
                _bob_buys(bob, [(2, 102)])
            seen = alices_next_session(address)
    fills = [e for e in seen if isinstance(e, Fill)]
    assert [(f.order_id, f.price, f.quantity, f.leaves_qty) for f in fills] == [
        (1, 101, 4, 6),
        (1, 101, 6, 0),
        (2, 102, 4, 6),
        (2, 102, 2, 4),
    ]
    # bob saw the same trades: the same exec ids, in order, none twice
    execs = [f.exec_id for f in fills]
    assert execs == sorted(set(execs))
    assert instance_segments(instance) == []
