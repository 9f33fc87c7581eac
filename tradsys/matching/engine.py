"""``CEngine``: the matching engine of native/book.c behind the :class:`MatchingEngine`
interface.

One ``process`` call hands a whole ``COMMAND_DTYPE`` batch to C (one crossing of the
cffi boundary, no Python per command) and copies the events and market data out into
numpy arrays, so the engine's buffers can be reused at once. The C engine is freed
deterministically: ``close()``, the context manager, or a ``weakref.finalize`` when the
object is collected, whichever comes first.
"""

from __future__ import annotations

import weakref
from types import TracebackType
from typing import Any, Self

import numpy as np

from tradsys._native import ffi, lib
from tradsys.matching.api import Bbo, Output, Phase, Records, snapshot_digest
from tradsys.matching.instrument import Instrument
from tradsys.matching.snapshot_layout import INSTRUMENT_DTYPE, LEVEL_DTYPE
from tradsys.wire import COMMAND_DTYPE, EVENT_DTYPE, MD_DTYPE, RECORD_SIZE, Side

_INT64_MAX = 2**63 - 1

_STATUS_TEXT = {
    lib.TS_ENG_ERR_DUPLICATE_SYMBOL: "symbol_id already added",
    lib.TS_ENG_ERR_BAD_INSTRUMENT: "a field is out of range",
    lib.TS_ENG_ERR_NO_MEMORY: "out of memory",
    lib.TS_ENG_ERR_BAD_SNAPSHOT: "not a valid snapshot (magic, version, length or content)",
    lib.TS_ENG_ERR_UNKNOWN_SYMBOL: "unknown symbol",
}


class EngineMemoryError(MemoryError):
    """The engine ran out of memory part-way through a batch.

    ``applied`` commands were applied (the engine is consistent after the last of
    them); ``output`` is what they produced.
    """

    def __init__(self, applied: int, requested: int, output: Output) -> None:
        super().__init__(f"engine out of memory after {applied} of {requested} commands")
        self.applied = applied
        self.output = output


def _free_engine(ptr: Any) -> None:
    lib.ts_engine_free(ptr)


class CEngine:
    """The C matching engine (:class:`~tradsys.matching.api.MatchingEngine`).

    Single-threaded, like the shard worker that owns it: cffi releases the GIL during C
    calls, so two threads must not use one engine at the same time.
    """

    def __init__(self) -> None:
        ptr = lib.ts_engine_new()
        if ptr == ffi.NULL:
            raise MemoryError("ts_engine_new: out of memory")
        self._attach(ptr)

    def _attach(self, ptr: Any) -> None:
        self._ptr = ptr
        self._finalizer = weakref.finalize(self, _free_engine, ptr)

    @property
    def _engine(self) -> Any:
        if self._ptr is None:
            raise ValueError("engine is closed")
        return self._ptr

    # ---- life cycle -------------------------------------------------------------------

    def close(self) -> None:
        """Free the C engine now; the object is unusable afterwards. Idempotent."""
        self._ptr = None
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- configuration ----------------------------------------------------------------

    def add_instrument(self, instrument: Instrument) -> None:
        """Add a symbol. ValueError names every problem of a bad or duplicate one."""
        problems = instrument.problems()
        for name in ("tick_size", "lot_size", "min_qty", "max_qty", "reference_price"):
            if getattr(instrument, name) > _INT64_MAX:
                problems.append(f"instrument {instrument.symbol!r}: {name} exceeds int64")
        if instrument.breaker_halt_ns > _INT64_MAX:
            problems.append(f"instrument {instrument.symbol!r}: breaker_halt_ns exceeds int64")
        if not problems and lib.ts_engine_phase(self._engine, instrument.symbol_id) > 0:
            problems.append(
                f"instrument {instrument.symbol!r}: symbol_id {instrument.symbol_id} already added"
            )
        if problems:
            raise ValueError("; ".join(problems))
        rec = ffi.new("ts_instrument *")
        # the C struct's fields are the Instrument's (the layout test holds the dtype to
        # the struct), so one loop cannot forget a field added later
        for name in INSTRUMENT_DTYPE.names or ():
            setattr(rec, name, getattr(instrument, name))
        status = lib.ts_engine_add_instrument(self._engine, rec)
        if status == lib.TS_ENG_ERR_NO_MEMORY:
            raise MemoryError(f"instrument {instrument.symbol!r}: out of memory")
        if status != lib.TS_ENG_OK:
            raise ValueError(f"instrument {instrument.symbol!r}: {_STATUS_TEXT[status]}")

    # ---- commands -----------------------------------------------------------------------

    def process(self, commands: Records) -> Output:
        """Apply the commands in order; return the events and market data they made.

        ``commands`` is a one-dimensional ``COMMAND_DTYPE`` array. An array with the same
        fields in another layout (``np.concatenate`` packs structured dtypes) or one that
        is not C-contiguous is copied into the wire layout first; any other dtype is a
        TypeError.
        """
        if not isinstance(commands, np.ndarray) or commands.dtype.names != COMMAND_DTYPE.names:
            got = commands.dtype if isinstance(commands, np.ndarray) else type(commands)
            raise TypeError(f"commands must be a COMMAND_DTYPE array, got {got}")
        if commands.ndim != 1:
            raise ValueError(f"commands must be one-dimensional, got shape {commands.shape}")
        if commands.dtype != COMMAND_DTYPE:
            wire = np.zeros(len(commands), COMMAND_DTYPE)  # zeros: pads stay clean
            for name in COMMAND_DTYPE.names or ():
                wire[name] = commands[name]
            commands = wire
        commands = np.ascontiguousarray(commands)
        engine = self._engine
        n = len(commands)
        if n:
            buf = ffi.from_buffer("ts_command[]", commands)
            applied = lib.ts_engine_process(engine, buf, n)
        else:
            applied = 0
        out = self._take_output(engine)
        if applied != n:
            raise EngineMemoryError(applied, n, out)
        return out

    def submit(self, command: Records | np.void) -> Output:
        """Process one command record (or a one-record array)."""
        return self.process(np.asarray(command, COMMAND_DTYPE).reshape(-1))

    @staticmethod
    def _take_output(engine: Any) -> Output:
        ev_ptr = ffi.new("ts_event **")
        md_ptr = ffi.new("ts_md **")
        n_ev = lib.ts_engine_events(engine, ev_ptr)
        n_md = lib.ts_engine_md(engine, md_ptr)
        events = _copy_records(ev_ptr[0], n_ev, EVENT_DTYPE)
        md = _copy_records(md_ptr[0], n_md, MD_DTYPE)
        lib.ts_engine_clear_output(engine)
        return Output(events, md)

    # ---- queries ------------------------------------------------------------------------

    def depth(self, symbol_id: int, side: Side, max_levels: int = 10) -> Records:
        """Displayed levels (``LEVEL_DTYPE``), best first. KeyError for an unknown symbol."""
        if int(side) not in (Side.BUY, Side.SELL):
            raise ValueError(f"side must be BUY or SELL, got {side!r}")
        if max_levels < 0:
            raise ValueError(f"max_levels must be >= 0, got {max_levels}")
        out = np.zeros(max_levels, LEVEL_DTYPE)
        buf = ffi.from_buffer("ts_level[]", out) if max_levels else ffi.NULL
        n = lib.ts_engine_depth(self._engine, _symbol(symbol_id), int(side), buf, max_levels)
        if n < 0:
            raise KeyError(f"unknown symbol_id {symbol_id}")
        # a byte copy of the levels written (a record copy would drop the pad bytes)
        return np.frombuffer(bytearray(out.tobytes()[: n * LEVEL_DTYPE.itemsize]), LEVEL_DTYPE)

    def bbo(self, symbol_id: int) -> Bbo:
        b = ffi.new("ts_bbo *")
        if lib.ts_engine_bbo(self._engine, _symbol(symbol_id), b) < 0:
            raise KeyError(f"unknown symbol_id {symbol_id}")
        return Bbo(b.bid_price, b.bid_quantity, b.ask_price, b.ask_quantity)

    def phase(self, symbol_id: int) -> Phase:
        p = lib.ts_engine_phase(self._engine, _symbol(symbol_id))
        if p < 0:
            raise KeyError(f"unknown symbol_id {symbol_id}")
        return Phase(p)

    def live_orders(self) -> int:
        """Resting orders plus pending stops, all symbols."""
        return int(lib.ts_engine_live_orders(self._engine))

    def memory_bytes(self) -> int:
        """Heap bytes the C engine holds (pools, index, books, buffers)."""
        return int(lib.ts_engine_memory_bytes(self._engine))

    # ---- state --------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The canonical state bytes (layout in native/book.h)."""
        engine = self._engine
        size = lib.ts_engine_snapshot_size(engine)
        buf = bytearray(size)
        written = lib.ts_engine_snapshot(engine, ffi.from_buffer(buf), size)
        if written != size:
            raise RuntimeError(f"ts_engine_snapshot wrote {written} of {size} bytes")
        return bytes(buf)

    @classmethod
    def restore(cls, data: bytes) -> Self:
        """An engine that continues exactly where the snapshot's engine stood.
        ValueError if the bytes are not a valid snapshot."""
        status = ffi.new("int *")
        ptr = lib.ts_engine_restore(ffi.from_buffer(data), len(data), status)
        if ptr == ffi.NULL:
            if status[0] == lib.TS_ENG_ERR_NO_MEMORY:
                raise MemoryError("restore: out of memory")
            raise ValueError(f"restore: {_STATUS_TEXT.get(status[0], status[0])}")
        engine = cls.__new__(cls)
        engine._attach(ptr)
        return engine

    def digest(self) -> str:
        """Hex BLAKE2b-128 of the snapshot: equal states, equal digests."""
        return snapshot_digest(self.snapshot())


def _symbol(symbol_id: int) -> int:
    """A symbol id for C: ids that cannot be a u32 are unknown, not an OverflowError."""
    return symbol_id if 0 <= symbol_id < 2**32 else 0


def _copy_records(ptr: Any, n: int, dtype: np.dtype[np.void]) -> Records:
    """A copy of n 64-byte records, byte for byte. (``ndarray.copy()`` would copy field
    by field and leave the pad bytes, which no dtype field covers, uninitialised.)"""
    if n == 0:
        return np.zeros(0, dtype)
    return np.frombuffer(bytearray(ffi.buffer(ptr, n * RECORD_SIZE)), dtype)
