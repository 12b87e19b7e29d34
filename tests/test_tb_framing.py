"""TensorBoard framing: the records found from a repeating pattern of lengths (many length fields
read and compared at once) are exactly those of the plain walk, one record at a time, whatever the
file holds: patterns that change, break, or stop at a record cut short or a corrupt length."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings, strategies as st

from urbanrun.engine.metrics.parsers import tensorboard as tb


def walk(buf: bytes):
    """The reference: one record at a time."""
    starts, lengths, pos = [], [], 0
    while pos + 12 <= len(buf):
        length = struct.unpack_from("<Q", buf, pos)[0]
        if pos + 16 + length > len(buf):
            return starts, lengths, pos, pos
        starts.append(pos)
        lengths.append(length)
        pos += 16 + length
    return starts, lengths, pos, None


@st.composite
def event_files(draw) -> bytes:
    """Records whose lengths repeat a pattern for a while (a writer logging the same tags each step),
    then change; perhaps a garbage length field inside, and perhaps a tail cut anywhere."""
    out = bytearray()
    for _ in range(draw(st.integers(0, 6))):
        pattern = draw(st.lists(st.integers(0, 40), min_size=1, max_size=tb.PERIOD_MAX + 2))
        for i in range(draw(st.integers(0, 300))):
            length = pattern[i % len(pattern)]
            out += struct.pack("<Q", length) + b"\xaa" * (8 + length)
    if out and draw(st.booleans()):  # a corrupt length field somewhere: the walk follows it wherever it leads
        at = draw(st.integers(0, len(out) - 8))
        out[at:at + 8] = struct.pack("<Q", draw(st.sampled_from([0, 1, 7, 24, 2 ** 40, 2 ** 64 - 1])))
    if out and draw(st.booleans()):
        out = out[:draw(st.integers(0, len(out)))]
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(buf=event_files())
def test_framing_by_pattern_finds_what_the_walk_finds(buf):
    st_, ln, pos, torn = tb.frame_records(buf, np.frombuffer(buf, dtype=np.uint8))
    starts, lengths, want_pos, want_torn = walk(buf)
    assert (st_.tolist(), ln.tolist(), pos, torn) == (starts, lengths, want_pos, want_torn)


def test_a_long_steady_pattern_is_framed_in_few_steps(monkeypatch):
    """The point of the pattern: 20,000 records of two alternating lengths cost a few numpy reads,
    not 20,000 steps of the walk (counted by the walk's own length reads)."""
    buf = b"".join(struct.pack("<Q", n) + b"\x00" * (8 + n) for n in [30, 22] * 10_000)
    reads = []
    real = tb._U64

    class Counting:
        @staticmethod
        def unpack_from(b, pos):
            reads.append(pos)
            return real.unpack_from(b, pos)

    monkeypatch.setattr(tb, "_U64", Counting)
    st_, ln, pos, torn = tb.frame_records(buf, np.frombuffer(buf, dtype=np.uint8))
    assert len(st_) == 20_000 and pos == len(buf) and torn is None
    assert len(reads) < 200, f"{len(reads)} records walked one at a time"
