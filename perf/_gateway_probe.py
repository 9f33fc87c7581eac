#!/usr/bin/env python3
"""Run under callgrind by e2e_bench.py: the gateway's TCP session code alone, in one
process, with no socket and no pump -- frames are handed to the real ``TcpSession`` the
way the event loop hands them (``get_buffer`` / ``buffer_updated``), its inbound ring is
drained here, and events put in its outbound ring are framed back to a transport that
drops them. Marked stretches (see _callgrind.py): COMMANDS frames of 1 order, of 64
orders, then EVENTS batches of 64, so the instructions per order of the gateway's own
Python path can be read exactly, whatever the machine is doing.

Usage: _gateway_probe.py INSTANCE ROUNDS
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np

from tradsys import wire
from tradsys._native import ffi, lib
from tradsys.config import parse_config
from tradsys.cores.gateway_auth import Credentials, key_digest
from tradsys.cores.gateway_rings import RingMaker
from tradsys.cores.gateway_sessions import SessionTable
from tradsys.cores.gateway_tcp import TcpEdge, TcpSession
from tradsys.protocols.binary import MessageType, encode_login, encode_records

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _e2e_rig as rig


class NullCore:
    def add_session(self, account_id, inbound, outbound, *, notify_fd=None, **kw):  # type: ignore[no-untyped-def]
        return 1

    def take_dropped(self, account_id: int) -> int:
        return 0

    def return_dropped(self, account_id: int, n: int) -> None:
        pass

    def remove_session(self, session_id: int) -> None:
        pass


class NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str) -> object:
        return None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0  # everything written at once: what a drained socket buffer reports


def feed(session: TcpSession, data: bytes) -> None:
    view = session.get_buffer(len(data))
    view[: len(data)] = data
    session.buffer_updated(len(data))


async def main(instance: str, rounds: int) -> None:
    config = parse_config(
        rig.CONFIG.format(
            instance=instance,
            data_dir="/tmp",
            price=rig.PRICE,
            digest=key_digest(rig.KEY),
            wait="spin-park",
            shard_core="",
            gateway_core="",
            snapshot_every=rig.SNAPSHOT_EVERY,
            clock_tick_us=rig.CLOCK_TICK_US,
        ),
        "probe",
    )
    table = SessionTable(NullCore(), RingMaker(instance, 4096), 4)
    edge = TcpEdge(Credentials(config), table, 5.0, 5.0)
    session = TcpSession(edge)
    session.connection_made(NullTransport())  # type: ignore[arg-type]
    feed(session, encode_login(1, rig.KEY))
    assert session.session is not None
    rings = session.session.rings
    info = ffi.new("ts_ring_info *")
    sink = np.zeros(4096, wire.COMMAND_DTYPE)
    orders = rig.orders(64, 1)
    events = np.zeros(64, wire.EVENT_DTYPE)
    events["kind"] = wire.EventKind.ACCEPTED

    def frames(per_frame: int) -> list[bytes]:
        """rounds x 64 orders in frames of ``per_frame``, numbered from the session's
        next command seq (made before a stretch, so the client's work is not counted)."""
        seq, out = session.next_command_seq, []
        for _ in range(rounds):
            for i in range(0, 64, per_frame):
                out.append(encode_records(MessageType.COMMANDS, seq, orders[i : i + per_frame]))
                seq += per_frame
        return out

    def commands(batch: list[bytes], per_frame: int) -> None:
        per_round = 64 // per_frame
        for r in range(rounds):
            for frame in batch[r * per_round : (r + 1) * per_round]:
                feed(session, frame)
            rings.inbound.pop_batch(sink)

    def replies() -> None:
        for _ in range(rounds):
            rings.outbound.push_batch(events)
            session._drain_events()

    commands(frames(1), 1)  # warm-up
    commands(frames(64), 64)
    replies()
    for per_frame in (1, 64, 0):
        batch = frames(per_frame) if per_frame else []
        lib.ts_ring_read_info(rings.inbound._base, info)  # zero the counters
        if per_frame:
            commands(batch, per_frame)
        else:
            replies()
        lib.ts_ring_set_consumer(rings.inbound._ring, 0)  # dump
    session.connection_lost(None)
    table.reap(force=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
