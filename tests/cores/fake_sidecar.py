"""A stand-in sidecar for the supervisor's tests: it keeps the contract of
:mod:`tradsys.cores.sidecar` and writes down what it saw when it was told to stop."""

from __future__ import annotations

import json
import os
import sys

import psutil

from tradsys.cores.sidecar import announce_ready, read_effective_config, stop_event, withdraw


def run(name: str) -> int:
    config = read_effective_config(sys.argv[1])
    if os.environ.get("FAKE_SIDECAR_FAIL") == name:
        print(f"{name}: failing on purpose", flush=True)
        return 3
    stop = stop_event()
    announce_ready(config, name, endpoint=f"fake://{name}")
    stop.wait()
    status = json.loads((config.instance_dir / "supervisor.json").read_text())
    workers_alive = [psutil.pid_exists(s["pid"]) for s in status["shards"] if s["pid"]]
    record = {"pid": os.getpid(), "workers_alive_at_stop": workers_alive}
    (config.instance_dir / f"{name}.stopped").write_text(json.dumps(record))
    withdraw(config, name)
    return 0
