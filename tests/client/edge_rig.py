"""An in-process gateway edge for tests: the real ``GatewayServer`` (Unix handshake, TCP
sessions) on a uvloop loop in a thread, over the fake core, with a config made here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvloop

from tradsys.config import Config, parse_config
from tradsys.cores.gateway import GatewayServer
from tradsys.cores.gateway_auth import key_digest

KEYS = {1: "alice-key", 2: "bob-key", 3: "carol-key"}


def edge_toml(instance: str, data_dir: Path, **gateway: Any) -> str:
    """The test instance's config as TOML (so the CLI can be handed the same file)."""
    gw = {"tcp_listen": "127.0.0.1:0", "heartbeat_ms": 200, "login_timeout_ms": 500}
    gw.update(gateway)
    lines = [
        f'[engine]\ninstance = "{instance}"\ndata_dir = "{data_dir}"',
        "[[shard]]\nid = 0",
        '[[instrument]]\nsymbol = "ACME"\nsymbol_id = 1\nreference_price = 100',
        '[[instrument]]\nsymbol = "ZETA"\nsymbol_id = 2\nreference_price = 50',
        "[gateway]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in gw.items()),
    ]
    for i, key in KEYS.items():
        lines.append(
            f'[[account]]\nid = {i}\nname = "acct{i}"\napi_key_sha256 = "{key_digest(key)}"'
        )
    return "\n\n".join(lines) + "\n"


def edge_config(instance: str, data_dir: Path, **gateway: Any) -> Config:
    return parse_config(edge_toml(instance, data_dir, **gateway), "test")


class EdgeRig:
    """Runs a GatewayServer on its own loop thread until :meth:`close`."""

    def __init__(self, config: Config, core: Any) -> None:
        self.config = config
        self.core = core
        self.loop = uvloop.new_event_loop()
        self.server = GatewayServer(config, core)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self.server.start())
        self.unix = str(self.server.unix_path)
        self.tcp = self.server.tcp_address
        self.host, port = self.tcp.rsplit(":", 1)
        self.port = int(port)

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the loop's thread (to read its state consistently)."""

        async def wrapper() -> Any:
            return fn()

        return self.call(wrapper())

    def stats(self) -> dict[str, Any]:
        return dict(self.run(self.server.stats))

    def close(self) -> None:
        try:
            self.call(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


@contextlib.contextmanager
def running_edge(config: Config) -> Iterator[EdgeRig]:
    """The edge over a started fake core; both stopped on exit, also on failure."""
    from tests.client.fake_core import FakeCore

    core = FakeCore(config)
    core.start()
    try:
        rig = EdgeRig(config, core)
        try:
            yield rig
        finally:
            rig.close()
    finally:
        core.close()
