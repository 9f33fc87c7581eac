from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.edge_rig import EdgeRig, edge_config, running_edge


@pytest.fixture
def edge(instance: str, tmp_path: Path) -> Iterator[EdgeRig]:
    """The real gateway edge over the fake core; everything is stopped after the test."""
    with running_edge(edge_config(instance, tmp_path)) as rig:
        yield rig
