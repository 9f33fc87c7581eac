"""The pump's hand-off yield (``[gateway] yield_every_us``, native/gateway_pump.c): a pump
that never goes idle still gives its CPU up at least that often, so a colocated client
sharing the CPU is not kept waiting for a whole scheduler slice."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import msgspec
import pytest

from tests.conftest import RingFactory
from tests.gateway.rig import GatewayRig, account, make_config
from tradsys.config import ConfigError, parse_config


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


def never_idle_rig(instance: str, rings: RingFactory, yield_every_us: int) -> GatewayRig:
    """A pump that busy-spins when idle: it never reaches an idle yield or a park, so any
    yield it makes is a hand-off yield."""
    config = make_config(instance, [account()], yield_every_us=yield_every_us)
    engine = msgspec.structs.replace(config.engine, wait="busy-spin")
    return GatewayRig(rings, msgspec.structs.replace(config, engine=engine))


@pytest.mark.parametrize("yield_every_us", [0, 50])
def test_a_pump_that_never_idles_still_yields_but_not_every_pass(
    instance: str, rings: RingFactory, yield_every_us: int
) -> None:
    rig = never_idle_rig(instance, rings, yield_every_us)
    try:
        rig.core.start()
        started = time.monotonic_ns()
        wait_until(lambda: rig.core.stats()["passes"] > 200_000)
        stats = rig.core.stats()
        ran_us = (time.monotonic_ns() - started) / 1000
        rig.core.stop()
    finally:
        rig.close()
    assert stats["parks"] == 0
    if yield_every_us == 0:
        assert stats["handoff_yields"] == 0
    else:
        # at least one per interval of running, and not one per pass
        assert 0 < stats["handoff_yields"] <= ran_us / yield_every_us + 1
        assert stats["handoff_yields"] < stats["passes"] / 10


def test_yield_every_us_is_checked() -> None:
    with pytest.raises(ConfigError, match=re.escape("gateway.yield_every_us -1: must be in 0..2")):
        parse_config('[engine]\ninstance = "x"\n[gateway]\nyield_every_us = -1\n', "t")
