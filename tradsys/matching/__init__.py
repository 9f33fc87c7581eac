"""The matching core: price-time order books, one engine per shard.

``CEngine`` is the C core; ``ReferenceEngine`` the plain-Python model it is checked
against. Both implement :class:`MatchingEngine` and the rules in docs/matching.md.
"""

from tradsys.matching.api import (
    Bbo,
    MatchingEngine,
    Output,
    Phase,
    StatusReason,
    snapshot_digest,
)
from tradsys.matching.engine import CEngine
from tradsys.matching.instrument import Instrument
from tradsys.matching.reference import ReferenceEngine

__all__ = [
    "Bbo",
    "CEngine",
    "Instrument",
    "MatchingEngine",
    "Output",
    "Phase",
    "ReferenceEngine",
    "StatusReason",
    "snapshot_digest",
]
