"""wire.py and native/wire.h describe the same bytes: sizes, offsets, types, enums."""

from __future__ import annotations

import re
import sys
from enum import Enum
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import RingFactory
from tradsys import wire
from tradsys._native import ffi, lib
from tradsys.wire import C_STRUCTS, LAYOUT_VERSION, RECORD_SIZE

# The numpy dtype each C integer type must have (records are little-endian).
C_TO_NUMPY = {
    "uint8_t": np.dtype("u1"),
    "int8_t": np.dtype("i1"),
    "uint16_t": np.dtype("<u2"),
    "int16_t": np.dtype("<i2"),
    "uint32_t": np.dtype("<u4"),
    "int32_t": np.dtype("<i4"),
    "uint64_t": np.dtype("<u8"),
    "int64_t": np.dtype("<i8"),
}

# Which Python enum mirrors the C constants with each prefix.
ENUM_PREFIXES: dict[str, type[Enum]] = {
    "TS_CMD_": wire.CommandKind,
    "TS_SIDE_": wire.Side,
    "TS_ORD_": wire.OrderType,
    "TS_TIF_": wire.TimeInForce,
    "TS_FLAG_": wire.OrderFlag,
    "TS_STP_": wire.StpMode,
    "TS_CTL_": wire.ControlCode,
    "TS_EV_": wire.EventKind,
    "TS_REJ_": wire.RejectReason,
    "TS_CXL_": wire.CancelReason,
    "TS_EVF_": wire.EventFlag,
    "TS_OST_": wire.OrderState,
    "TS_MD_": wire.MdKind,
}

WIRE_H = Path(__file__).resolve().parents[1] / "native" / "wire.h"


def c_fields(struct: str) -> dict[str, tuple[int, int, str]]:
    """name -> (offset, size, C type name) of every field of a C struct, in order."""
    return {
        name: (f.offset, ffi.sizeof(f.type), f.type.cname) for name, f in ffi.typeof(struct).fields
    }


def c_constants(prefix: str) -> dict[str, int]:
    return {k[len(prefix) :]: getattr(lib, k) for k in dir(lib) if k.startswith(prefix)}


# ---- struct layouts -------------------------------------------------------------------


def test_constants_match() -> None:
    assert LAYOUT_VERSION == lib.TS_LAYOUT_VERSION
    assert RECORD_SIZE == lib.TS_RECORD_SIZE == 64


def test_every_struct_of_the_header_is_in_the_table() -> None:
    # A struct added to wire.h must get a dtype (and a row of C_STRUCTS) too.
    declared = set(re.findall(r"typedef struct (\w+)", WIRE_H.read_text()))
    assert declared == set(C_STRUCTS)
    assert all(s in ffi.list_types()[0] for s in C_STRUCTS)


@pytest.mark.parametrize("struct", sorted(C_STRUCTS))
def test_struct_size(struct: str) -> None:
    dtype = C_STRUCTS[struct]
    assert ffi.sizeof(struct) == dtype.itemsize == RECORD_SIZE


@pytest.mark.parametrize("struct", sorted(C_STRUCTS))
def test_struct_fields_match_dtype(struct: str) -> None:
    dtype = C_STRUCTS[struct]
    c = c_fields(struct)
    assert dtype.names is not None and dtype.fields is not None
    c_names = {name for name in c if not name.startswith("_pad")}
    assert c_names == set(dtype.names), "fields only in C or only in numpy"
    for name in dtype.names:
        np_type, np_offset = dtype.fields[name][:2]
        c_offset, c_size, c_type = c[name]
        assert ffi.offsetof(struct, name) == c_offset == np_offset, name
        assert c_size == np_type.itemsize, name
        assert np_type == C_TO_NUMPY[c_type], f"{name}: C {c_type}, numpy {np_type}"
        assert np_type.byteorder in "<|" or (np_type.byteorder == "=" and sys.byteorder == "little")


@pytest.mark.parametrize("struct", sorted(C_STRUCTS))
def test_padding_is_only_padding(struct: str) -> None:
    # Every byte of the record belongs to exactly one C field, and every byte numpy does
    # not name is a C _pad field: no hole is left undeclared on either side.
    dtype = C_STRUCTS[struct]
    owner = [""] * ffi.sizeof(struct)
    for name, (offset, size, _) in c_fields(struct).items():
        for i in range(offset, offset + size):
            assert owner[i] == "", f"byte {i} belongs to {owner[i]} and {name}"
            owner[i] = name
    assert "" not in owner, f"undeclared bytes at {[i for i, o in enumerate(owner) if not o]}"
    assert dtype.fields is not None
    named = set()
    for np_type, np_offset in (dtype.fields[n][:2] for n in dtype.fields):
        named.update(range(np_offset, np_offset + np_type.itemsize))
    unnamed = {owner[i] for i in range(RECORD_SIZE) if i not in named}
    assert all(name.startswith("_pad") for name in unnamed), unnamed


@pytest.mark.parametrize("struct", sorted(C_STRUCTS))
def test_c_written_record_reads_back_in_numpy(struct: str) -> None:
    # C stores distinct values in every field; numpy must read each from the same bytes.
    dtype = C_STRUCTS[struct]
    assert dtype.names is not None
    record = ffi.new(f"{struct} *")
    expected = {}
    for i, name in enumerate(dtype.names):
        bits = dtype.fields[name][0].itemsize * 8  # type: ignore[index]
        value = (0x0123456789ABCDEF * (i + 1) + i) % (1 << (bits - 1))  # fits signed too
        setattr(record, name, value)
        expected[name] = value
    parsed = np.frombuffer(ffi.buffer(record), dtype=dtype)[0]
    assert {name: int(parsed[name]) for name in dtype.names} == expected


# ---- enums ---------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", sorted(ENUM_PREFIXES))
def test_enum_matches_c(prefix: str) -> None:
    enum = ENUM_PREFIXES[prefix]
    c = c_constants(prefix)
    python = {name: int(member.value) for name, member in enum.__members__.items()}
    assert c, f"no C constants start with {prefix}"
    assert python == c, f"{enum.__name__} differs from the {prefix}* constants of wire.h"


def test_enum_spot_checks() -> None:
    assert lib.TS_CMD_NEW_ORDER == wire.CommandKind.NEW_ORDER
    assert lib.TS_EVF_DONE == wire.EventFlag.DONE
    assert lib.TS_REJ_THROTTLED == wire.RejectReason.THROTTLED


def test_every_wire_enum_is_checked() -> None:
    enums = {
        obj
        for obj in vars(wire).values()
        if isinstance(obj, type) and issubclass(obj, Enum) and obj.__module__ == wire.__name__
    }
    assert enums == set(ENUM_PREFIXES.values())


def test_every_enum_constant_of_wire_h_has_a_python_mirror() -> None:
    # A new enum in wire.h needs a Python enum and a row of ENUM_PREFIXES above.
    declared = re.findall(r"\b(TS_[A-Z0-9_]+)\s*=", WIRE_H.read_text())
    assert len(declared) >= sum(len(e.__members__) for e in ENUM_PREFIXES.values())
    homeless = [name for name in declared if not name.startswith(tuple(ENUM_PREFIXES))]
    assert homeless == []
    assert all(hasattr(lib, name) for name in declared), "the extension is out of date"


def test_wait_kinds_match_c() -> None:
    from tradsys.ring import WaitKind

    assert {m.name: int(m) for m in WaitKind} == c_constants("TS_WAIT_")


# ---- a round trip through a ring ------------------------------------------------------


def random_records(dtype: np.dtype[np.void], n: int, seed: int) -> np.ndarray:
    """n records with every field random over its whole range."""
    rng = np.random.default_rng(seed)
    records = np.zeros(n, dtype=dtype)
    assert dtype.names is not None
    for name in dtype.names:
        ftype = dtype.fields[name][0]  # type: ignore[index]
        # random bytes reinterpreted as the field's type: every bit pattern can occur
        records[name] = np.frombuffer(rng.bytes(n * ftype.itemsize), dtype=ftype)
    return records


@pytest.mark.parametrize("struct", sorted(C_STRUCTS))
def test_round_trip_through_a_ring(struct: str, rings: RingFactory) -> None:
    dtype = C_STRUCTS[struct]
    pair = rings.pair(capacity=64, slot_size=RECORD_SIZE)
    sent = random_records(dtype, 50, seed=len(struct))
    assert pair.producer.push_batch(sent) == 50
    received = np.zeros(64, dtype=dtype)
    assert pair.consumer.pop_batch(received) == 50
    assert dtype.names is not None
    for name in dtype.names:
        np.testing.assert_array_equal(received[name][:50], sent[name], err_msg=name)
    # and the bytes themselves, pads included
    assert received[:50].tobytes() == sent.tobytes()


def test_round_trip_of_a_command_built_from_enums(rings: RingFactory) -> None:
    pair = rings.pair(capacity=8)
    cmd = np.zeros(1, dtype=wire.COMMAND_DTYPE)
    cmd["kind"] = wire.CommandKind.NEW_ORDER
    cmd["side"] = wire.Side.SELL
    cmd["order_type"] = wire.OrderType.STOP_LIMIT
    cmd["tif"] = wire.TimeInForce.GTD
    cmd["flags"] = wire.OrderFlag.POST_ONLY
    cmd["stp_mode"] = wire.StpMode.CANCEL_BOTH
    cmd["symbol_id"] = 0xFFFF_FFFF
    cmd["account_id"] = 7
    cmd["order_id"] = 2**64 - 1
    cmd["price"] = -(2**63)
    cmd["quantity"] = 2**63 - 1
    cmd["stop_price"] = 12345
    cmd["display_qty"] = 100
    cmd["time_ns"] = 1_700_000_000_000_000_000
    assert pair.producer.push(cmd.tobytes())
    raw = pair.consumer.pop()
    assert raw is not None
    c = ffi.cast("ts_command *", ffi.from_buffer(raw))
    assert c.kind == lib.TS_CMD_NEW_ORDER
    assert c.side == lib.TS_SIDE_SELL
    assert c.order_type == lib.TS_ORD_STOP_LIMIT
    assert c.tif == lib.TS_TIF_GTD
    assert c.flags == lib.TS_FLAG_POST_ONLY
    assert c.stp_mode == lib.TS_STP_CANCEL_BOTH
    assert (c.symbol_id, c.account_id, c.order_id) == (0xFFFF_FFFF, 7, 2**64 - 1)
    assert (c.price, c.quantity, c.stop_price) == (-(2**63), 2**63 - 1, 12345)
    assert (c.display_qty, c.time_ns) == (100, 1_700_000_000_000_000_000)


def test_command_batches_keep_the_64_byte_layout() -> None:
    """np.concatenate would pack these dtypes to 63 bytes; batch() must not."""
    from tradsys.matching.commands import batch, cancel, new_order

    joined = batch(new_order(1, 1, 1, wire.Side.BUY, 5, 100), cancel(1, 1, 1))
    assert joined.dtype == wire.COMMAND_DTYPE and joined.dtype.itemsize == 64
    assert joined.tobytes()[7:8] == b"\x00"  # the pad byte is zero, not leftover memory
    assert joined["kind"].tolist() == [wire.CommandKind.NEW_ORDER, wire.CommandKind.CANCEL]


@settings(max_examples=200, deadline=None)
@given(
    values=st.tuples(
        *[st.integers(0, 255)] * 7,
        *[st.integers(0, 2**32 - 1)] * 2,
        st.integers(0, 2**64 - 1),
        *[st.integers(-(2**63), 2**63 - 1)] * 5,
    )
)
def test_command_format_packs_what_the_dtype_reads(values: tuple[int, ...]) -> None:
    """COMMAND_FORMAT and COMMAND_DTYPE are one layout: any field values packed by the
    one read back, field by field, through the other, with the pad byte zero."""
    packed = wire.COMMAND_FORMAT.pack(*values)
    rec = np.frombuffer(packed, wire.COMMAND_DTYPE)[0]
    assert tuple(int(rec[name]) for name in wire.COMMAND_DTYPE.names) == values
    assert packed[7] == 0


def test_every_reject_reason_has_a_text() -> None:
    assert set(wire.REJECT_TEXT) == set(wire.RejectReason)
    assert all(wire.REJECT_TEXT[r] for r in wire.RejectReason if r != wire.RejectReason.NONE)
