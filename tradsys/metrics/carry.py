"""Counters of a restarted process that carry on from its predecessor's.

The gateway and the md sidecar count in their own memory and write their figures to a
stats file; when the supervisor restarts one (``kill -9``, a crash) the new process
counts from zero. The scrape endpoint is the supervisor, which did not restart, so a
counter that goes back reads to Prometheus as an unexplained reset, and an alert on
``increase(tradsys_gateway_events_dropped_total[5m]) > 0`` or a total on a dashboard
goes wrong (audit W). Shard workers keep their counters in their control blocks, which
outlive a worker, so theirs never go back; this gives the sidecars the same promise.

How: per counter sample (name and labels), the sum of what earlier processes last
showed is added to the current process's value. What a process counted after the last
scrape before it died is not seen: the totals stay monotonic, and can be short by that.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import Metric

# families whose samples only ever grow within one process
_GROWING = frozenset({"counter", "histogram"})

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


class CarriedCounters:
    """One restartable process's counters, kept monotonic across its incarnations."""

    def __init__(self) -> None:
        self._pid: int | None = None
        self._base: dict[SampleKey, float] = {}
        self._last: dict[SampleKey, float] = {}

    def carry(self, pid: int, families: Iterable[Metric]) -> Iterator[Metric]:
        """``families`` of the process ``pid``, with every earlier incarnation's last
        values added to their counter and histogram samples (gauges pass unchanged)."""
        if pid != self._pid:
            for key, value in self._last.items():
                self._base[key] = self._base.get(key, 0.0) + value
            self._last = {}
            self._pid = pid
        for family in families:
            if family.type in _GROWING:
                carried = []
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    self._last[key] = sample.value
                    carried.append(sample._replace(value=sample.value + self._base.get(key, 0.0)))
                family.samples = carried
            yield family
