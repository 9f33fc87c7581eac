"""The md sidecar builds a heartbeat's per-symbol rows as tuples instead of SymbolSeqs
structs (tradsys/cores/md_heartbeat.py): the bytes must be the ones the structs give,
so every subscriber decodes the same heartbeat."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from tradsys.marketdata.protocol import Heartbeat, SymbolSeqs, heartbeat_encoder

seq = st.integers(min_value=0, max_value=2**63 - 1)
row = st.tuples(st.text(min_size=1, max_size=12), st.integers(1, 2**31 - 1), seq, seq, seq, seq)


@given(st.lists(row, max_size=50), seq, st.integers(0, 2**63 - 1))
def test_tuple_rows_encode_as_the_structs_do(
    rows: list[tuple[str, int, int, int, int, int]], t: int, feed: int
) -> None:
    structs = [SymbolSeqs(*r) for r in rows]
    fast = heartbeat_encoder.encode(Heartbeat(t, feed, 1000, rows))  # type: ignore[arg-type]
    assert fast == heartbeat_encoder.encode(Heartbeat(t, feed, 1000, structs))
    assert msgspec.msgpack.decode(fast, type=Heartbeat).symbols == structs
