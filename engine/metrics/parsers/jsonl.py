"""JSON-lines metrics: one object per line; NaN/Infinity tokens allowed; nested dicts are
flattened with '/' (`{"train": {"loss": 1}}` -> `train/loss`); non-numeric values dropped.

Fast path: a whole batch of lines is parsed by orjson in one call (as one JSON array); only a
batch that fails (NaN tokens, a corrupt line) is parsed line by line, with json as the fallback.
"""

from __future__ import annotations

import gc
import json

import orjson

PARSE_BLOCK = 64 << 10


class JsonlParser:
    format = "jsonl"

    def __init__(self):
        self.bad_lines = 0
        self.first_error: str | None = None
        self.lines_seen = 0  # for line numbers in error messages

    def feed(self, lines: list[str], first_line_no: int | None = None) -> list[dict]:
        first = self.lines_seen if first_line_no is None else first_line_no
        self.lines_seen = first + len(lines)
        numbered = [(first + i + 1, line) for i, line in enumerate(lines) if line.strip()]
        if not numbered:
            return []
        try:
            objects = orjson.loads("[" + ",".join(line for _, line in numbered) + "]")
        except orjson.JSONDecodeError:
            objects = [self._one(line, no) for no, line in numbered]
        return [p for p in map(_point, objects) if p]

    def feed_blocks(self, blocks: list[bytes]) -> list[dict]:
        points: list[dict] = []
        for block in blocks:
            points += self.feed_block(block)
        return points

    def feed_block(self, block: bytes) -> list[dict]:
        """Points from a block of newline-terminated lines, parsed by one orjson call per ~64 KiB."""
        points: list[dict] = []
        start = 0
        # Parsed JSON holds no reference cycles, so the cyclic GC (which would rescan the growing
        # list of fresh dicts again and again) has nothing to find here: pause it for the batch.
        paused = gc.isenabled()
        gc.disable()
        try:
            while start < len(block):  # small parses reuse memory; one huge parse thrashes it
                end = block.find(b"\n", start + PARSE_BLOCK)
                end = len(block) if end < 0 else end + 1
                points += self._parse_block(block[start:end])
                start = end
        finally:
            if paused:
                gc.enable()
        return points

    def _parse_block(self, block: bytes) -> list[dict]:
        try:
            objects = orjson.loads(b"[" + block.rstrip(b"\r\n").replace(b"\n", b",") + b"]")
        except orjson.JSONDecodeError:  # NaN tokens, blank or corrupt lines: line by line
            return self.feed(block.decode("utf-8", errors="replace").split("\n")[:-1])
        self.lines_seen += len(objects)
        if block.count(b"{") == len(objects) and b"[" not in block:
            return objects  # one '{' a line and no '[' anywhere: flat objects only, nothing to filter
        return [p for p in map(_point, objects) if p]

    def _one(self, line: str, line_no: int):
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
        try:
            return json.loads(line)  # accepts NaN, Infinity, -Infinity
        except ValueError as exc:
            self.bad_lines += 1
            if self.first_error is None:
                self.first_error = f"line {line_no}: {exc}"
            return None


def _point(obj) -> dict | None:
    if type(obj) is not dict:
        return None
    for value in obj.values():
        vt = type(value)
        if vt is not float and vt is not int:
            return flatten(obj)
    return obj


def flatten(obj: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out
