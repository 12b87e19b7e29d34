"""JSON-lines metrics: one object per line; NaN/Infinity tokens allowed; nested dicts are
flattened with '/' (`{"train": {"loss": 1}}` -> `train/loss`, as TensorBoard and W&B name them);
non-numeric values dropped. A line holding anything but an object (null, a number, a string, an
array) is counted as a bad line and never becomes a point.

Fast path: a whole batch of lines is parsed by orjson in one call (as one JSON array); a line
that fails (NaN tokens, a torn or corrupt line) is parsed alone, with json as the fallback, and
the lines around it stay batches.
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
            if len(objects) != len(numbered):  # a line held `1, 2`: find it line by line
                raise orjson.JSONDecodeError("count", "", 0)
        except orjson.JSONDecodeError:
            objects = [self._one(line) for _, line in numbered]
        return self._points(objects, [no for no, _ in numbered])

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
        """One orjson call for the block. When it fails (NaN tokens, a torn, blank or corrupt
        line), the failing line is parsed alone and the lines before and after it stay block
        parses: one bad line costs one line's slow path, not its whole block's."""
        points: list[dict] = []
        while block:
            doc = b"[" + block.rstrip(b"\r\n").replace(b"\n", b",") + b"]"
            try:
                objects = orjson.loads(doc)
            except orjson.JSONDecodeError as exc:
                start, end = _line_around(block, _byte_offset(doc, exc.pos) - 1)
                if start:  # a torn line shows its error on the next line: the part before may fail too
                    points += self._parse_block(block[:start])
                points += self.feed([block[start:end].decode("utf-8", errors="replace").rstrip("\r\n")])
                block = block[end:]
                continue
            return points + self._objects(block, objects)
        return points

    def _objects(self, block: bytes, objects: list) -> list[dict]:
        if block.count(b"{") == len(objects) and b"[" not in block and all(type(o) is dict for o in objects):
            self.lines_seen += len(objects)
            return objects  # objects only, with one '{' each: flat, nothing to filter
        if len(objects) != block.count(b"\n"):  # a line held `1, 2`: find it line by line
            return self.feed(block.decode("utf-8", errors="replace").split("\n")[:-1])
        first = self.lines_seen
        self.lines_seen += len(objects)  # one value a line
        return self._points(objects, range(first + 1, first + 1 + len(objects)))

    def _points(self, objects: list, line_numbers) -> list[dict]:
        points = []
        for obj, line_no in zip(objects, line_numbers):
            if type(obj) is not dict:
                self._bad(line_no, obj.why if type(obj) is _NotJson else f"not a JSON object but {_kind(obj)}")
                continue
            point = _point(obj)
            if point:
                points.append(point)
        return points

    def _bad(self, line_no: int, why: str) -> None:
        self.bad_lines += 1
        if self.first_error is None:
            self.first_error = f"line {line_no}: {why}"

    @staticmethod
    def _one(line: str):
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
        try:
            return json.loads(line)  # accepts NaN, Infinity, -Infinity
        except (ValueError, RecursionError) as exc:
            return _NotJson(str(exc) if isinstance(exc, ValueError) else "nested too deeply")


class _NotJson:
    """A line that is not JSON at all, and why."""

    def __init__(self, why: str):
        self.why = why


def _byte_offset(doc: bytes, pos: int) -> int:
    """orjson reports a character position; the block is bytes (the same when it is ASCII)."""
    return pos if doc.isascii() else len(doc.decode("utf-8", errors="replace")[:pos].encode("utf-8"))


def _line_around(block: bytes, offset: int) -> tuple[int, int]:
    """The line of `block` holding byte `offset` (a newline belongs to its line): [start, end)."""
    offset = min(max(offset, 0), len(block) - 1)
    start = block.rfind(b"\n", 0, offset) + 1
    end = block.find(b"\n", offset)
    return start, len(block) if end < 0 else end + 1


def _kind(obj) -> str:
    if obj is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}.get(
        type(obj), type(obj).__name__)


def _point(obj: dict) -> dict | None:
    for value in obj.values():
        vt = type(value)
        if vt is not float and vt is not int:
            return flatten(obj)
    return obj


MAX_DEPTH = 32  # deeper objects are not metrics (and recursion must stay bounded)


def flatten(obj: dict, prefix: str = "", depth: int = 0) -> dict:
    out = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if depth < MAX_DEPTH:
                out.update(flatten(value, name + "/", depth + 1))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out
