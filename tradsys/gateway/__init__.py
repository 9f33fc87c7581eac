"""The order-entry gateway's native core: sessions → pre-trade risk → shards, and back.

:class:`GatewayCore` is the whole API the gateway process needs; the pump itself is C
(``native/gateway*.c``, ``native/risk.c``).
"""

from tradsys.gateway.core import GatewayCore, GatewayError, next_epoch
from tradsys.gateway.risk import AccountState, PositionState, limits_cdata

__all__ = [
    "AccountState",
    "GatewayCore",
    "GatewayError",
    "PositionState",
    "limits_cdata",
    "next_epoch",
]
