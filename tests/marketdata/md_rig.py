"""What the market-data tests share: an instance run by a Supervisor in the test process
(two shard workers and, as `tradsys run` starts it, the md sidecar), the test playing the
gateway (it pushes commands into the shards' rings and drains their events), and
reference engines fed the same commands, whose depth every subscriber's book must equal."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from tradsys.client.marketdata import LocalBook, MarketDataClient
from tradsys.config import Config, check_config
from tradsys.cores.sidecar_runner import SidecarProcess
from tradsys.cores.supervisor import Supervisor
from tradsys.matching import CEngine, Instrument
from tradsys.matching.workload import sample_instruments
from tradsys.ring import Ring, segment_name
from tradsys.wire import COMMAND_DTYPE, EVENT_DTYPE, LAYOUT_VERSION, RECORD_SIZE, Side

DEADLINE_S = 30.0
LAYOUT = {"slot_size": RECORD_SIZE, "layout_version": LAYOUT_VERSION}


def instruments() -> list[Instrument]:
    """The sample instruments, renamed so that one name is a prefix of another."""
    plain, lots, brkr = sample_instruments()
    return [
        msgspec.structs.replace(plain, symbol="ACME"),
        msgspec.structs.replace(lots, symbol="ACMEX"),
        msgspec.structs.replace(brkr, symbol="BRKR"),
    ]


SHARD_SYMBOLS = {0: ["ACME", "BRKR"], 1: ["ACMEX"]}


def md_config(instance: str, tmp: Path, **md: Any) -> Config:
    """Two shards, ipc endpoints in the test's tmp dir (never a fixed TCP port)."""
    doc = {
        "engine": {
            "instance": instance,
            "data_dir": str(tmp / "var"),
            "ring_capacity": 65536,
            "wait": "spin-park",
        },
        "journal": {"durability": "none"},
        "gateway": {"enabled": False},
        "shard": [{"id": i, "symbols": s} for i, s in SHARD_SYMBOLS.items()],
        "instrument": [msgspec.to_builtins(i) for i in instruments()],
        "md": {
            # ipc for this host, tcp (any free port) as a subscriber on another host uses
            "publish": [f"ipc://{tmp}/md-pub", "tcp://127.0.0.1:0"],
            "snapshot": f"ipc://{tmp}/md-snap",
            "heartbeat_ms": 100,
            **md,
        },
    }
    return check_config(msgspec.convert(doc, Config), "test")


@dataclass
class MdRig:
    """A running instance with its md sidecar; the test's ends of the shards' rings."""

    config: Config
    supervisor: Supervisor | None = None
    cmd: dict[int, Ring] = field(default_factory=dict)
    evt: dict[int, Ring] = field(default_factory=dict)
    engines: dict[int, CEngine] = field(default_factory=dict)
    clients: list[MarketDataClient] = field(default_factory=list)
    announcement: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        self.supervisor = Supervisor(self.config, log=lambda line: None)
        self.supervisor.start()  # returns once the md sidecar has announced itself
        self.announcement = dict(self.sidecar.announcement() or {})
        instance = self.config.engine.instance
        for shard in self.config.shards:
            self.cmd[shard.id] = Ring.attach(
                segment_name(instance, "cmd", shard.id), role="producer", **LAYOUT
            )
            self.evt[shard.id] = Ring.attach(
                segment_name(instance, "evt", shard.id), role="consumer", **LAYOUT
            )
            engine = CEngine()
            for ins in self.config.symbols_of(shard.id):
                engine.add_instrument(ins)
            self.engines[shard.id] = engine

    @property
    def sidecar(self) -> SidecarProcess:
        assert self.supervisor is not None
        return next(sc for sc in self.supervisor.sidecars if sc.name == "md")

    @property
    def sidecar_pid(self) -> int:
        assert self.sidecar.process is not None
        return self.sidecar.process.pid

    def restart_sidecar(self) -> None:
        """Let the supervisor notice the dead sidecar and start a new one; wait for its
        announcement."""
        assert self.supervisor is not None
        sc = self.sidecar
        before = sc.restarts
        deadline = time.monotonic() + DEADLINE_S
        self.supervisor.watch(
            until=lambda: (
                (sc.restarts > before and sc.announcement() is not None)
                or time.monotonic() > deadline
            ),
            tick_s=0.01,
        )
        doc = sc.announcement()
        assert doc is not None, "the supervisor did not restart the md sidecar"
        self.announcement = dict(doc)

    @property
    def publish(self) -> str:
        return str(self.announcement["publish"][0])

    @property
    def snapshot(self) -> str:
        return str(self.announcement["snapshot"])

    @property
    def publish_tcp(self) -> str:
        return str(self.announcement["publish"][1])

    def client(
        self, symbols: list[str] | None = None, publish: str | None = None, **kw: Any
    ) -> MarketDataClient:
        endpoint = publish or self.publish
        c = MarketDataClient(endpoint, self.snapshot, symbols or self.all_symbols(), **kw)
        self.clients.append(c)
        return c

    def all_symbols(self) -> list[str]:
        return [s for syms in SHARD_SYMBOLS.values() for s in syms]

    def send(self, shard: int, commands: np.ndarray, pump: Callable[[], Any] | None = None) -> None:
        """Push every command to a shard and drain its events until the worker has
        processed them all (``pump`` runs in between, e.g. a subscriber's poll)."""
        assert self.supervisor is not None
        control = next(sp.control for sp in self.supervisor.shards if sp.spec.shard_id == shard)
        target = control.processed_seq + len(commands)
        self.engines[shard].process(np.ascontiguousarray(commands, COMMAND_DTYPE))
        events = np.zeros(4096, EVENT_DTYPE)
        pushed = 0
        deadline = time.monotonic() + DEADLINE_S
        while pushed < len(commands) or control.processed_seq < target:
            assert time.monotonic() < deadline, f"shard {shard} stuck at {control.processed_seq}"
            if pushed < len(commands):
                pushed += self.cmd[shard].push_batch(commands[pushed : pushed + 2048])
            self.evt[shard].pop_batch(events)
            if pump is not None:
                pump()
            else:
                self.evt[shard].wait_readable(timeout=0.001)
        while self.evt[shard].pop_batch(events):
            pass

    def engine_book(self, symbol: str) -> dict[str, list[tuple[int, int, int]]]:
        ins = next(i for i in self.config.instruments if i.symbol == symbol)
        shard = next(s for s, syms in SHARD_SYMBOLS.items() if symbol in syms)
        out = {}
        for name, side in (("bids", Side.BUY), ("asks", Side.SELL)):
            d = self.engines[shard].depth(ins.symbol_id, side, max_levels=100_000)
            out[name] = list(
                zip(
                    d["price"].tolist(),
                    d["quantity"].tolist(),
                    d["order_count"].tolist(),
                    strict=True,
                )
            )
        return out

    def converged_book(self, book: LocalBook) -> bool:
        return book.synced and book.as_dict() == self.engine_book(book.symbol)

    def converged(self, client: MarketDataClient) -> bool:
        return all(b.synced and b.as_dict() == self.engine_book(s) for s, b in client.books.items())

    def wait_converged(self, client: MarketDataClient, timeout_s: float = DEADLINE_S) -> None:
        ok = client.run_until(lambda: self.converged(client), timeout_s)
        if not ok:
            diffs = {
                s: (b.synced, b.l2_seq, b.as_dict(), self.engine_book(s))
                for s, b in client.books.items()
                if not (b.synced and b.as_dict() == self.engine_book(s))
            }
            raise AssertionError(f"books differ from the engine's: {diffs}")

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.clients.clear()
        for ring in [*self.cmd.values(), *self.evt.values()]:
            ring.close()
        self.cmd.clear()
        self.evt.clear()
        for e in self.engines.values():
            e.close()
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None


def md_rig(config: Config) -> Iterator[MdRig]:
    rig = MdRig(config)
    try:
        rig.start()
        yield rig
    finally:
        rig.close()  # the supervisor stops the sidecar after the workers


running = contextlib.contextmanager(md_rig)
"""``with running(config, children) as rig:`` for tests that need their own config."""
