"""How a blocked ring side waits: a choice made per deployment, not per call site.

A pinned core on an isolated bare-metal CPU should busy-spin (lowest latency, and the
core has nothing else to do). A laptop or a 2-core CI box must not: spin briefly, then
yield or park on a futex that the other side wakes. The waiting itself runs in C with
the GIL released, so a waiting Python thread costs nothing to the rest of the process.
"""

from __future__ import annotations

from enum import IntEnum
from functools import cached_property
from typing import Any

import msgspec

from tradsys._native import ffi


class WaitKind(IntEnum):
    BUSY_SPIN = 1
    SPIN_YIELD = 2
    SPIN_PARK = 3


class WaitStrategy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, dict=True):
    """A wait strategy: spin ``spin_iters`` checks, then (by kind) keep spinning, yield,
    or yield ``yield_iters`` times and then park until woken."""

    kind: WaitKind = WaitKind.SPIN_PARK
    spin_iters: int = 1000
    yield_iters: int = 10

    @classmethod
    def busy_spin(cls) -> WaitStrategy:
        return cls(WaitKind.BUSY_SPIN, spin_iters=1 << 14, yield_iters=0)

    @classmethod
    def spin_yield(cls) -> WaitStrategy:
        return cls(WaitKind.SPIN_YIELD, spin_iters=200, yield_iters=0)

    @classmethod
    def spin_park(cls) -> WaitStrategy:
        return cls(WaitKind.SPIN_PARK, spin_iters=200, yield_iters=10)

    @classmethod
    def named(cls, name: str) -> WaitStrategy:
        """The strategy for a config value: ``busy-spin``, ``spin-yield`` or ``spin-park``."""
        makers = {
            "busy-spin": cls.busy_spin,
            "spin-yield": cls.spin_yield,
            "spin-park": cls.spin_park,
        }
        try:
            return makers[name]()
        except KeyError:
            raise ValueError(
                f"unknown wait strategy {name!r}; choose one of {', '.join(makers)}"
            ) from None

    @cached_property
    def cdata(self) -> Any:
        """The ``ts_wait_strategy`` C struct, made once per strategy object."""
        c = ffi.new("ts_wait_strategy *")
        c.kind = int(self.kind)
        c.spin_iters = self.spin_iters
        c.yield_iters = self.yield_iters
        return c


POLITE = WaitStrategy.spin_park()
"""The default: right for laptops, CI and shared machines."""
