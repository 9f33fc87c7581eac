"""The running instance the metrics tests scrape: one shard worker, no gateway and no md
sidecar (the tests drive the shard's rings themselves), /metrics on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine_toml import one_shard_instance
from tradsys.config import parse_config
from tradsys.cores.supervisor import Supervisor


@pytest.fixture
def durability() -> str | None:
    """The shard's journal durability (None: the default); a module overrides it."""
    return None


@pytest.fixture
def supervisor(instance: str, tmp_path: Path, durability: str | None) -> Iterator[Supervisor]:
    journal = f'[journal]\ndurability = "{durability}"\n' if durability else ""
    text = one_shard_instance(
        instance,
        tmp_path,
        # no sidecar: the md ring's fill is read by the tests as its reader's would be
        sections=f"{journal}[gateway]\nenabled = false\n"
        "[md]\nenabled = false\nexternal_reader = true\n"
        '[metrics]\nlisten = "127.0.0.1:0"',
    )
    sup = Supervisor(parse_config(text, "test"), log=lambda line: None)
    try:
        sup.start()
        yield sup
    finally:
        sup.stop()
