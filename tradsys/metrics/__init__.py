"""Prometheus metrics: a custom collector that reads the instance's shared memory (control
blocks, ring headers, stage-latency histograms) when it is scraped, so nothing is
observed on the hot path.

The collector and the server are imported on first use: a shard worker or the gateway
imports only ``tradsys.metrics.latency_segment`` (to record into its segment) and so does
not load prometheus_client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tradsys.metrics.collector import InstanceCollector
    from tradsys.metrics.server import MetricsServer

__all__ = ["InstanceCollector", "MetricsServer"]

_WHERE = {"InstanceCollector": "collector", "MetricsServer": "server"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"tradsys.metrics.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'tradsys.metrics' has no attribute {name!r}")
