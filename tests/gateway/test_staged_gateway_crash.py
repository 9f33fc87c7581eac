"""Through the Supervisor, with real processes: when the *gateway* is killed (SIGKILL)
while it holds fills for a colocated session whose event ring is full -- routed by its
pump, staged for the session, not yet pushed into the ring -- those fills are not lost.
The pump leaves an event in the shard's event ring until it has left the gateway's
memory, so the restarted gateway drains them from there; alice's next session gets the
fills that were in her ring and the staged ones, each once, in order (issue 5: nothing
acknowledged is ever lost)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.client.edge_rig import KEYS
from tests.gateway.test_unread_gateway_crash import _restart_gateway
from tests.gateway.test_unread_sessions import (
    ACME,
    ASKS,
    _address,
    _bob_buys,
    _fills_until_ack,
    alice_resting,
    alices_next_session,
    unread_config,
)
from tradsys.client.events import Fill
from tradsys.client.orders import OrderClient
from tradsys.cores.supervisor import Supervisor
from tradsys.ring import instance_segments

pytestmark = pytest.mark.multiprocess

RING = 16  # alice's session ring, small enough to fill with her fills
LOTS = 26  # bob's one-lot buys: 16 fills fill her ring, 10 wait in the pump's stage


def test_a_killed_gateway_loses_no_fill_it_had_staged_for_a_full_ring(
    instance: str, tmp_path: Path
) -> None:
    config = unread_config(instance, tmp_path / "data", ring=RING)
    with Supervisor(config, log=lambda line: None) as sup:
        address = _address(config)
        with alice_resting(address) as (_, ring_name):
            with OrderClient.connect(address, account_id=2, api_key=KEYS[2]) as bob:
                top = max(px for _, px in ASKS)
                taker = _bob_buys(bob, [(1, top)] * LOTS)
                assert len(taker) == LOTS
                # the shard's events come in order: once this resting probe is
                # acknowledged, every fill of alice's before it has been routed
                _fills_until_ack(bob, bob.submit(ACME, "buy", 1, 50, order_id=777))
                _restart_gateway(sup)
            assert ring_name not in instance_segments(instance)
            seen = alices_next_session(address)
    fills = [e for e in seen if isinstance(e, Fill)]
    want = [(oid, px) for oid, px in ASKS for _ in range(10)][:LOTS]
    assert [(f.order_id, f.price) for f in fills] == want
    assert [f.quantity for f in fills] == [1] * LOTS
    assert [f.leaves_qty for f in fills] == [(9 - i % 10) for i in range(LOTS)]
    execs = [f.exec_id for f in fills]
    assert execs == sorted(set(execs))
    assert instance_segments(instance) == []
