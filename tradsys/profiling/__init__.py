"""Latency profiling pieces that TradSys's own benchmarks use and that users' latency
scripts import: an open-loop schedule (load on a fixed timetable, latency measured from
the intended send time so queueing is never hidden), an HdrHistogram latency recorder,
and a stage breakdown (where the microseconds go between timestamped stages).

See ``perf/latency_example.py`` for a complete script."""

from tradsys.profiling.latency import LatencyRecorder
from tradsys.profiling.openloop import OpenLoop
from tradsys.profiling.stages import StageBreakdown

__all__ = ["LatencyRecorder", "OpenLoop", "StageBreakdown"]
