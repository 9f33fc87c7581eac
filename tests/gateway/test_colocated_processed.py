"""Through the Supervisor, with real processes: a colocated client's read index is its
acknowledgement, and it moves as TCP's ACK does -- a batch ``poll()`` returned leaves the
ring at the next call. Alice polls her three fills and is killed (SIGKILL) while handling
them, before polling again: her account's next session gets the three again, in order,
with the same exec ids (at least once; ``SeenExecs`` drops such repeats for a client that
saw them). Before, the poll had consumed them and a crash of the client lost them."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.edge_rig import KEYS
from tests.gateway.test_unread_sessions import (
    ACME,
    _address,
    _await,
    _bob_buys,
    _sessions_closed,
    alices_next_session,
    stop,
    unread_config,
)
from tradsys.client.events import Fill
from tradsys.client.orders import OrderClient
from tradsys.cores.supervisor import Supervisor
from tradsys.ring import instance_segments

pytestmark = pytest.mark.multiprocess

# Alice rests an ask, is done with its ack, then polls until she has three fills, says
# so, and handles them until she is killed.
ALICE = f"""
import sys
from tradsys.client.events import Ack, Fill
from tradsys.client.orders import OrderClient
c = OrderClient.connect(sys.argv[1], account_id=1, api_key=sys.argv[2])
assert isinstance(c.wait_for(c.submit({ACME}, "sell", 10, 101, order_id=1)), Ack)
assert not c.poll()
print("rested", flush=True)
sys.stdin.readline()
fills = []
while len(fills) < 3:
    fills += [e.exec_id for e in c.poll(5.0) if isinstance(e, Fill)]
print(*fills, flush=True)
sys.stdin.read()
"""


def test_a_colocated_client_killed_while_handling_a_batch_gets_it_again(
    instance: str, tmp_path: Path
) -> None:
    config = unread_config(instance, tmp_path / "data")
    with Supervisor(config, log=lambda line: None):
        address = _address(config)
        alice = subprocess.Popen(
            [sys.executable, "-c", ALICE, address, KEYS[1]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert alice.stdin is not None and alice.stdout is not None
            assert alice.stdout.readline().strip() == "rested"
            with OrderClient.connect(address, account_id=2, api_key=KEYS[2]) as bob:
                _bob_buys(bob, [(1, 101)] * 3)
            alice.stdin.write("go\n")
            alice.stdin.flush()
            handled = [int(x) for x in alice.stdout.readline().split()]
            assert len(handled) == 3, handled
            alice.send_signal(signal.SIGKILL)
            alice.wait(10)
        finally:
            stop(alice)
        _await("bob's and alice's sessions removed", lambda: _sessions_closed(config) == 2)
        seen = alices_next_session(address)
    fills = [e for e in seen if isinstance(e, Fill)]
    assert [f.exec_id for f in fills] == handled
    assert [(f.order_id, f.quantity, f.leaves_qty) for f in fills] == [
        (1, 1, 9),
        (1, 1, 8),
        (1, 1, 7),
    ]
    assert instance_segments(instance) == []
