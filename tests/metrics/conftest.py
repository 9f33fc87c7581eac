"""The running instance the metrics tests scrape: one shard worker, no gateway and no md
sidecar (the tests drive the shard's rings themselves), /metrics on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tradsys.config import parse_config
from tradsys.cores.supervisor import Supervisor


@pytest.fixture
def durability() -> str | None:
    """The shard's journal durability (None: the default); a module overrides it."""
    return None


@pytest.fixture
def supervisor(instance: str, tmp_path: Path, durability: str | None) -> Iterator[Supervisor]:
    journal = f'[journal]\ndurability = "{durability}"\n' if durability else ""
    text = f"""
[engine]
instance = "{instance}"
data_dir = "{tmp_path}"
ring_capacity = 1024
{journal}[gateway]
enabled = false
[md]
enabled = false
[metrics]
listen = "127.0.0.1:0"
[[shard]]
id = 0
[[instrument]]
symbol = "ACME"
symbol_id = 1
reference_price = 100
"""
    sup = Supervisor(parse_config(text, "test"), log=lambda line: None)
    try:
        sup.start()
        yield sup
    finally:
        sup.stop()
