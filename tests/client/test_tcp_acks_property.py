"""A property of the TCP edge's bookkeeping (``TcpSession`` in tradsys.cores.gateway_tcp),
without sockets: for any sequence of EVENTS frames sent, bytes the transport writes, and
ACKs, what a session hands back at a break is exactly what the client may not have --
with ACKs, every event above the last ACK but those written and forgotten before the
client's first ACK (it can name nothing older than the window kept without ACKs);
without, every event of a frame not known written (a suffix of what was sent that
contains every unwritten event) -- in order, each once, a partly acknowledged frame's
tail included."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.client.fake_transport import BufferingTransport
from tradsys import wire
from tradsys.cores.gateway_tcp import TcpEdge, TcpSession
from tradsys.protocols.binary import MessageType, encode_records

# ("send", n): a frame of n events; ("write", k): the transport writes k bytes;
# ("ack", f): an ACK of the fraction f of what was sent and not acknowledged; ("tick",)
STEP = st.one_of(
    st.tuples(st.just("send"), st.integers(1, 6)),
    st.tuples(st.just("write"), st.integers(0, 2000)),
    st.tuples(st.just("ack"), st.floats(0, 1)),
    st.tuples(st.just("tick"), st.just(0)),
)


class FirstAck:
    """What had happened when the client sent its first ACK: bytes written, next seq."""

    written = 0
    next_seq = 0


def _run(
    steps: list[tuple[str, Any]], window: int, first: FirstAck
) -> tuple[TcpSession, BufferingTransport, int]:
    async def go() -> tuple[TcpSession, BufferingTransport, int]:
        edge = TcpEdge(None, None, 1.0, 1.0, unacked_max=window)  # type: ignore[arg-type]
        s = TcpSession(edge)
        t = BufferingTransport()
        s.transport = t  # type: ignore[assignment]
        written_bytes = 0
        for what, arg in steps:
            if what == "send":
                recs = np.zeros(arg, wire.EVENT_DTYPE)
                recs["exec_id"] = np.arange(s.next_event_seq, s.next_event_seq + arg)
                s._send_events(encode_records(MessageType.EVENTS, s.next_event_seq, recs), arg)
                s.next_event_seq += arg
            elif what == "write":
                before = t.buffered
                t.flush(arg)
                written_bytes += before - t.buffered
            elif what == "ack":
                if not s.acking:
                    first.written, first.next_seq = written_bytes, s.next_event_seq
                top = s.next_event_seq - 1
                s._on_ack(s.acked + int(arg * (top - s.acked)))
            else:
                s._note_written()
        return s, t, written_bytes

    return asyncio.run(go())


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(STEP, max_size=40), window=st.sampled_from([4, 64, 65536]))
# a client that starts acknowledging (ACK 0) after frames were written and forgotten
@example(steps=[("send", 1)] * 5 + [("write", 80), ("tick", 0), ("ack", 0.0)], window=4)
def test_a_break_hands_back_exactly_what_the_client_may_not_have(
    steps: list[tuple[str, Any]], window: int
) -> None:
    first = FirstAck()
    s, _, written = _run(steps, window, first)
    sent = s.next_event_seq - 1
    after = s.acked if s.acking else s.written_seq
    got = s._events_after(after)
    seqs = [] if got is None else [int(x) for x in got["exec_id"]]
    # a suffix of what was sent, in order, each once ...
    assert seqs == list(range(sent - len(seqs) + 1, sent + 1))
    ends = np.cumsum([16 + 64 * n for what, n in steps if what == "send"])
    firsts = np.cumsum([0] + [n for what, n in steps if what == "send"])[:-1] + 1
    if s.acking:
        # ... of every event above the ACK, but those the session had forgotten before
        # the first ACK: written to the socket (the client's, by the rule without ACKs)
        # and `window` events old -- an ACK that comes later can name nothing older
        assert not seqs or seqs[0] > s.acked
        missing = range(s.acked + 1, seqs[0] if seqs else sent + 1)
        end_of = {
            int(f) + i: int(e)
            for f, e, n in zip(firsts, ends, np.diff([*firsts, sent + 1]), strict=True)
            for i in range(int(n))
        }
        for seq in missing:
            assert end_of[seq] <= first.written, f"event {seq} was forgotten unwritten"
            assert seq <= first.next_seq - 1 - window, f"event {seq} forgotten too young"
        return
    # ... that holds every event whose frame the transport had not wholly written
    unwritten = [int(f) for f, end in zip(firsts, ends, strict=True) if end > written]
    assert not unwritten or (seqs[:1] and seqs[0] <= unwritten[0])
