#!/usr/bin/env python3
"""The baseline a Python user would otherwise build: an asyncio TCP server (uvloop, to be
generous) that decodes each frame of orders and calls the reference matching model, then
writes the events back. It speaks the TradSys binary protocol, so the same client drives
both. Its collector is left as CPython sets it; every collection is timed the same way
as the gateway's and written to a stats file for the gc bench.

Usage: _baseline_server.py REFERENCE_PRICE [STATS_FILE]   (prints "listening host:port")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

import numpy as np
import uvloop

from tradsys import wire
from tradsys.gctune import GcMonitor
from tradsys.matching import Instrument
from tradsys.matching.reference import ReferenceEngine
from tradsys.protocols.binary import (
    HEADER,
    HEADER_SIZE,
    Accepted,
    MessageType,
    SymbolInfo,
    check_header,
    encode_accepted,
    encode_records,
    encode_symbols,
)


async def main(price: int, stats_file: Path | None) -> None:
    engine = ReferenceEngine()
    engine.add_instrument(Instrument("ACME", 1, reference_price=price))
    monitor = GcMonitor()
    monitor.install()
    next_id = 1

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal next_id
        seq = 1
        try:
            while True:
                length, kind, _ = HEADER.unpack(await reader.readexactly(HEADER_SIZE))
                size = length + 4 - HEADER_SIZE
                check_header(kind, size)
                body = await reader.readexactly(size)
                if kind == MessageType.LOGIN:
                    acc = Accepted(1, 5000, 1, 1, 1, 0, "", "")
                    writer.write(
                        encode_accepted(acc) + encode_symbols([SymbolInfo(1, "ACME", 1, 1)])
                    )
                elif kind == MessageType.COMMANDS:
                    cmds = np.frombuffer(body, wire.COMMAND_DTYPE).copy()
                    client_ids = cmds["order_id"].copy()
                    cmds["order_id"] = np.arange(next_id, next_id + len(cmds))
                    next_id += len(cmds)
                    events = engine.process(cmds).events
                    # back to the client's ids, as a gateway would
                    events["order_id"] = client_ids[events["order_id"] - cmds["order_id"][0]]
                    for start in range(0, len(events), 1024):
                        chunk = events[start : start + 1024]
                        writer.write(encode_records(MessageType.EVENTS, seq, chunk))
                        seq += len(chunk)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        if stats_file is not None:
            tmp = stats_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"gc": monitor.stats()}))
            tmp.replace(stats_file)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)
    server.close()


if __name__ == "__main__":
    stats = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    uvloop.run(main(int(sys.argv[1]), stats))
