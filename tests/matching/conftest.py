"""Fixtures of the matching tests: every scenario runs against every engine available.

``engine_cls`` is the reference model and, once ``tradsys.matching.CEngine`` exists, the
C engine too, so the same hand-written expectations hold both to docs/matching.md.
"""

from __future__ import annotations

import pytest

import tradsys.matching as matching

ENGINE_CLASSES: list[type] = [matching.ReferenceEngine]
if hasattr(matching, "CEngine"):
    ENGINE_CLASSES.append(matching.CEngine)


@pytest.fixture(params=ENGINE_CLASSES, ids=lambda cls: cls.__name__)
def engine_cls(request: pytest.FixtureRequest) -> type:
    """An engine class implementing MatchingEngine."""
    cls: type = request.param
    return cls
