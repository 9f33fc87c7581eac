"""A stand-in for an asyncio transport in tests of the TCP edge's bookkeeping: it only
counts what it was given and what it has 'written', so a test decides when bytes reach
the socket."""

from __future__ import annotations


class BufferingTransport:
    """Buffers what it is given; ``flush(k)`` writes k bytes of it to the 'socket'."""

    def __init__(self) -> None:
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.buffered += len(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return False

    def flush(self, k: int) -> int:
        """Write up to k bytes; returns how many."""
        k = min(k, self.buffered)
        self.buffered -= k
        return k
