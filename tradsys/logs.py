"""Structured logs: one line per event, every line saying which process and shard wrote it.

Each TradSys process calls :func:`configure` once at start with its role (``supervisor``,
``worker``, ``gateway``, ``md``) and, for a worker, its shard. Lines are logfmt by
default (``ts=… level=info proc=worker shard=0 pid=… msg="…"``), readable by a person and
by Loki/Vector/grep alike; ``TRADSYS_LOG_FORMAT=json`` gives one JSON object per line
instead. Extra fields go in ``extra={"fields": {...}}``. Logging is for the control
plane: nothing on a per-order path logs.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, TextIO

FORMAT_ENV = "TRADSYS_LOG_FORMAT"


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\n\r\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


class StructuredFormatter(logging.Formatter):
    """Turns a record into one logfmt or JSON line with the process's identity."""

    def __init__(self, process: str, shard: int | None, as_json: bool) -> None:
        super().__init__()
        self.identity: dict[str, object] = {"proc": process}
        if shard is not None:
            self.identity["shard"] = shard
        self.as_json = as_json

    def fields(self, record: logging.LogRecord) -> dict[str, object]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, object] = {
            "ts": f"{stamp}.{int(record.created % 1 * 1e6):06d}Z",
            "level": record.levelname.lower(),
            **self.identity,
            "pid": record.process,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            out.update(extra)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return out

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        if self.as_json:
            return json.dumps(fields, default=str)
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())


def configure(
    process: str,
    shard: int | None = None,
    *,
    stream: TextIO | None = None,
    level: int = logging.INFO,
    as_json: bool | None = None,
) -> logging.Handler:
    """Send every log record of this process to ``stream`` (stderr) as structured lines;
    replaces handlers configured before, so each line is written once."""
    if as_json is None:
        as_json = os.environ.get(FORMAT_ENV, "logfmt").lower() == "json"
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(StructuredFormatter(process, shard, as_json))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def parse_logfmt(line: str) -> dict[str, Any]:
    """The inverse of the logfmt output (for tests and for tools that read the logs)."""
    out: dict[str, Any] = {}
    i, n = 0, len(line)
    while i < n:
        eq = line.index("=", i)
        key = line[i:eq]
        i = eq + 1
        if i < n and line[i] == '"':
            i += 1
            chars = []
            while line[i] != '"':
                if line[i] == "\\":
                    i += 1
                    chars.append({"n": "\n", "r": "\r"}.get(line[i], line[i]))
                else:
                    chars.append(line[i])
                i += 1
            value = "".join(chars)
            i += 1
        else:
            end = line.find(" ", i)
            end = n if end < 0 else end
            value = line[i:end]
            i = end
        out[key] = value
        while i < n and line[i] == " ":
            i += 1
    return out
