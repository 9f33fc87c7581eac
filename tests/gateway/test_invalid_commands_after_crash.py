"""Through the Supervisor, with real processes: a TCP client's commands that no client may
send (CONTROL, a number that is no kind) are answered by the gateway core's pump, in the
session's event stream, so the answer is as durable as any other event: when the gateway
is killed (SIGKILL) before the client acknowledged it, the account's next session gets it
again, in the place it had in the stream.

Alice sends one COMMANDS frame: a valid order, then a CONTROL record that would halt her
symbol were it ever to reach a shard, then three records of kinds 0, 99 and 255. She
reads the five answers and acknowledges none; the gateway dies; her next session gets the
same five in the same order, then the ACCEPTED of a probe order (so the symbol was never
halted). Where the TCP edge made those rejects itself and wrote them straight to the
socket, they were in no ring for the successor to find.

(The order of the five: the pump answers a command it rejects as it takes it, while the
order's ACCEPTED comes back from its shard, so the rejects come first -- as any reject
the gateway makes itself, for any session. Only their own order, and the stream's order
across the crash, are asserted.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.gateway.test_tcp_gateway_crash import _events, alice_logged_in
from tests.gateway.test_unread_gateway_crash import _restart_gateway
from tests.gateway.test_unread_sessions import (
    ACME,
    _address,
    _await,
    _core_stats,
    _tcp_address,
    alices_next_session,
    unread_config,
)
from tradsys import wire
from tradsys.client.commands import order_record
from tradsys.client.events import Ack, Event, Reject
from tradsys.cores.gateway import read_stats
from tradsys.cores.supervisor import Supervisor
from tradsys.matching.commands import batch
from tradsys.protocols.binary import MessageType, encode_records
from tradsys.ring import instance_segments
from tradsys.wire import EventKind, RejectReason

pytestmark = pytest.mark.multiprocess

ORDER = 1  # her valid order: a bid of 1 at 50, resting
INVALID = {2: wire.CommandKind.CONTROL, 3: 0, 4: 99, 5: 255}  # client order id -> kind
PROBE = 9  # alices_next_session's order, the last thing her next session waits for


def _frame() -> bytes:
    """One COMMANDS frame: the order, then every record no client may send."""
    records = [order_record(ORDER, ACME, "buy", 1, 50)]
    for oid, kind in INVALID.items():
        rec = np.zeros(1, wire.COMMAND_DTYPE)
        rec["kind"], rec["order_id"], rec["symbol_id"] = kind, oid, ACME
        rec["control"] = wire.ControlCode.HALT  # the CONTROL record's: halt her symbol
        records.append(rec)
    return encode_records(MessageType.COMMANDS, 1, batch(*records))


def _answers(events: list[np.void]) -> list[tuple[int, int, int]]:
    return [(int(e["order_id"]), int(e["kind"]), int(e["reason"])) for e in events]


def _as_answers(seen: list[Event]) -> list[tuple[int, int, int]]:
    """What the client library made of the events, as (order id, kind, reason)."""
    out = []
    for e in seen:
        assert isinstance(e, (Ack, Reject)), e
        answer = (EventKind.ACCEPTED, 0) if isinstance(e, Ack) else (EventKind.REJECTED, e.reason)
        out.append((e.order_id, *answer))
    return out


ACCEPTED = (ORDER, EventKind.ACCEPTED, 0)
REJECTS = [(oid, EventKind.REJECTED, RejectReason.INVALID_COMMAND) for oid in INVALID]


@pytest.mark.parametrize("acking", [True, False], ids=["acking", "never-acking"])
def test_a_killed_gateway_loses_no_invalid_command_reject(
    instance: str, tmp_path: Path, acking: bool
) -> None:
    # a long heartbeat: her silence must not end the session before the kill
    config = unread_config(instance, tmp_path / "data", heartbeat_ms=60_000)
    with Supervisor(config, log=lambda line: None) as sup:
        with alice_logged_in(_tcp_address(config), acking) as alice:
            if acking:
                _await("alice's ACK", lambda: (read_stats(config) or {}).get("tcp_acks", 0) >= 1)
            alice.send(_frame())
            sent = _answers(_events(alice, 1 + len(INVALID)))  # all in her socket
            assert sorted(sent) == sorted([ACCEPTED, *REJECTS])
            assert [a for a in sent if a != ACCEPTED] == REJECTS  # the rejects in order
            _restart_gateway(sup)  # none of them acknowledged
        seen = alices_next_session(_address(config))
        held = _core_stats(config).get("events_unread_held")
    # read back from the dead gateway's ring: the same five in the same order, each once,
    # then the probe's ACCEPTED (its symbol open: the CONTROL record never reached a shard)
    assert _as_answers(seen) == [*sent, (PROBE, EventKind.ACCEPTED, 0)]
    assert held == len(sent)
    assert instance_segments(instance) == []
