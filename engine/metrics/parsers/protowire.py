"""Just enough of the protobuf wire format to walk a message's fields without generated code.

Used for W&B records, where we need a handful of fields of a few messages and wandb's generated
protobufs are not installed where urbanrun runs. (TensorBoard events go through protobuf's own
parser with a schema built at run time: parsers/tb_proto.py, 2-3x faster than this walk.)
"""

from __future__ import annotations

import struct
from typing import Iterator

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
_F64 = struct.Struct("<d")


class WireError(ValueError):
    pass


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def fields(buf: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value): ints for varints, raw bytes for the rest."""
    pos, end = start, len(buf) if end is None else end
    while pos < end:
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = varint(buf, pos)
        elif wire == FIXED64:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == LEN:
            size, pos = varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == FIXED32:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise WireError(f"unsupported wire type {wire}")
        if pos > end:
            raise WireError("field runs past the end of its message")
        yield number, wire, value


def as_double(raw: bytes) -> float:
    return _F64.unpack(raw)[0]


def as_signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value
