"""Counters of a restarted process that carry on from its predecessor's.

The gateway and the md sidecar count in their own memory and write their figures to a
stats file; when the supervisor restarts one (``kill -9``, a crash) the new process
counts from zero. The scrape endpoint is the supervisor, which did not restart, so a
counter that goes back reads to Prometheus as an unexplained reset, and an alert on
``increase(tradsys_gateway_events_dropped_total[5m]) > 0`` or a total on a dashboard
goes wrong (audit W). Shard workers keep their counters in their control blocks, which
outlive a worker, so theirs never go back; this gives the sidecars the same promise.

How: per counter sample (name and labels), the sum of what earlier processes last
showed is added to the current process's value. A new process is a new pid, or the same
pid with a counter lower than it last showed (a pid reused). What a process counted
after the last scrape before it died is not seen: the totals stay monotonic, and can be
short by that. Scrapes run in threads of their own (two Prometheus servers scraping at
once), so one lock covers a scrape's reading and updating.

Between two incarnations (the dead process's figures are not shown, the new one has not
written its own yet: ~0.5 s of a restart) :meth:`CarriedCounters.held` gives the counters
as they last stood, so a scrape in that window does not lose the series -- Prometheus
would mark them stale and a dashboard's line would break at every restart (latency
audit F9). Gauges are left out: what a dead process's gauges said is not now.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client.core import Metric

# families whose samples only ever grow within one process
_GROWING = frozenset({"counter", "histogram"})

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


class CarriedCounters:
    """One restartable process's counters, kept monotonic across its incarnations."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._base: dict[SampleKey, float] = {}
        self._last: dict[SampleKey, float] = {}
        self._shown: list[Metric] = []  # the counter families of the last carry, carried

    def carry(self, pid: int, families: Iterable[Metric]) -> list[Metric]:
        """``families`` of the process ``pid``, with every earlier incarnation's last
        values added to their counter and histogram samples (gauges pass unchanged)."""
        families = list(families)
        growing = [
            ((s.name, tuple(sorted(s.labels.items()))), s.value)
            for f in families
            if f.type in _GROWING
            for s in f.samples
        ]
        with self._lock:
            went_back = any(v < self._last.get(k, 0.0) for k, v in growing)
            if pid != self._pid or went_back:
                for key, value in self._last.items():
                    self._base[key] = self._base.get(key, 0.0) + value
                self._last = {}
                self._pid = pid
            self._last.update(growing)
            base = dict(self._base)
        for family in families:
            if family.type in _GROWING:
                family.samples = [
                    s._replace(
                        value=s.value + base.get((s.name, tuple(sorted(s.labels.items()))), 0.0)
                    )
                    for s in family.samples
                ]
        with self._lock:
            self._shown = [f for f in families if f.type in _GROWING]
        return families

    def held(self) -> list[Metric]:
        """The counter and histogram families as the last :meth:`carry` showed them:
        for a scrape while no incarnation reports (empty before the first)."""
        with self._lock:
            return list(self._shown)
