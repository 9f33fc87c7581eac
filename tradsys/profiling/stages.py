"""Where the microseconds go: latency per hop between timestamped stages.

Give it, for each message, the time it reached each stage (for an order: gateway in,
shard in, matched, event out, client in), all from one clock; it reports each hop's
percentiles and the end-to-end ones. A hop whose tail is fat is where to look first.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from tradsys.profiling.latency import LatencyRecorder


class StageBreakdown:
    """Per-hop latency recorders for messages that pass ``stages`` in order."""

    def __init__(self, stages: Sequence[str]) -> None:
        if len(stages) < 2:
            raise ValueError("a breakdown needs at least two stages")
        self.stages = list(stages)
        self.hops = {f"{a} -> {b}": LatencyRecorder() for a, b in itertools.pairwise(stages)}
        self.total = LatencyRecorder()

    def record(self, stamps_ns: np.ndarray) -> None:
        """``stamps_ns``: shape (messages, stages), each row one message's timestamps."""
        stamps = np.asarray(stamps_ns, dtype=np.int64)
        if stamps.ndim != 2 or stamps.shape[1] != len(self.stages):
            raise ValueError(
                f"expected an array of shape (n, {len(self.stages)}), got {stamps.shape}"
            )
        deltas = np.diff(stamps, axis=1)
        if (deltas < 0).any():
            row = int(np.argwhere(deltas < 0)[0][0])
            raise ValueError(f"message {row}: a stage is stamped before the one it follows")
        for k, recorder in enumerate(self.hops.values()):
            recorder.record_many(deltas[:, k])
        self.total.record_many(stamps[:, -1] - stamps[:, 0])

    def rows(self) -> list[tuple[str, float, float, float]]:
        """(hop, p50 µs, p99 µs, p99.9 µs) per hop, then the total."""
        out = []
        for name, rec in [*self.hops.items(), ("total", self.total)]:
            p50, p99, p999 = rec.percentiles_us()
            out.append((name, p50, p99, p999))
        return out

    def table(self) -> str:
        width = max(len(r[0]) for r in self.rows())
        lines = [f"{'hop':<{width}}  {'p50 µs':>9}  {'p99 µs':>9}  {'p99.9 µs':>9}"]
        for name, p50, p99, p999 in self.rows():
            lines.append(f"{name:<{width}}  {p50:>9.2f}  {p99:>9.2f}  {p999:>9.2f}")
        return "\n".join(lines)
