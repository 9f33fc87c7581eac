"""The md sidecar's series in `/metrics`: they parse with prometheus_client's own parser,
follow the naming conventions, move by exactly what was published, and the Grafana
dashboard's market-data panels chart only what is exported."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zmq
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.marketdata.md_rig import DEADLINE_S, md_config, running
from tradsys.cores.supervisor import Supervisor
from tradsys.marketdata.protocol import SnapshotRequest, reply_decoder
from tradsys.matching import CEngine
from tradsys.matching.commands import batch, clock_tick
from tradsys.matching.workload import mixed_stream
from tradsys.metrics.md_series import families_of
from tradsys.wire import COMMAND_DTYPE, MdKind

pytestmark = pytest.mark.multiprocess

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "tradsys-dashboard.json"


def families(sup: Supervisor) -> list[Metric]:
    assert sup.metrics is not None
    with urllib.request.urlopen(f"http://{sup.metrics.address}/metrics", timeout=10) as reply:
        return list(text_string_to_metric_families(reply.read().decode()))


def samples_of(found: list[Metric]) -> dict[str, float]:
    out = {}
    for family in found:
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def test_md_series_move_when_trades_flow(instance: str, tmp_path: Path) -> None:
    base = md_config(instance, tmp_path)
    config = msgspec.structs.replace(
        base, metrics=msgspec.structs.replace(base.metrics, listen="127.0.0.1:0")
    )
    with running(config) as rig:
        sup = rig.supervisor
        assert sup is not None
        symbols = rig.config.symbols_of(0)
        # tick the engine's clock first, so every record carries a real timestamp
        stream = mixed_stream(3000, 17, symbols)
        cmds = np.zeros(len(stream) + 1, COMMAND_DTYPE)
        cmds[:1] = batch(clock_tick(time.clock_gettime_ns(time.CLOCK_REALTIME)))
        cmds[1:] = stream
        reference = CEngine()
        for ins in symbols:
            reference.add_instrument(ins)
        kinds = reference.process(cmds).md["kind"]
        reference.close()
        want = {
            "trade": int((kinds == MdKind.TRADE).sum()),
            "bbo": int((kinds == MdKind.BBO).sum()),
            "l2": int((kinds == MdKind.L2_UPDATE).sum()),
            "status": int((kinds == MdKind.STATUS).sum()),
        }
        assert min(want.values()) > 0
        rig.send(0, cmds)

        dealer = zmq.Context.instance().socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.RCVTIMEO, int(DEADLINE_S * 1000))
        dealer.connect(rig.snapshot)
        try:
            dealer.send(msgspec.msgpack.encode(SnapshotRequest(symbols[0].symbol, id=1)))
            reply_decoder.decode(dealer.recv())
            dealer.send(b"\xc1 not msgpack")
            reply_decoder.decode(dealer.recv())
        finally:
            dealer.close()

        total = sum(want.values())
        deadline = time.monotonic() + DEADLINE_S
        while True:  # the sidecar rewrites its stats file once a second
            found = families(sup)
            s = samples_of(found)
            if (
                s.get("tradsys_md_publish_lag_seconds_count{}") == total
                and s.get("tradsys_md_snapshot_requests_total{outcome=malformed_request}") == 1
            ):
                break
            assert time.monotonic() < deadline, f"/metrics never caught up: {s}"

    for channel, n in want.items():
        assert s[f"tradsys_md_published_records_total{{channel={channel}}}"] == n
        # a stream of single commands: each record its own message, or packed with others
        messages = s[f"tradsys_md_published_messages_total{{channel={channel}}}"]
        assert 1 <= messages <= n
    assert s["tradsys_md_published_bytes_total{}"] >= total * 64
    assert s["tradsys_md_snapshot_requests_total{outcome=served}"] == 1
    assert s["tradsys_md_snapshot_requests_total{outcome=unknown_symbol}"] == 0
    assert s["tradsys_md_heartbeats_total{}"] >= 1
    # everything the worker pushed was drained: the engine's records and the refresh
    # image the sidecar asked for at its start, counted on both sides alike
    drained = s["tradsys_md_drained_records_total{shard=0}"]
    assert drained == s["tradsys_shard_md_records_total{shard=0}"] > total
    # the lag histogram: every record stamped, cumulative buckets, +Inf is the count
    buckets = sorted(
        (float(k.split("le=")[1].rstrip("}")), v)
        for k, v in s.items()
        if k.startswith("tradsys_md_publish_lag_seconds_bucket")
    )
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and buckets[-1] == (float("inf"), total)
    assert 0 < s["tradsys_md_publish_lag_seconds_sum{}"] < total * 60

    # names: lower case, documented, counters as *_total
    md = [f for f in found if f.name.startswith("tradsys_md_")]
    assert {f.name for f in md} >= {
        "tradsys_md_published_records",
        "tradsys_md_published_messages",
        "tradsys_md_published_bytes",
        "tradsys_md_snapshot_requests",
        "tradsys_md_drained_records",
        "tradsys_md_publish_lag_seconds",
    }
    for family in md:
        assert family.name == family.name.lower() and family.documentation
        if family.type == "counter":
            assert all(x.name in (f"{family.name}_total", f"{family.name}_created")
                       for x in family.samples)  # fmt: skip

    # the dashboard's market-data panels chart only exported series
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in doc["panels"] for t in panel["targets"]]
    charted = {m for e in exprs for m in re.findall(r"tradsys_md_[a-z_]+", e)}
    exported = {x.name for f in found for x in f.samples} | {f.name for f in found}
    assert len(charted) >= 4 and charted <= exported, charted - exported


def test_unknown_symbol_records_are_served() -> None:
    """The sidecar's count of records it had to drop reaches /metrics."""
    found = {f.name: f for f in families_of({"unknown_symbol_records": 7})}
    (sample,) = found["tradsys_md_unknown_symbol_records"].samples
    assert sample.value == 7


def test_no_md_series_without_a_running_sidecar(instance: str, tmp_path: Path) -> None:
    """A stats file left by a dead sidecar is not served as live figures."""
    base = md_config(instance, tmp_path)
    config = msgspec.structs.replace(
        base,
        md=msgspec.structs.replace(base.md, enabled=False),
        metrics=msgspec.structs.replace(base.metrics, listen="127.0.0.1:0"),
    )
    stale = config.instance_dir / "md.stats.json"
    with Supervisor(config, log=lambda line: None) as sup:
        stale.write_text(json.dumps({"pid": 1, "records": {"trade": 5}}))
        names = {f.name for f in families(sup)}
        assert names and not {n for n in names if n.startswith("tradsys_md_")}
