"""A colocated session the gateway ends itself — at its shutdown, or as a slow consumer —
ends quietly: nothing is logged as an error (asyncio's stream server of Python 3.11 logs a
connection handler that finishes cancelled as one, with a CancelledError traceback)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.client.edge_rig import KEYS, EdgeRig, edge_config, running_edge
from tradsys.client.orders import OrderClient
from tradsys.protocols.binary import EndReason


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _held(edge: EdgeRig) -> list[int]:
    return list(edge.run(lambda: list(edge.server.colocated.held)))


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.005)


def test_a_shutdown_with_a_colocated_session_open_logs_no_error(
    instance: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with running_edge(edge_config(instance, tmp_path)) as edge:
        client = OrderClient.connect(edge.unix, account_id=1, api_key=KEYS[1])
        try:
            _wait_until(lambda: len(_held(edge)) == 1, "held the session")
            edge.call(edge.server.close())  # the gateway's shutdown, the session open
            edge.run(lambda: None)  # one more loop pass: the server's done-callback ran
        finally:
            client.close()
    assert _errors(caplog) == []
    assert any(
        "colocated session" in r.getMessage() and "closed" in r.getMessage() for r in caplog.records
    )


def test_a_session_the_gateway_ends_logs_no_error(
    instance: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with running_edge(edge_config(instance, tmp_path)) as edge:
        client = OrderClient.connect(edge.unix, account_id=1, api_key=KEYS[1])
        try:
            _wait_until(lambda: len(_held(edge)) == 1, "held the session")
            (sid,) = _held(edge)
            reason = EndReason.SLOW_CONSUMER
            assert edge.run(lambda: edge.server.colocated.end(sid, reason, "held back"))
            _wait_until(lambda: edge.stats()["colocated_connections"] == 0, "ended it")
            edge.run(lambda: None)  # one more loop pass: the server's done-callback ran
        finally:
            client.close()
    assert _errors(caplog) == []
