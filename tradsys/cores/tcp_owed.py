"""What a TCP session may still owe its client, frame by frame (docs/protocol.md,
"Nothing acknowledged is lost"): the bookkeeping half of ``gateway_tcp.TcpSession``.

Two records of the same frames, for two readers:

- the frames themselves (:attr:`OwedEvents.sent`), for the session's own end: what the
  client may not have gets handed back to the core then, ahead of what the ring holds;
- the outbound ring's records under them (:attr:`OwedEvents.unreleased`), for a crash of
  the gateway: a record leaves the ring only once it is no longer owed, so the gateway's
  successor reads back what the client may not have.

A frame is owed to a client that acknowledges until an ACK covers it; to one that has not
acknowledged yet, until the transport has written it (its buffer shrank past it) -- and a
written frame is still kept a while (``keep`` records in the ring, ``unacked_max`` events
as frames), so that an ACK that comes later can name it. Nothing here touches a socket
or a ring: the methods say how many ring records may be released, and the session does.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from tradsys import wire
from tradsys.protocols.binary import HEADER_SIZE

RECORD_SIZE = wire.RECORD_SIZE
NOTE_EVERY = 16  # frames between looks at what the transport has written (legacy clients)


class OwedEvents:
    """The EVENTS frames a session has sent and what of them its client may not have."""

    def __init__(self, unacked_max: int) -> None:
        self.unacked_max = unacked_max
        # EVENTS frames handed to the transport, (first event seq, frame), kept while they
        # may be owed: until acknowledged, and for a client that has not acknowledged yet,
        # until written and unacked_max old
        self.sent: deque[tuple[int, bytes]] = deque()
        # those not known written to the socket: (bytes handed over up to its end, last seq)
        self.unwritten: deque[tuple[int, int]] = deque()
        self.handed = 0
        self.written_seq = 0  # the last event seq known written to the socket
        self.acking = False  # the client has sent an ACK: it acknowledges what it processed
        self.acked = 0  # the highest EVENTS seq it acknowledged
        # the outbound ring's records read into frames and not released, and those frames'
        # (last event seq, records): released in order once acknowledged (or written)
        self.peeked = 0
        self.unreleased: deque[tuple[int, int]] = deque()
        self.ring_capacity = 0  # the outbound ring's, once logged in
        self.window = self.keep = unacked_max  # see fit_ring

    def fit_ring(self, capacity: int) -> None:
        """Size the windows to the outbound ring, which holds everything not released: an
        ACK window wider than the ring could never fill, and written events kept for a
        client that has not acknowledged yet take a quarter of it at most (a client that
        never will keeps the rest for what waits unsent and what its transport has not
        written; the library's first ACK comes within ACK_EVERY = 1 024 events)."""
        self.ring_capacity = capacity
        self.window = min(self.unacked_max, capacity)
        self.keep = min(self.unacked_max, capacity // 4)

    def room(self, next_seq: int) -> int:
        """Events that may be sent before an ACK (a client that acknowledges)."""
        return self.window - (next_seq - 1 - self.acked)

    def framed(self, first_seq: int, frame: bytes, n: int, from_ring: bool) -> bool:
        """An EVENTS frame of n events from ``first_seq`` handed to the transport (its n
        records read from the ring when ``from_ring``); True when it is time to look at
        what the transport has written (every NOTE_EVERY frames: the bookkeeping stays off
        the per-frame path, and a stale look only holds more, never less)."""
        if from_ring:
            self.unreleased.append((first_seq + n - 1, n))
            self.peeked += n
        self.handed += len(frame)
        self.sent.append((first_seq, frame))
        if self.acking:
            return False
        self.unwritten.append((self.handed, first_seq + n - 1))
        return len(self.unwritten) >= NOTE_EVERY

    def written(self, buffered: int, next_seq: int) -> int:
        """The transport holds ``buffered`` bytes unwritten: everything handed over before
        them is on the socket. Returns the ring records that may go: those written and
        more than ``keep`` events old. Frames written and unacked_max events old are
        forgotten: a client that starts acknowledging later can name nothing older."""
        written = self.handed - buffered
        unwritten = self.unwritten
        while unwritten and unwritten[0][0] <= written:
            self.written_seq = unwritten.popleft()[1]
        k = self._release_through(min(self.written_seq, next_seq - 1 - self.keep))
        self._forget(min(self.written_seq, next_seq - self.unacked_max - 1))
        return k

    def ack(self, seq: int) -> int:
        """The client has processed every event up to ``seq`` (checked by the caller):
        those frames are its. Returns the ring records that may go."""
        self.acking = True
        self.unwritten.clear()
        self.acked = seq
        self._forget(seq)
        return self._release_through(seq)

    def release_all(self) -> int:
        """At the session's end: every record sent leaves the ring (the caller hands back
        what is still owed itself, from :meth:`events_after`). Returns how many."""
        k, self.peeked = self.peeked, 0
        self.unreleased.clear()
        return k

    def events_after(self, seq: int) -> np.ndarray[Any, Any] | None:
        """The EVENT records above seq of the frames kept, oldest first."""
        parts = []
        for first, frame in self.sent:
            recs = np.frombuffer(frame, wire.EVENT_DTYPE, offset=HEADER_SIZE)
            if first + len(recs) - 1 > seq:
                parts.append(recs[max(0, seq + 1 - first) :])
        self.sent.clear()
        self.unwritten.clear()
        if not parts:
            return None
        out = np.zeros(sum(len(p) for p in parts), wire.EVENT_DTYPE)  # the padded layout
        at = 0
        for p in parts:
            out[at : at + len(p)] = p
            at += len(p)
        return out

    def _forget(self, seq: int) -> None:
        """Drop the frames whose every event is at or below seq."""
        sent = self.sent
        while sent and sent[0][0] + (len(sent[0][1]) - HEADER_SIZE) // RECORD_SIZE <= seq + 1:
            sent.popleft()

    def _release_through(self, seq: int) -> int:
        """The ring records of the events up to seq (of a frame partly acknowledged, its
        acknowledged part): how many may be released. Frames kept in :attr:`sent` beyond
        that (written, older than ``keep``, not yet acknowledged by a client that may
        start to) are the session's own copy, for its end, not the ring's."""
        unreleased, k = self.unreleased, 0
        while unreleased and unreleased[0][0] <= seq:
            k += unreleased.popleft()[1]
        if unreleased and unreleased[0][0] - unreleased[0][1] < seq:  # its first is <= seq
            last, n = unreleased[0]
            part = seq - (last - n)
            unreleased[0] = (last, n - part)
            k += part
        self.peeked -= k
        return k
