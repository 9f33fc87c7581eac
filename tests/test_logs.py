"""Structured log lines: logfmt by default, JSON on request, the process identity on every
line, extra fields, and a parser that reads back exactly what was written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradsys import logs


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_one_logfmt_line_per_event_with_process_and_shard(restore_root_logging: None) -> None:
    out = io.StringIO()
    logs.configure("worker", 3, stream=out, as_json=False)
    logging.getLogger("tradsys.worker").info(
        'recovered at seq %d from "snap"', 12, extra={"fields": {"replayed": 5}}
    )
    (line,) = out.getvalue().splitlines()
    entry = logs.parse_logfmt(line)
    assert entry["proc"] == "worker" and entry["shard"] == "3" and entry["level"] == "info"
    assert entry["msg"] == 'recovered at seq 12 from "snap"'
    assert entry["replayed"] == "5" and entry["logger"] == "tradsys.worker"
    assert entry["ts"].endswith("Z") and int(entry["pid"]) > 0


def test_json_lines_on_request(restore_root_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(logs.FORMAT_ENV, "json")
    out = io.StringIO()
    logs.configure("gateway", stream=out)
    logging.getLogger("tradsys.gateway").warning("session %s dropped", "s1")
    entry = json.loads(out.getvalue())
    assert entry["proc"] == "gateway" and "shard" not in entry
    assert entry["level"] == "warning" and entry["msg"] == "session s1 dropped"


def test_configure_replaces_earlier_handlers(restore_root_logging: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    logs.configure("md", stream=first)
    logs.configure("md", stream=second)
    logging.getLogger("x").info("once")
    assert first.getvalue() == "" and second.getvalue().count("msg=once") == 1


@given(st.text(max_size=40))
def test_logfmt_round_trips_any_message(text: str) -> None:
    fmt = logs.StructuredFormatter("supervisor", None, as_json=False)
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "%s", (text,), None)
    assert logs.parse_logfmt(fmt.format(record))["msg"] == text
