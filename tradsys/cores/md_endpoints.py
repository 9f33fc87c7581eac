"""Binding the md sidecar's sockets to their configured endpoints — and, when the
supervisor restarts the sidecar, to the same ports as before.

A tcp endpoint with port 0 asks for any free port; the sidecar announces the one it got
(``md.json``). A subscriber on another host knows only that address, so a restarted
sidecar binds the port its instance's first sidecar process was given
(:func:`tradsys.cores.sidecar.kept_endpoints`), not a new one; if that port has been
taken meanwhile it fails, naming the endpoint, rather than move where nobody follows
(the supervisor retries with back-off, so it comes back once the port is free).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import zmq


class EndpointError(Exception):
    """An endpoint could not be bound; the message names its key and says why."""


def bind_endpoint(sock: zmq.Socket[Any], endpoint: str) -> str:
    """Bind, turning a tcp port 0 into "any free port"; return the bound endpoint, which
    is what the sidecar announces (a subscriber cannot connect to port 0)."""
    if any_port(endpoint):
        endpoint = endpoint[:-1] + "*"
    sock.bind(endpoint)
    return str(sock.getsockopt_string(zmq.LAST_ENDPOINT))


def any_port(endpoint: str) -> bool:
    """A tcp endpoint asking for any free port."""
    return endpoint.startswith("tcp://") and endpoint.endswith(":0")


@dataclass
class EndpointBinder:
    """Binds the ``[md]`` endpoints, a port-0 one to its kept port when there is one.

    ``kept``: the endpoints the first process announced, by announcement key (``publish``
    a list in config order, ``snapshot``, ``conflated_bbo``); empty at a first start."""

    kept: dict[str, Any] = field(default_factory=dict)

    def bind(self, sock: zmq.Socket[Any], key: str, configured: str, index: int = -1) -> str:
        """Bind ``configured`` (``[md] <key>``, item ``index`` of a list) and return the
        bound endpoint; EndpointError if it cannot be bound."""
        where = f"md.{key}" if index < 0 else f"md.{key}[{index}]"
        kept = self._kept_port(key, index) if any_port(configured) else None
        endpoint = configured if kept is None else f"{configured[:-1]}{kept}"
        try:
            return bind_endpoint(sock, endpoint)
        except zmq.ZMQError as exc:
            if kept is None:
                raise EndpointError(f"{where} = {configured!r}: cannot bind it: {exc}") from None
            raise EndpointError(
                f"{where} = {configured!r}: cannot bind {endpoint}, the port this "
                f"instance's md sidecar was given at its first start ({exc}). A restarted "
                "sidecar keeps its ports, as subscribers elsewhere know only those: free "
                "the port (the supervisor restarts the sidecar until it can bind it), or "
                "stop the instance to get a new one"
            ) from None

    def _kept_port(self, key: str, index: int) -> int | None:
        """The port the first process bound for this endpoint, if it was a tcp one."""
        value = self.kept.get(key)
        if index >= 0:
            value = value[index] if isinstance(value, list) and index < len(value) else None
        if not (isinstance(value, str) and value.startswith("tcp://")):
            return None
        try:
            port = int(value.rsplit(":", 1)[1])
        except ValueError:
            return None
        return port if 0 < port < 65536 else None
