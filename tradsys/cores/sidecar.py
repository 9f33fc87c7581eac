"""The contract between the supervisor and the processes it runs beside the shard workers
(the gateway, the market-data sidecar): how one is started, how it says it is ready, and
how it is stopped.

- Started as ``python -m tradsys.cores.<name> <instance_dir>/config.json``: the
  supervisor writes the effective configuration there (JSON, the same structs as the
  TOML), so a sidecar sees exactly what the supervisor validated.
- It attaches to the rings the supervisor created (``segment_name(instance, role, shard)``
  with roles ``cmd``, ``evt``, ``md``) and to nothing it does not own.
- Once it serves, it writes ``<instance_dir>/<name>.json`` (atomically, with its pid and
  whatever a client needs to find it: endpoints, socket paths); the supervisor waits for
  that file, and `tradsys status` shows it.
- SIGTERM, SIGINT or SIGHUP asks it to finish what it holds and exit 0; the file is removed.
- When the supervisor restarts it (it died, or exited), the restarted process finds in
  its environment (``TRADSYS_KEPT_ENDPOINTS``) the endpoints its first process
  announced: one that asked for any free port (tcp port 0) binds that same port again,
  so clients that know only the address (a subscriber on another host) can follow.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import msgspec

from tradsys.config import Config, ConfigError, check_config
from tradsys.cores.parent_watch import STOP_SIGNALS

CONFIG_FILE = "config.json"
# JSON {key: endpoint or [endpoints]} of the announcement of a restarted sidecar's first
# process, in the restarted one's environment
KEPT_ENDPOINTS_ENV = "TRADSYS_KEPT_ENDPOINTS"


def write_effective_config(config: Config) -> Path:
    """Where the supervisor leaves the config its sidecars read (atomic replace)."""
    path = config.instance_dir / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # owner only: it holds the accounts' api_key_sha256
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # a .tmp left by an older build may be wider
        f.write(msgspec.json.encode(config))
        f.flush()
        os.fsync(f.fileno())  # a gateway reload persisted here must survive a crash
    tmp.replace(path)
    return path


def read_effective_config(path: str | Path) -> Config:
    """The config a sidecar was started with; validated again, so a hand-edited file
    cannot slip past the rules."""
    try:
        config = msgspec.json.decode(Path(path).read_bytes(), type=Config)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return check_config(config, str(path))  # the same cross-field rules as the TOML


def status_path(config: Config, name: str) -> Path:
    return config.instance_dir / f"{name}.json"


def announce_ready(config: Config, name: str, **info: Any) -> Path:
    """Tell the supervisor (and `tradsys status`) that ``name`` serves, and where."""
    path = status_path(config, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"name": name, "pid": os.getpid(), **info}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(path)
    return path


def read_announcement(config: Config, name: str) -> dict[str, Any] | None:
    """What a sidecar announced, or None when it has not (yet)."""
    try:
        doc: dict[str, Any] = json.loads(status_path(config, name).read_text())
    except (OSError, ValueError):
        return None
    return doc


def withdraw(config: Config, name: str) -> None:
    """Remove the announcement, if it is still this process's own."""
    doc = read_announcement(config, name)
    if doc is not None and doc.get("pid") == os.getpid():
        status_path(config, name).unlink(missing_ok=True)


def stop_event() -> threading.Event:
    """An event set by SIGTERM/SIGINT, for a sidecar's main loop to poll or wait on."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    return stop


def _is_endpoint(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("tcp://", "ipc://"))


def announced_endpoints(doc: dict[str, Any]) -> dict[str, Any]:
    """The ZeroMQ endpoints of an announcement (a ``tcp://`` or ``ipc://`` string, or a
    list of them), by key; the rest (pid, symbols) is left out."""
    return {
        key: value
        for key, value in doc.items()
        if _is_endpoint(value)
        or (isinstance(value, list) and value and all(_is_endpoint(v) for v in value))
    }


def kept_endpoints() -> dict[str, Any]:
    """What the first process of this sidecar announced, when this one is a restart
    (:data:`KEPT_ENDPOINTS_ENV`); empty at a first start."""
    raw = os.environ.get(KEPT_ENDPOINTS_ENV)
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    return announced_endpoints(doc) if isinstance(doc, dict) else {}
