"""A gateway under test with the test in the shards' seat: the test makes the shard
rings (as the supervisor would), reads what the pump sends to each shard, and writes the
events a shard would answer. Client sessions are ring pairs the test also holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.conftest import RingFactory
from tradsys.config import AccountSection, Config, EngineSection, GatewaySection, ShardSection
from tradsys.gateway import GatewayCore
from tradsys.matching import Instrument
from tradsys.ring import Ring, segment_name
from tradsys.wire import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    CommandKind,
    EventFlag,
    EventKind,
    OrderType,
    Side,
    TimeInForce,
)

KEY = "0" * 64
AAA, BBB = 1, 2  # symbol ids: AAA on shard 0, BBB on shard 1


def account(account_id: int = 1, **limits: Any) -> AccountSection:
    return AccountSection(id=account_id, name=f"acct{account_id}", api_key_sha256=KEY, **limits)


def make_config(instance: str, accounts: list[AccountSection], **gateway: Any) -> Config:
    return Config(
        engine=EngineSection(instance=instance, ring_capacity=1024, wait="spin-park"),
        shards=[ShardSection(id=0, symbols=["AAA"]), ShardSection(id=1, symbols=["BBB"])],
        instruments=[
            Instrument("AAA", AAA, reference_price=1000),
            Instrument("BBB", BBB, reference_price=0),
        ],
        accounts=accounts,
        # clock ticks off: these tests read each shard's exact command stream
        gateway=GatewaySection(
            **({"max_live_orders": 4096, "max_sessions": 8, "clock_tick_us": 0} | gateway)
        ),
    )


def command(kind: CommandKind = CommandKind.NEW_ORDER, **fields: Any) -> np.ndarray[Any, Any]:
    """One COMMAND record; a new order defaults to a GTC limit buy of 10 AAA at 1000."""
    rec = np.zeros(1, dtype=COMMAND_DTYPE)
    defaults: dict[str, Any] = {"kind": kind}
    if kind == CommandKind.NEW_ORDER:
        defaults |= {
            "side": Side.BUY,
            "order_type": OrderType.LIMIT,
            "tif": TimeInForce.GTC,
            "symbol_id": AAA,
            "price": 1000,
            "quantity": 10,
        }
    for name, value in (defaults | fields).items():
        rec[name] = value
    return rec


def event(kind: EventKind, order_id: int, **fields: Any) -> np.ndarray[Any, Any]:
    rec = np.zeros(1, dtype=EVENT_DTYPE)
    rec["kind"] = kind
    rec["order_id"] = order_id
    for name, value in fields.items():
        rec[name] = value
    return rec


@dataclass
class Session:
    id: int
    account_id: int
    to_gateway: Ring
    from_gateway: Ring

    def send(self, *records: np.ndarray[Any, Any]) -> None:
        batch = np.zeros(len(records), dtype=COMMAND_DTYPE)
        for i, rec in enumerate(records):
            batch[i] = rec[0]
        assert self.to_gateway.push_batch(batch) == len(batch)

    def events(self) -> np.ndarray[Any, Any]:
        return drain(self.from_gateway, EVENT_DTYPE)


def drain(ring: Ring, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    out = np.zeros(ring.capacity, dtype=dtype)
    n = ring.pop_batch(out)
    return out[:n]


@dataclass
class GatewayRig:
    rings: RingFactory
    config: Config
    epoch: int = 7
    cancel_on_start: bool = False  # most tests want an empty shard ring to start with
    core: GatewayCore = field(init=False)
    commands: list[Ring] = field(init=False, default_factory=list)  # per shard, to read
    events: list[Ring] = field(init=False, default_factory=list)  # per shard, to write
    exec_id: int = 0

    def __post_init__(self) -> None:
        instance = self.config.engine.instance
        for shard in self.config.shards:
            self.commands.append(
                self.rings.create(
                    segment_name(instance, "cmd", shard.id), capacity=1024, role="consumer"
                )
            )
            self.events.append(
                self.rings.create(
                    segment_name(instance, "evt", shard.id), capacity=1024, role="producer"
                )
            )
        self.core = GatewayCore(self.config, epoch=self.epoch, cancel_on_start=self.cancel_on_start)

    def session(self, account_id: int = 1, capacity: int = 256, **kwargs: Any) -> Session:
        to_gw = self.rings.create(capacity=capacity, role="producer")
        from_gw = self.rings.create(capacity=capacity, role="consumer")
        sid = self.core.add_session(account_id, to_gw, from_gw, **kwargs)
        return Session(sid, account_id, to_gw, from_gw)

    def poll(self, now_ns: int = 0) -> int:
        return self.core.poll(now_ns=now_ns)

    def sent(self, shard: int = 0) -> np.ndarray[Any, Any]:
        """What the pump pushed to a shard since the last look."""
        return drain(self.commands[shard], COMMAND_DTYPE)

    def rest(self, session: Session, order: np.ndarray[Any, Any]) -> Any:
        """Send a NEW on ``session`` and answer it ACCEPTED from shard 0, as a resting
        order; returns the command the shard received (its exchange order)."""
        session.send(order)
        self.poll()
        (sent,) = self.sent(0)
        self.answer(0, EventKind.ACCEPTED, sent)
        self.poll()
        return sent

    def answer(self, shard: int, kind: EventKind, cmd: Any, **fields: Any) -> None:
        """Push one event for the exchange order of ``cmd`` (a row the shard received)."""
        self.exec_id += 1
        base = {
            "side": int(cmd["side"]),
            "symbol_id": int(cmd["symbol_id"]),
            "account_id": int(cmd["account_id"]),
            "price": int(cmd["price"]),
            "quantity": int(cmd["quantity"]),
            "exec_id": self.exec_id,
        }
        if kind == EventKind.ACCEPTED:
            base["leaves_qty"] = int(cmd["quantity"])
        if kind in (EventKind.REJECTED, EventKind.CANCELLED):
            base["flags"] = EventFlag.DONE
        assert (
            self.events[shard].push_batch(event(kind, int(cmd["order_id"]), **(base | fields))) == 1
        )

    def close(self) -> None:
        self.core.close()
