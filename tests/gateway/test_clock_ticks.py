"""The pump keeps the engine's clock: CLOCK_TICK commands with the wall-clock time go into
each shard's command stream (journaled, so a replay sees the same times) — before a shard's
commands once the last tick is ``clock_tick_us`` old, and on their own in a quiet market."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tests.gateway.rig import AAA, BBB, GatewayRig, command
from tradsys.wire import CommandKind, ControlCode


def ticks(records: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    is_tick = (records["kind"] == CommandKind.CONTROL) & (
        records["control"] == ControlCode.CLOCK_TICK
    )
    return records[is_tick]


def wall_clock_passes(ns: int) -> None:
    """Wait (on the clock itself, not a sleep) until the wall clock is ``ns`` further."""
    until = time.time_ns() + ns
    while time.time_ns() < until:
        pass


def test_a_tick_goes_before_a_shards_commands_and_not_again_within_the_resolution(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig(clock_tick_us=1_000_000)  # 1 s: only the first pass ticks
    s = rig.session()
    before = time.time_ns()
    s.send(command(order_id=1), command(order_id=2, symbol_id=BBB))
    rig.poll()
    after = time.time_ns()
    for shard in (0, 1):
        got = rig.sent(shard)
        assert got["kind"][0] == CommandKind.CONTROL and got["control"][0] == ControlCode.CLOCK_TICK
        assert before <= got["time_ns"][0] <= after
        assert list(got["kind"][1:]) == [CommandKind.NEW_ORDER]
    s.send(command(order_id=3))
    rig.poll()
    assert list(rig.sent(0)["kind"]) == [CommandKind.NEW_ORDER]  # the last tick is recent


def test_ticks_follow_the_wall_clock_and_never_go_back(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig(clock_tick_us=50)
    s = rig.session()
    stamps = []
    for oid in range(1, 6):
        wall_clock_passes(60_000)  # longer than the resolution: each order gets its tick
        s.send(command(order_id=oid, price=1000 - oid))
        rig.poll()
        got = rig.sent(0)
        assert len(ticks(got)) == 1 and got["kind"][-1] == CommandKind.NEW_ORDER
        stamps.append(int(ticks(got)["time_ns"][0]))
    assert all(b - a >= 50_000 for a, b in itertools.pairwise(stamps))


def test_a_quiet_shard_still_gets_ticks(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig(clock_tick_us=10)
    rig.poll()  # nothing sent: each shard gets its first tick anyway
    first = [ticks(rig.sent(shard)) for shard in (0, 1)]
    assert [len(t) for t in first] == [1, 1]
    rig.poll()  # a quiet pass right after: no tick yet (the idle interval is 100 ms)
    assert len(rig.sent(0)) == 0 and len(rig.sent(1)) == 0
    wall_clock_passes(100_000_000)
    rig.poll()
    later = ticks(rig.sent(0))
    assert len(later) == 1 and later["time_ns"][0] - first[0]["time_ns"][0] >= 100_000_000


def test_a_tick_never_overfills_the_shard_batch(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig(clock_tick_us=10, pump_batch=4)
    s = rig.session()
    s.send(*(command(order_id=oid, price=900 + oid) for oid in range(1, 11)))
    seen = 0
    while seen < 10:
        wall_clock_passes(20_000)
        assert rig.poll()
        got = rig.sent(0)
        assert 0 < len(got) <= 4 and len(ticks(got)) == 1
        seen += int((got["kind"] == CommandKind.NEW_ORDER).sum())
    assert seen == 10


def test_ticks_off_sends_none(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig(clock_tick_us=0)
    s = rig.session()
    s.send(command(order_id=1, symbol_id=AAA))
    rig.poll()
    assert list(rig.sent(0)["kind"]) == [CommandKind.NEW_ORDER] and len(rig.sent(1)) == 0
