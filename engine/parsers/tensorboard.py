"""TensorBoard event files (`events.out.tfevents.*`), read incrementally.

TFRecord framing: u64 length, masked CRC32C of the length, the data, masked CRC32C of the data.
Each record is an `Event` protobuf; we decode scalars only: the old `simple_value` form
(torch's SummaryWriter) and the new tensor form (plugin "scalars", a rank-0 float tensor).
Other values (images, histograms, text) are skipped. A partial record at the end is held until
complete; a record whose data CRC fails is counted and skipped; a corrupt length stops the file
(as TensorBoard's own reader does) and is reported.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import google_crc32c

from ..tail import read_new_bytes
from .protowire import (FIXED32, FIXED64, LEN, WireError, as_double, as_float, as_signed, fields,
                        packed_doubles, packed_floats, packed_varints)

_HEADER = struct.Struct("<QI")
_U32 = struct.Struct("<I")
_HALF = struct.Struct("<e")
_F32 = struct.Struct("<f")
MAX_READ = 64 << 20

# Event fields
EV_WALL_TIME, EV_STEP, EV_SUMMARY = 1, 2, 5
# Summary.Value fields
V_TAG, V_SIMPLE, V_TENSOR, V_METADATA = 1, 2, 8, 9
# TensorProto
T_DTYPE, T_SHAPE, T_CONTENT, T_FLOAT, T_DOUBLE, T_INT, T_INT64, T_HALF = 1, 2, 4, 5, 6, 7, 10, 13
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64, DT_BFLOAT16, DT_HALF = 1, 2, 3, 9, 14, 19


def masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class TensorBoardReader:
    format = "tensorboard"

    def __init__(self, path: str | os.PathLike, check_crc: bool = True):
        self.path = Path(path)
        self.check_crc = check_crc
        self.offset = 0
        self.records = 0
        self.bad_records = 0  # data CRC mismatch or undecodable protobuf
        self.broken: str | None = None  # a corrupt length: nothing after it can be trusted

    def poll(self) -> list[dict]:
        if self.broken:
            return []
        buf, size = read_new_bytes(self.path, self.offset, MAX_READ)
        if size < self.offset:  # replaced by a shorter file: start again
            self.offset = 0
            buf, size = read_new_bytes(self.path, 0, MAX_READ)
        if not buf:
            return []
        points, used = self.parse(buf)
        self.offset += used
        return points

    def parse(self, buf: bytes) -> tuple[list[dict], int]:
        points, pos, end = [], 0, len(buf)
        check = self.check_crc
        header, u32, crc32c, fast = _HEADER.unpack_from, _U32.unpack_from, google_crc32c.value, _simple_scalar_event
        append = points.append
        while pos + 12 <= end:
            length, length_crc = header(buf, pos)
            if check:
                c = crc32c(buf[pos:pos + 8])
                if (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF != length_crc:
                    self.broken = f"{self.path}: corrupt record length at byte {self.offset + pos}; the rest is unreadable"
                    break
            stop = pos + 12 + length
            if stop + 4 > end:
                break  # partial record: wait for the rest
            data = buf[pos + 12:stop]
            pos = stop + 4
            self.records += 1
            if check:
                c = crc32c(data)
                if (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF != u32(buf, stop)[0]:
                    self.bad_records += 1
                    continue
            try:
                point = fast(data) or decode_event(data)
            except (WireError, struct.error, UnicodeDecodeError, IndexError):
                self.bad_records += 1
                continue
            if point is not None:
                append(point)
        return points, pos


def decode_event(data: bytes) -> dict | None:
    wall_time, step, summary = None, 0, None
    for number, wire, value in fields(data):
        if number == EV_WALL_TIME and wire == FIXED64:
            wall_time = as_double(value)
        elif number == EV_STEP:
            step = as_signed(value)
        elif number == EV_SUMMARY and wire == LEN:
            summary = value
    if summary is None:
        return None
    point = None
    for number, wire, value in fields(summary):
        if number != 1 or wire != LEN:
            continue
        scalar = decode_value(value)
        if scalar is not None:
            if point is None:
                point = {"step": step, "time": wall_time}
            point[scalar[0]] = scalar[1]
    return point


_D = struct.Struct("<d")


def _simple_scalar_event(data: bytes) -> dict | None:
    """Fast path for the commonest record, one simple_value scalar as torch's SummaryWriter
    writes it: wall_time(1), step(2), summary(5){ value(1){ tag(1), simple_value(2) } }.
    Anything else returns None and takes the general decoder."""
    n = len(data)
    if n < 20 or data[0] != 0x09 or data[9] != 0x10:
        return None
    pos, step, shift = 10, 0, 0
    while True:
        b = data[pos]
        step |= (b & 0x7F) << shift
        pos += 1
        if b < 0x80:
            break
        shift += 7
        if pos >= n:
            return None
    # summary, value and tag lengths below 128 bytes take one varint byte each
    if pos + 6 > n or data[pos] != 0x2A or data[pos + 2] != 0x0A or data[pos + 4] != 0x0A:
        return None
    summary_len, value_len, tag_len = data[pos + 1], data[pos + 3], data[pos + 5]
    tag_end = pos + 6 + tag_len
    if (summary_len != value_len + 2 or value_len != tag_len + 7 or tag_end + 5 != n
            or summary_len >= 0x80 or data[tag_end] != 0x15):
        return None
    if step >= 1 << 63:
        step -= 1 << 64
    return {"step": step, "time": _D.unpack_from(data, 1)[0],
            data[pos + 6:tag_end].decode("utf-8"): _F32.unpack_from(data, tag_end + 1)[0]}


def decode_value(data: bytes) -> tuple[str, float] | None:
    tag, simple, tensor, plugin = None, None, None, None
    for number, wire, value in fields(data):
        if number == V_TAG:
            tag = value.decode("utf-8")
        elif number == V_SIMPLE and wire == FIXED32:
            simple = as_float(value)
        elif number == V_TENSOR and wire == LEN:
            tensor = value
        elif number == V_METADATA and wire == LEN:
            plugin = _plugin_name(value)
    if tag is None:
        return None
    if simple is not None:
        return tag, simple
    if tensor is not None and plugin in ("scalars", None):
        value = _scalar_tensor(tensor)
        if value is not None:
            return tag, value
    return None


def _plugin_name(metadata: bytes) -> str | None:
    for number, wire, value in fields(metadata):
        if number == 1 and wire == LEN:  # plugin_data
            for n2, w2, v2 in fields(value):
                if n2 == 1 and w2 == LEN:
                    return v2.decode("utf-8")
    return None


def _scalar_tensor(data: bytes) -> float | None:
    dtype, shape, content, values = 0, b"", None, None
    for number, wire, value in fields(data):
        if number == T_DTYPE:
            dtype = value
        elif number == T_SHAPE:
            shape = value
        elif number == T_CONTENT:
            content = value
        elif number == T_FLOAT and wire == LEN:
            values = packed_floats(value)
        elif number == T_FLOAT and wire == FIXED32:
            values = (as_float(value),)
        elif number == T_DOUBLE and wire == LEN:
            values = packed_doubles(value)
        elif number in (T_INT, T_INT64, T_HALF) and wire == LEN:
            values = packed_varints(value)
    if shape and any(number == 2 for number, _, _ in fields(shape)):  # has dims: not a scalar
        return None
    if content:
        fmt = {DT_FLOAT: "<f", DT_DOUBLE: "<d", DT_INT32: "<i", DT_INT64: "<q", DT_HALF: "<e"}.get(dtype)
        if dtype == DT_BFLOAT16 and len(content) == 2:
            return struct.unpack("<f", b"\x00\x00" + content)[0]
        if fmt is None or struct.calcsize(fmt) != len(content):
            return None
        return float(struct.unpack(fmt, content)[0])
    if values:
        if dtype == DT_HALF:
            return _HALF.unpack(struct.pack("<H", values[0] & 0xFFFF))[0]
        if dtype == DT_BFLOAT16:
            return struct.unpack("<f", struct.pack("<I", (values[0] & 0xFFFF) << 16))[0]
        if dtype == DT_INT64:
            return float(as_signed(values[0]))
        return float(values[0])
    return None
