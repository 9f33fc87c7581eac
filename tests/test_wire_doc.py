"""docs/protocol.md's record and code tables are what tradsys.wire_doc makes of the code."""

from __future__ import annotations

import struct
import subprocess
import sys
from enum import IntEnum
from pathlib import Path

import pytest

from tradsys import wire, wire_doc
from tradsys.protocols import binary

PROTOCOL_MD = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def test_protocol_md_tables_are_current() -> None:
    written = wire_doc.between_markers(PROTOCOL_MD.read_text())
    assert written == wire_doc.render(), (
        "the record and code tables in docs/protocol.md differ from tradsys/wire.py: "
        f"regenerate them with `{wire_doc.REGENERATE}`"
    )


def test_every_field_and_code_is_in_the_tables() -> None:
    tables = wire_doc.render()
    for dtype in (wire.COMMAND_DTYPE, wire.EVENT_DTYPE):
        assert dtype.fields is not None
        for name, (_, offset, *_) in dtype.fields.items():
            assert f"| {offset} | " in tables and f"`{name}`" in tables
    for enum, _ in wire_doc.ENUM_TABLES:
        for member in enum:
            assert f"| {member.value} | `{member.name}` |" in tables


def test_record_rows_cover_every_byte() -> None:
    for dtype, meanings in (
        (wire.COMMAND_DTYPE, wire_doc.COMMAND_FIELDS),
        (wire.EVENT_DTYPE, wire_doc.EVENT_FIELDS),
    ):
        rows = wire_doc.record_rows(dtype, meanings, "record")
        at = 0
        for offset, kind, _, _ in rows:
            assert int(offset) == at
            at += int(kind.split("[")[1].rstrip("]")) if "[" in kind else int(kind[1:]) // 8
        assert at == wire.RECORD_SIZE


def test_body_rows_follow_the_struct_formats() -> None:
    rows = wire_doc.body_rows(binary.SYMBOL_ENTRY, wire_doc.BODIES[3][2], "SYMBOLS")
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("0", "u32", "`symbol_id`"),
        ("4", "u8[4]", "(reserved)"),
        ("8", "i64", "`tick_size`"),
        ("16", "i64", "`lot_size`"),
        ("24", "char[40]", "`name`"),
    ]
    with pytest.raises(wire_doc.WireDocError, match="more fields named"):
        wire_doc.body_rows(struct.Struct("<I"), [("a", ""), ("b", "")], "two")
    with pytest.raises(wire_doc.WireDocError, match="more fields than named"):
        wire_doc.body_rows(struct.Struct("<II"), [("a", "")], "one")


def test_a_field_without_a_meaning_is_an_error() -> None:
    meanings = dict(wire_doc.EVENT_FIELDS)
    del meanings["exec_id"]
    with pytest.raises(wire_doc.WireDocError, match="exec_id"):
        wire_doc.record_rows(wire.EVENT_DTYPE, meanings, "EVENT")


def test_a_code_without_a_meaning_is_an_error() -> None:
    class Fresh(IntEnum):
        KNOWN = 1
        NEW = 2

    wire_doc.CODE_MEANINGS[Fresh] = {"KNOWN": "known"}
    try:
        assert wire_doc.code_meaning(Fresh, Fresh.KNOWN) == "known"
        with pytest.raises(wire_doc.WireDocError, match=r"Fresh\.NEW has no meaning"):
            wire_doc.enum_rows(Fresh)
    finally:
        del wire_doc.CODE_MEANINGS[Fresh]


def test_write_replaces_only_what_is_between_the_markers(tmp_path: Path) -> None:
    doc = tmp_path / "protocol.md"
    doc.write_text(f"before\n{wire_doc.BEGIN}\nstale\n{wire_doc.END}\nafter\n")
    assert wire_doc.main(["--write", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith(f"before\n{wire_doc.BEGIN}\n")
    assert text.endswith(f"{wire_doc.END}\nafter\n")
    assert wire_doc.between_markers(text) == wire_doc.render()


def test_module_prints_the_tables() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tradsys.wire_doc"], check=True, capture_output=True, text=True
    ).stdout
    assert out == wire_doc.render()
