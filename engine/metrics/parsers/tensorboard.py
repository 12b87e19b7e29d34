"""TensorBoard event files (`events.out.tfevents.*`), read incrementally.

TFRecord framing: u64 length, masked CRC32C of the length, the data, masked CRC32C of the data.
Each record is an `Event` protobuf; we decode scalars only (SummaryWriter's fixed layout with
numpy, many records at once; any other record with protobuf's parser, one path each, both kept
by bench/tensorboard_read.py): the old `simple_value` form
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
import numpy as np
from google.protobuf.message import DecodeError

from urbanrun.engine.metrics.follower import read_new_bytes
from urbanrun.engine.metrics.parsers.tb_proto import Event

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_HALF = struct.Struct("<e")
MAX_READ = 64 << 20

# TensorFlow's DataType values of the scalar tensors we read
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
        """Points of the complete records in buf, and how many bytes they took.

        Framing first (frame_records: the lengths walked, or a repeating pattern of them checked
        many at once), then the CRCs and the decoding of many records at once with numpy — CRC32C by table over records grouped by length; records of odd sizes
        take the one-by-one path."""
        data = np.frombuffer(buf, dtype=np.uint8)
        st, ln, pos, torn = frame_records(buf, data)
        if torn is not None and self.check_crc and masked_crc(buf[torn:torn + 8]) != _U32.unpack_from(buf, torn + 8)[0]:
            st, ln = np.append(st, torn), np.append(ln, 0)  # its length CRC fails below and marks the file broken
        if not len(st):
            return [], pos
        starts = st.tolist()
        if self.check_crc:
            stored = _u32_at(data, st + 8)
            good = _masked(crc32c_rows(data[st[:, None] + np.arange(8)])) == stored
            if not good.all():
                first = int(np.argmin(good))
                self.broken = f"{self.path}: corrupt record length at byte {self.offset + starts[first]}; " \
                              f"the rest is unreadable"
                st, ln, pos = st[:first], ln[:first], starts[first]
        self.records += len(st)
        keep = np.ones(len(st), dtype=bool)
        if self.check_crc:
            keep = self._data_crcs_ok(buf, data, st, ln)
            self.bad_records += int((~keep).sum())
        points, bad = decode_records(buf, (st + 12)[keep].tolist(), (st + 12 + ln)[keep].tolist())
        self.bad_records += bad
        return points, pos

    @staticmethod
    def _data_crcs_ok(buf: bytes, data, st, ln):
        keep = np.ones(len(st), dtype=bool)
        stored = _u32_at(data, st + 12 + ln)
        for length in set(ln.tolist()):
            idx = np.nonzero(ln == length)[0]
            if length <= VECTOR_CRC_MAX and len(idx) >= 16:
                rows = data[(st[idx] + 12)[:, None] + np.arange(length)]
                keep[idx] = _masked(crc32c_rows(rows)) == stored[idx]
            else:
                for i in idx.tolist():
                    s = int(st[i]) + 12
                    keep[i] = masked_crc(buf[s:s + length]) == int(stored[i])
        return keep


PERIOD_MAX = 16  # tags a step: SummaryWriter's records repeat their lengths with this period or less
PREDICTED = 4096  # records framed at once from a repeating pattern of lengths


def frame_records(buf: bytes, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int | None]:
    """The starts and lengths of the complete records in buf, where the next record begins, and the
    start of a last record cut short (or whose length field is corrupt), if any.

    Each record's length says where the next begins, a walk one record at a time. While the lengths
    repeat with a short period (a writer logging the same tags every step), the next PREDICTED starts
    follow from that pattern, and all of their length fields are read and compared at once: the
    records up to the first that differs are exactly those the walk would find (each start is only
    taken once the length before it was read and matched), then the walk goes on from there."""
    end, pos, unpack = len(buf), 0, _U64.unpack_from
    starts, lengths, runs = [], [], []  # runs: (starts, lengths) arrays of predicted stretches
    recent: list[int] = []
    while pos + 12 <= end:
        pattern = _period(recent)
        if pattern is not None:
            tiled = np.resize(np.array(pattern, dtype=np.int64), PREDICTED)
            ahead = pos + np.concatenate(([0], np.cumsum(tiled[:-1] + 16)))
            fits = ahead + 16 + tiled <= end
            ahead, tiled = ahead[fits], tiled[fits]  # a prefix: starts only grow
            read = np.ascontiguousarray(data[ahead[:, None] + np.arange(8)]).view("<u8").ravel()
            same = int(np.argmin(read == tiled)) if not (read == tiled).all() else len(tiled)
            if same:
                runs.append((np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64)))
                runs.append((ahead[:same], tiled[:same]))
                starts, lengths = [], []
                pos = int(ahead[same - 1] + 16 + tiled[same - 1])
                recent = tiled[max(0, same - 2 * PERIOD_MAX):same].tolist()
                continue
            recent = []  # the pattern broke at its first record: walk until the lengths repeat again
        length = unpack(buf, pos)[0]
        if pos + 16 + length > end:  # cut short, or its length field is corrupt: the caller tells which
            return (*_joined(runs, starts, lengths), pos, pos)
        starts.append(pos)
        lengths.append(length)
        recent.append(length)
        pos += 16 + length
    return (*_joined(runs, starts, lengths), pos, None)


def _period(recent: list[int]) -> list[int] | None:
    """The shortest pattern the last lengths repeat (seen at least twice over, after a walk of
    2 * PERIOD_MAX records), or None."""
    if len(recent) < 2 * PERIOD_MAX:
        return None
    for p in range(1, PERIOD_MAX + 1):
        if recent[-p:] == recent[-2 * p:-p]:
            return recent[-p:]
    return None


def _joined(runs: list, starts: list[int], lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
    runs.append((np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64)))
    return np.concatenate([s for s, _ in runs]), np.concatenate([n for _, n in runs])


def _make_table() -> np.ndarray:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # CRC32C (Castagnoli), reflected
        table.append(c)
    return np.array(table, dtype=np.uint32)


_CRC_TABLE = _make_table()
VECTOR_CRC_MAX = 4096  # longer records (images, histograms) are checked one by one


def crc32c_rows(rows) -> "np.ndarray":
    """CRC32C of each row of a 2-D uint8 array, all rows at once."""
    crc = np.full(rows.shape[0], 0xFFFFFFFF, dtype=np.uint32)
    for j in range(rows.shape[1]):
        crc = _CRC_TABLE[(crc ^ rows[:, j]) & 0xFF] ^ (crc >> 8)
    return crc ^ np.uint32(0xFFFFFFFF)


def _masked(crc) -> "np.ndarray":
    return (((crc >> 15) | (crc << 17)) + np.uint32(0xA282EAD8)).astype(np.uint32)


def _u32_at(data, offsets) -> "np.ndarray":
    return np.ascontiguousarray(data[offsets[:, None] + np.arange(4)]).view("<u4").ravel()


def decode_records(buf: bytes, starts: list[int], stops: list[int]) -> tuple[list[dict], int]:
    """Decode records in file order: those laid out as SummaryWriter's simple scalars are decoded
    together with numpy (grouped by length and step-varint size: a fixed layout), the rest one by
    one. Returns the points and how many records could not be decoded."""
    decoded = np.full(len(starts), None, dtype=object)
    done = np.zeros(len(starts), dtype=bool)
    if len(starts) >= 64:
        _decode_simple_scalars(buf, np.array(starts, dtype=np.int64), np.array(stops, dtype=np.int64), decoded, done)
    bad = 0
    for i in np.nonzero(~done)[0].tolist():
        try:
            decoded[i] = decode_event(buf[starts[i]:stops[i]])
        except (DecodeError, struct.error, UnicodeDecodeError):
            bad += 1
    return [p for p in decoded if p is not None], bad


def _decode_simple_scalars(buf: bytes, starts, stops, decoded: np.ndarray, done) -> None:
    """Fill `decoded` (and mark `done`) for every record laid out as torch's SummaryWriter writes a
    simple scalar: wall_time(1), step(2) varint, summary(5){ value(1){ tag(1), simple_value(2) } },
    every length below 128 bytes (one varint byte each). Anything else is left for decode_event."""
    data = np.frombuffer(buf, dtype=np.uint8)
    lengths = stops - starts
    for length in set(lengths.tolist()):
        if length < 20 or length > 255:
            continue
        idx = np.nonzero(lengths == length)[0]
        rows = data[starts[idx][:, None] + np.arange(length)]
        cont = rows[:, 10:min(length, 20)] >= 0x80  # the step varint's continuation bits
        ok = (rows[:, 0] == 0x09) & (rows[:, 9] == 0x10) & ~cont.all(axis=1)
        width = np.argmin(cont, axis=1) + 1
        for k in set(width[ok].tolist()):
            pos, tag_len = 10 + k, length - 10 - k - 11
            sel = ok & (width == k)
            if tag_len <= 0 or tag_len + 9 >= 0x80:
                continue
            r = rows[sel]
            good = ((r[:, pos] == 0x2A) & (r[:, pos + 1] == tag_len + 9) & (r[:, pos + 2] == 0x0A)
                    & (r[:, pos + 3] == tag_len + 7) & (r[:, pos + 4] == 0x0A) & (r[:, pos + 5] == tag_len)
                    & (r[:, pos + 6 + tag_len] == 0x15))
            r, where = r[good], idx[sel][good]
            if len(r) == 0:
                continue
            times = np.ascontiguousarray(r[:, 1:9]).view("<f8").ravel().tolist()
            steps = np.zeros(len(r), dtype=np.int64)
            for i in range(k):
                steps |= (r[:, 10 + i].astype(np.int64) & 0x7F) << (7 * i)
            values = np.ascontiguousarray(r[:, pos + 7 + tag_len:pos + 11 + tag_len]).view("<f4").ravel().tolist()
            tags = r[:, pos + 6:pos + 6 + tag_len]
            if (tags == tags[0]).all():  # the usual case: one tag for the whole group
                name = bytes(tags[0]).decode("utf-8", errors="replace")
                points = [{"step": step, "time": when, name: value} for step, when, value in zip(steps.tolist(), times, values)]
            else:
                unique, inverse = np.unique(tags, axis=0, return_inverse=True)
                names = [bytes(t).decode("utf-8", errors="replace") for t in unique]
                points = [{"step": step, "time": when, names[w]: value}
                          for step, when, value, w in zip(steps.tolist(), times, values, inverse.tolist())]
            decoded[where] = points  # an object array: one assignment, not one a record
            done[where] = True


def decode_event(data: bytes) -> dict | None:
    """The scalars of one Event record, by protobuf's own parser (2-3x faster than walking the
    wire format by hand: bench/tensorboard_read.py)."""
    event = Event.FromString(data)
    point = None
    for value in event.summary.value:
        scalar = _scalar(value)
        if scalar is not None:
            if point is None:
                point = {"step": event.step, "time": event.wall_time if event.HasField("wall_time") else None}
            point[value.tag] = scalar
    return point


def _scalar(value) -> float | None:
    if not value.tag:
        return None
    if value.HasField("simple_value"):
        return value.simple_value
    plugin = value.metadata.plugin_data.plugin_name if value.HasField("metadata") else ""
    if value.HasField("tensor") and plugin in ("scalars", ""):
        return _scalar_tensor(value.tensor)
    return None


def _scalar_tensor(tensor) -> float | None:
    if tensor.tensor_shape.dim:  # has dims: not a scalar
        return None
    dtype, content = tensor.dtype, tensor.tensor_content
    if content:
        if dtype == DT_BFLOAT16 and len(content) == 2:
            return struct.unpack("<f", b"\x00\x00" + content)[0]
        fmt = {DT_FLOAT: "<f", DT_DOUBLE: "<d", DT_INT32: "<i", DT_INT64: "<q", DT_HALF: "<e"}.get(dtype)
        if fmt is None or struct.calcsize(fmt) != len(content):
            return None
        return float(struct.unpack(fmt, content)[0])
    if dtype in (DT_HALF, DT_BFLOAT16) and tensor.half_val:
        bits = tensor.half_val[0] & 0xFFFF
        return _HALF.unpack(struct.pack("<H", bits))[0] if dtype == DT_HALF else \
            struct.unpack("<f", struct.pack("<I", bits << 16))[0]
    for values in (tensor.float_val, tensor.double_val, tensor.int64_val, tensor.int_val):
        if values:
            return float(values[0])
    return None
