"""Prometheus metrics: a custom collector that reads the instance's shared memory (control
blocks, ring headers) when it is scraped, so nothing is observed on the hot path."""

from tradsys.metrics.collector import InstanceCollector
from tradsys.metrics.server import MetricsServer

__all__ = ["InstanceCollector", "MetricsServer"]
