"""docs/protocol.md is what a client is written from (an auditor wrote one from it alone
and the doc said LOGIN_ACCEPTED was 160 bytes: such a client refuses every login). The
messages table is checked against the codec: each fixed body size, and the sum of the
fields the row lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tradsys.protocols.binary import (
    ACCEPTED_BODY,
    LOGIN_BODY,
    REASON_BODY,
    SYMBOL_ENTRY,
    MessageType,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
WIDTH = {"u8": 1, "u32": 4, "u64": 8, "i64": 8}


def table_rows() -> dict[str, str]:
    """Message name -> its body column, from the messages table."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and len(cells[0]) == 3:
            rows[cells[1]] = cells[3]
    return rows


def listed_bytes(body: str) -> int:
    """The byte count of the fields a row lists, in order (`u32 x`, `char[64] y`,
    `N reserved`, a bare `u32` reserved)."""
    total = 0
    for match in re.finditer(r"`(u8|u32|u64|i64|char\[(\d+)\])(?:\s[^`]*)?`|(\d+) reserved", body):
        if match.group(3):
            total += int(match.group(3))
        elif match.group(2):
            total += int(match.group(2))
        else:
            total += WIDTH[match.group(1)]
    return total


@pytest.mark.parametrize(
    ("name", "size", "lead"),
    [
        ("LOGIN", LOGIN_BODY.size, "bytes:"),
        ("LOGIN_ACCEPTED", ACCEPTED_BODY.size, "bytes:"),
        ("LOGIN_REJECTED", REASON_BODY.size, "bytes:"),
        ("END", REASON_BODY.size, "bytes:"),
        ("SYMBOLS", SYMBOL_ENTRY.size, "bytes,"),
    ],
)
def test_the_messages_table_gives_the_codecs_body_sizes(name: str, size: int, lead: str) -> None:
    body = table_rows()[name]
    stated = re.search(rf"(\d+) {lead}", body)
    assert stated is not None, f"{name}: no size in {body!r}"
    assert int(stated.group(1)) == size, f"{name}: the doc says {stated.group(1)}, the codec {size}"
    assert listed_bytes(body) == size, f"{name}: the listed fields add up to {listed_bytes(body)}"


def test_every_message_type_is_in_the_table() -> None:
    assert set(table_rows()) == {kind.name for kind in MessageType}
