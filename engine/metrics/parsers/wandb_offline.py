"""W&B offline runs (`wandb/offline-run-*/run-*.wandb`), read incrementally without wandb.

The .wandb file is a LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1, version), then
32 KiB blocks of chunks (u32 CRC-32 of type+data, u16 length, u8 type FULL/FIRST/MIDDLE/LAST),
each record a `wandb_internal.Record` protobuf. We take history rows (Record.history = 2),
the config (5) and the summary (3); field numbers are those of wandb's wandb_internal.proto.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

from urbanrun.engine.metrics.follower import MAX_READ_PER_POLL, read_new_bytes
from urbanrun.engine.metrics.parsers.protowire import FIXED64, LEN, WireError, as_double, as_signed, fields

HEADER = b":W&B"
HEADER_LEN = 7
BLOCK = 32768
CHUNK = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
REC_HISTORY, REC_SUMMARY, REC_CONFIG, REC_RUN = 2, 3, 5, 17
RUN_CONFIG = 4  # RunRecord.config, a ConfigRecord
AXES = {"_step": "step", "_timestamp": "time"}


class WandbRunReader:
    format = "wandb"
    max_read = MAX_READ_PER_POLL

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.offset = 0
        self.bad_records = 0
        self.broken: str | None = None
        self.config: dict = {}
        self.summary: dict = {}
        self._assembling: bytes | None = None

    def poll(self) -> list[dict]:
        if self.broken:
            return []
        limit = self.max_read  # a bounded poll: the rest comes next time
        while True:
            buf, _ = read_new_bytes(self.path, self.offset, limit)
            before = self.offset
            points = self._parse(buf) if buf else []
            if points or self.offset != before or len(buf) < limit:
                return points
            limit *= 2  # not even one chunk fitted: read more

    def _parse(self, buf: bytes) -> list[dict]:
        points, pos, base = [], 0, self.offset
        if base == 0:
            if len(buf) < HEADER_LEN:
                return []
            if not buf.startswith(HEADER):
                self.broken = f"{self.path} is not a W&B run file (no :W&B header)"
                return []
            pos = HEADER_LEN
        while True:
            left_in_block = BLOCK - (base + pos) % BLOCK
            if left_in_block < CHUNK.size:  # block trailer padding
                if pos + left_in_block > len(buf):
                    break
                pos += left_in_block
                continue
            if pos + CHUNK.size > len(buf):
                break
            crc, length, kind = CHUNK.unpack_from(buf, pos)
            end = pos + CHUNK.size + length
            if end > len(buf):
                break  # partial chunk: wait for the rest
            data = buf[pos + CHUNK.size:end]
            pos = end
            if kind == 0 and length == 0:  # zero padding written ahead of a block's end
                continue
            if zlib.crc32(bytes([kind]) + data) & 0xFFFFFFFF != crc:
                self.bad_records += 1
                self._assembling = None
                continue
            if kind == FULL:
                record = data
            elif kind == FIRST:
                self._assembling = data
                continue
            elif kind == MIDDLE and self._assembling is not None:
                self._assembling += data
                continue
            elif kind == LAST and self._assembling is not None:
                record, self._assembling = self._assembling + data, None
            else:
                self.bad_records += 1
                continue
            try:
                point = self._record(record)
            except (WireError, ValueError, struct.error):
                self.bad_records += 1
                continue
            if point:
                points.append(point)
        self.offset = base + pos
        return points

    def _record(self, data: bytes) -> dict | None:
        for number, wire, value in fields(data):
            if wire != LEN:
                continue
            if number == REC_HISTORY:
                return _history(value)
            if number == REC_CONFIG:
                self.config.update(_items(value))
            elif number == REC_SUMMARY:
                self.summary.update(_items(value))
            elif number == REC_RUN:
                for n2, w2, v2 in fields(value):
                    if n2 == RUN_CONFIG and w2 == LEN:
                        self.config.update(_items(v2))
        return None


def _history(data: bytes) -> dict:
    point: dict = {}
    for number, wire, value in fields(data):
        if number == 1 and wire == LEN:
            key, item = _item(value)
            if key is not None and isinstance(item, (int, float)) and not isinstance(item, bool):
                point[AXES.get(key, key)] = item
        elif number == 2 and wire == LEN:  # HistoryStep
            for n2, _, v2 in fields(value):
                if n2 == 1:
                    point.setdefault("step", as_signed(v2))
    point.pop("_runtime", None)
    return point


def _items(data: bytes) -> dict:
    out = {}
    for number, wire, value in fields(data):
        if number == 1 and wire == LEN:  # update: repeated items
            key, item = _item(value)
            if key is not None:
                out[key] = item
    return out


def _item(data: bytes):
    """One HistoryItem / ConfigItem / SummaryItem: key (or nested keys joined with '/'), value."""
    key, nested, value = None, [], None
    for number, wire, raw in fields(data):
        if number == 1:
            key = raw.decode("utf-8")
        elif number == 2:
            nested.append(raw.decode("utf-8"))
        elif number == 16:
            value = json.loads(raw, parse_constant=float)
        elif number == 6 and wire == FIXED64:
            value = as_double(raw)
        elif number == 5:
            value = as_signed(raw)
        elif number == 4:
            value = bool(raw)
    if nested:
        key = "/".join(nested)
    return key, value
