"""Binding the md sidecar's sockets to their configured endpoints."""

from __future__ import annotations

from typing import Any

import zmq


def bind_endpoint(sock: zmq.Socket[Any], endpoint: str) -> str:
    """Bind, turning a tcp port 0 into "any free port"; return the bound endpoint, which
    is what the sidecar announces (a subscriber cannot connect to port 0)."""
    if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
        endpoint = endpoint[:-1] + "*"
    sock.bind(endpoint)
    return str(sock.getsockopt_string(zmq.LAST_ENDPOINT))
