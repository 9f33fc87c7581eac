"""The `/metrics` HTTP endpoint, served by the supervisor from a thread of its own."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.registry import Collector


class MetricsServer:
    """prometheus_client's HTTP server on a registry of our collectors only (not the
    default one: its process collector would describe the supervisor, not the engine)."""

    def __init__(self, listen: str, *collectors: Collector) -> None:
        host, _, port = listen.rpartition(":")
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in collectors:
            self.registry.register(collector)
        self._server: WSGIServer
        self._thread: threading.Thread
        self._server, self._thread = start_http_server(
            int(port), addr=host or "127.0.0.1", registry=self.registry
        )

    @property
    def address(self) -> str:
        """host:port actually bound (port 0 in the config picks a free one)."""
        host, port = self._server.server_address[:2]
        return f"{host.decode() if isinstance(host, bytes) else host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
