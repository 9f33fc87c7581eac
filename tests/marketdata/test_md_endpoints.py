"""Binding the md endpoints: a tcp port 0 is any free port at a first start, and the
port of the first start when the sidecar is restarted (the endpoints its first process
announced, handed over by the supervisor's SidecarProcess)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from tradsys.cores.md_endpoints import EndpointBinder, EndpointError
from tradsys.cores.sidecar import KEPT_ENDPOINTS_ENV, announced_endpoints, kept_endpoints


@pytest.fixture
def sockets(ctx: zmq.Context[Any]) -> Iterator[list[zmq.Socket[Any]]]:
    """PUB sockets for the test; all closed after it."""
    made: list[zmq.Socket[Any]] = []
    yield made
    for s in made:
        s.close(linger=0)


def pub(ctx: zmq.Context[Any], sockets: list[zmq.Socket[Any]]) -> zmq.Socket[Any]:
    s: zmq.Socket[Any] = ctx.socket(zmq.PUB)
    sockets.append(s)
    return s


def free_port() -> int:
    """A port that was free a moment ago: bound by a plain socket, closed at once (a
    ZeroMQ socket's close is asynchronous, its port still taken for a while)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_first_start_binds_any_free_port(
    ctx: zmq.Context[Any], sockets: list[zmq.Socket[Any]], tmp_path: Path
) -> None:
    binder = EndpointBinder()
    got = binder.bind(pub(ctx, sockets), "publish", "tcp://127.0.0.1:0", 0)
    assert got.startswith("tcp://127.0.0.1:") and not got.endswith(":0")
    ipc = f"ipc://{tmp_path}/pub"
    assert binder.bind(pub(ctx, sockets), "publish", ipc, 1) == ipc


def test_a_restart_binds_the_kept_port_of_the_same_endpoint(
    ctx: zmq.Context[Any], sockets: list[zmq.Socket[Any]], tmp_path: Path
) -> None:
    port = free_port()
    first = {
        "publish": [f"ipc://{tmp_path}/pub", f"tcp://127.0.0.1:{port}"],
        "snapshot": f"ipc://{tmp_path}/snap",
    }
    binder = EndpointBinder(first)
    assert binder.bind(pub(ctx, sockets), "publish", "tcp://127.0.0.1:0", 1) == (
        f"tcp://127.0.0.1:{port}"
    )
    # an endpoint the first start had no tcp port for (here: ipc) is any free port
    other = binder.bind(pub(ctx, sockets), "snapshot", "tcp://127.0.0.1:0")
    assert other != f"tcp://127.0.0.1:{port}" and not other.endswith(":0")
    # a configured port is the configured port, whatever was kept
    fixed = free_port()
    kept_elsewhere = EndpointBinder({"snapshot": f"tcp://127.0.0.1:{port}"})
    got = kept_elsewhere.bind(pub(ctx, sockets), "snapshot", f"tcp://127.0.0.1:{fixed}")
    assert got == f"tcp://127.0.0.1:{fixed}"


def test_a_kept_port_that_is_taken_is_an_error_naming_the_endpoint(
    ctx: zmq.Context[Any], sockets: list[zmq.Socket[Any]]
) -> None:
    squatter = pub(ctx, sockets)
    squatter.bind("tcp://127.0.0.1:*")
    taken = squatter.getsockopt_string(zmq.LAST_ENDPOINT)
    binder = EndpointBinder({"publish": ["ipc:///unused", taken]})
    with pytest.raises(EndpointError) as err:
        binder.bind(pub(ctx, sockets), "publish", "tcp://127.0.0.1:0", 1)
    text = str(err.value)
    assert text.startswith("md.publish[1] = 'tcp://127.0.0.1:0': cannot bind " + taken)
    assert "first start" in text and "in use" in text


def test_a_restarted_process_reads_what_its_first_one_announced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = {
        "name": "md",
        "pid": 41,
        "publish": ["ipc:///tmp/p", "tcp://127.0.0.1:5601"],
        "snapshot": "tcp://127.0.0.1:5602",
        "symbols": ["ACME", "BRKR"],
    }
    endpoints = announced_endpoints(doc)
    assert endpoints == {"publish": doc["publish"], "snapshot": doc["snapshot"]}
    monkeypatch.delenv(KEPT_ENDPOINTS_ENV, raising=False)
    assert kept_endpoints() == {}  # a first start
    monkeypatch.setenv(KEPT_ENDPOINTS_ENV, json.dumps(endpoints))
    assert kept_endpoints() == endpoints
    monkeypatch.setenv(KEPT_ENDPOINTS_ENV, "not json")
    assert kept_endpoints() == {}
