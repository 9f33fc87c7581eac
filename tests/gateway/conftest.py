"""Fixtures of the gateway tests: a rig whose gateway is always closed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import RingFactory
from tests.gateway.rig import GatewayRig, account, make_config


@pytest.fixture
def make_rig(instance: str, rings: RingFactory) -> Iterator[Callable[..., GatewayRig]]:
    """make_rig(accounts=[...], cancel_on_start=..., **gateway_section) → a rig; closed
    after the test."""
    made: list[GatewayRig] = []

    def make(
        accounts: list[Any] | None = None, *, cancel_on_start: bool = False, **gateway: Any
    ) -> GatewayRig:
        config = make_config(instance, accounts or [account()], **gateway)
        rig = GatewayRig(rings, config, cancel_on_start=cancel_on_start)
        made.append(rig)
        return rig

    try:
        yield make
    finally:
        for rig in made:
            rig.close()
