"""What only the C engine's Python face has to get right: the C engine's life cycle, the
record copies across the cffi boundary, and errors named as the interface promises.
(The rules themselves are checked on every engine by the other matching tests.)"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from tradsys.matching import CEngine, Instrument, Phase, ReferenceEngine
from tradsys.matching.commands import batch, cancel, new_order
from tradsys.wire import COMMAND_DTYPE, EventKind, Side

ACME = Instrument("ACME", 1, reference_price=100)


def engine() -> CEngine:
    e = CEngine()
    e.add_instrument(ACME)
    return e


def test_close_is_idempotent_and_final() -> None:
    e = engine()
    e.close()
    e.close()
    assert e.closed
    with pytest.raises(ValueError, match="closed"):
        e.live_orders()


def test_context_manager_frees_the_engine() -> None:
    with engine() as e:
        e.submit(new_order(1, 1, 1, Side.BUY, 5, 99))
        assert e.live_orders() == 1
    assert e.closed


def test_collected_engine_is_freed() -> None:
    e = engine()
    finalizer = e._finalizer
    ref = weakref.ref(e)
    del e
    gc.collect()
    assert ref() is None
    assert not finalizer.alive


def test_output_records_are_owned_copies_with_clean_pads() -> None:
    e = engine()
    first = e.process(
        batch(new_order(1, 1, 1, Side.SELL, 5, 100), new_order(2, 1, 2, Side.BUY, 3, 100))
    )
    kept = first.events.tobytes()
    e.process(batch(cancel(1, 1, 1)))  # reuses the engine's buffers
    assert first.events.tobytes() == kept
    assert first.events.flags.writeable and first.md.flags.writeable
    raw_ev, raw_md = first.events.tobytes(), first.md.tobytes()
    for i in range(len(first.events)):
        assert raw_ev[i * 64 + 12 : i * 64 + 16] == b"\0\0\0\0"
    for i in range(len(first.md)):
        assert raw_md[i * 64 + 2 : i * 64 + 4] == b"\0\0"
        assert raw_md[i * 64 + 52 : i * 64 + 56] == b"\0\0\0\0"


def test_commands_in_any_layout_of_the_command_fields() -> None:
    packed = np.concatenate(
        [new_order(1, 1, 1, Side.SELL, 5, 100), new_order(2, 1, 2, Side.BUY, 3, 100)]
    )
    assert packed.dtype != COMMAND_DTYPE  # numpy packs structured dtypes on concatenation
    strided = np.zeros(4, COMMAND_DTYPE)
    strided[0], strided[2] = packed[0], packed[1]
    a, b = engine().process(packed), engine().process(strided[::2])
    assert a.events.tobytes() == b.events.tobytes()
    assert [EventKind(k) for k in a.events["kind"]] == [
        EventKind.ACCEPTED, EventKind.ACCEPTED, EventKind.TRADE, EventKind.TRADE,
    ]  # fmt: skip


def test_bad_command_arrays() -> None:
    e = engine()
    with pytest.raises(TypeError, match="COMMAND_DTYPE"):
        e.process(np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="one-dimensional"):
        e.process(np.zeros((2, 2), COMMAND_DTYPE))
    out = e.process(np.zeros(0, COMMAND_DTYPE))
    assert len(out.events) == len(out.md) == 0


def test_errors_name_the_problem() -> None:
    e = engine()
    with pytest.raises(ValueError, match="already added"):
        e.add_instrument(ACME)
    with pytest.raises(ValueError, match="tick_size"):
        e.add_instrument(Instrument("BAD", 2, tick_size=0))
    for query in (e.bbo, e.phase, lambda s: e.depth(s, Side.BUY)):
        with pytest.raises(KeyError, match="42"):
            query(42)
    with pytest.raises(KeyError):
        e.phase(2**40)
    with pytest.raises(ValueError, match="side"):
        e.depth(1, 3)  # type: ignore[arg-type]
    snap = e.snapshot()
    for bad in (b"", snap[:-1], snap + b"\0" * 96, b"\xff" + snap[1:]):
        with pytest.raises(ValueError, match="snapshot"):
            CEngine.restore(bad)


def test_queries_and_restore_agree_with_the_reference() -> None:
    c, r = engine(), ReferenceEngine()
    r.add_instrument(ACME)
    cmds = batch(
        new_order(1, 1, 1, Side.SELL, 5, 101),
        new_order(2, 1, 1, Side.SELL, 7, 101),
        new_order(3, 1, 2, Side.BUY, 4, 99),
    )
    c.process(cmds), r.process(cmds)
    assert c.bbo(1) == r.bbo(1) == (99, 4, 101, 12)
    assert c.depth(1, Side.SELL).tobytes() == r.depth(1, Side.SELL).tobytes()
    assert c.phase(1) == r.phase(1) == Phase.CONTINUOUS
    assert c.live_orders() == r.live_orders() == 3
    assert c.memory_bytes() > 0
    restored = CEngine.restore(r.snapshot())
    assert restored.digest() == c.digest() == r.digest()
