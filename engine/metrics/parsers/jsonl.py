"""JSON-lines metrics: one object per line; NaN/Infinity tokens allowed; nested dicts are
flattened with '/' (`{"train": {"loss": 1}}` -> `train/loss`, as TensorBoard and W&B name them);
non-numeric values dropped. A line holding anything but an object (null, a number, a string, an
array) is counted as a bad line and never becomes a point.

Fast path: a trainer writes the same keys in the same order on every line, so its lines differ
only in the characters of their numbers. A line's *shape* is the line without those characters
(0-9 . - + e E): one bytes.translate for a whole block. A line that parses alone as a flat object
of finite numbers, whose every quote belongs to a key, teaches its shape's *layout* (its keys).
Then a run of lines of a known shape is checked to hold the layout's keys as its first line
wrote them and a number where each value starts (the shape leaves only number characters to
compare: found by the quotes' places, none may sit outside a value); its values alone are
parsed by one orjson call and packed into one float64 array (each of their characters is a
number's, so each is a number): a block of columns, no dict or key string made per point. A
line of any other shape (torn, blank, NaN, strings, nested, other keys) is found by its shape's
length and parsed alone, with json as the fallback, so one bad line costs one line; a run that
still fails (`01`, `1e999`, keys that differ only in digits) is parsed line by line. Both paths
give the same points.
"""

from __future__ import annotations

import gc
import json
import math
import struct
from itertools import compress

import numpy as np
import orjson

from urbanrun.engine.core.points import Points

PARSE_BLOCK = 64 << 10  # measured faster than 16, 32, 128 or 256 KiB (bench/jsonl_ingest.py)
NUMBER_CHARS = b"0123456789.-+eE"
MAX_LAYOUTS = 64  # shapes remembered; a file with more layouts than this is not a trainer's log
MAX_ODD_LINES = 16  # odd lines a block may have and still be parsed around them (more: line by line)
NEWLINE = ord("\n")


class JsonlParser:
    format = "jsonl"

    def __init__(self):
        self.bad_lines = 0
        self.first_error: str | None = None
        self.lines_seen = 0  # for line numbers in error messages
        self._layouts: dict[bytes, _Layout] = {}  # a line's shape -> its keys, in order

    def feed(self, lines: list[str], first_line_no: int | None = None) -> list[dict]:
        """Points from lines of text, each parsed alone (the reference the fast path matches)."""
        first = self.lines_seen if first_line_no is None else first_line_no
        self.lines_seen = first + len(lines)
        points = [self._parse_line(line, first + i + 1) for i, line in enumerate(lines)]
        return [p for p in points if p]

    def feed_blocks(self, blocks: list[bytes]) -> Points:
        points = Points()
        for block in blocks:
            self.feed_block(block, points)
        return points

    def feed_block(self, block: bytes, points: Points | None = None) -> Points:
        """Points from a block of lines (a last line without its newline counts as whole)."""
        points = Points() if points is None else points
        if block and not block.endswith(b"\n"):
            block += b"\n"
        start = 0
        # Parsed JSON holds no reference cycles, so the cyclic GC (which would rescan the growing
        # list of fresh dicts again and again) has nothing to find here: pause it for the batch.
        paused = gc.isenabled()
        gc.disable()
        try:
            while start < len(block):  # small parses reuse memory; one huge parse thrashes it
                end = block.find(b"\n", start + PARSE_BLOCK)
                end = len(block) if end < 0 else end + 1
                self._parse_block(block[start:end], points)
                start = end
        finally:
            if paused:
                gc.enable()
        return points

    def _parse_block(self, block: bytes, points: Points) -> None:
        first_no = self.lines_seen + 1
        shapes = block.translate(None, NUMBER_CHARS)
        cut = shapes.find(b"\n") + 1
        layout = self._layouts.get(shapes[:cut - 1])
        n = len(shapes) // cut
        if layout is not None and shapes == shapes[:cut] * n:  # the usual block: one layout throughout
            values = _numbers(block, layout, n)
            if values is not None:
                self.lines_seen += n
                points.add_block(layout.names, values)
                return
        elif layout is not None and self._parse_around_odd(block, shapes, cut, layout, first_no, points):
            return  # the next most usual: a torn line (or a few odd ones) among the layout's lines
        lines, shapes = block.split(b"\n"), shapes.split(b"\n")
        lines.pop(), shapes.pop()  # what follows the last newline: nothing
        self.lines_seen += len(lines)
        self._parse_lines(lines, shapes, first_no, points)

    def _parse_around_odd(self, block: bytes, shapes: bytes, cut: int, layout: _Layout, first_no: int,
                          points: Points) -> bool:
        """A block whose lines have the first line's shape, but for a few whose shape is longer or
        shorter (torn, NaN, null, another layout): the others in one parse, each odd one alone.
        Found from the newlines' positions, without a bytes object a line. False, having done
        nothing, for any other block (an odd line of the same length, many odd lines): the general
        path takes it."""
        shape_ends = (np.frombuffer(shapes, np.uint8) == NEWLINE).nonzero()[0]  # the first line's is cut - 1
        odd = ((shape_ends[1:] - shape_ends[:-1]) != cut).nonzero()[0]
        if not 0 < len(odd) <= MAX_ODD_LINES:
            return False
        n = len(shape_ends)
        odd = (odd + 1).tolist()
        # line j is shapes[s[j] + 1:s[j + 1]] and block[b[j] + 1:b[j + 1]] (s[0] = b[0] = -1); only the
        # places around odd lines are read, so the arrays stay arrays (no list of every line's end)
        s = np.concatenate(([-1], shape_ends))
        b = np.concatenate(([-1], (np.frombuffer(block, np.uint8) == NEWLINE).nonzero()[0]))
        template = shapes[:cut]
        runs, good, first = [], [], 0  # the layout's lines [first, end), each run but the last followed by an odd line
        for end in odd + [n]:
            if end > first:
                if shapes[s[first] + 1:s[end] + 1] != template * (end - first):
                    return False  # a line of the template's length but not its shape
                good.append(block[b[first] + 1:b[end] + 1])  # with its last newline
            runs.append((first, end))
            first = end + 1
        values = _numbers(b"".join(good), layout, n - len(odd))
        if values is None:
            return False
        row = 0
        for first, end in runs:
            points.add_block(layout.names, values[row:row + end - first])
            row += end - first
            if end < n:
                line, shape = block[b[end] + 1:b[end + 1]], shapes[s[end] + 1:s[end + 1]]
                self._parse_raw_line(line, first_no + end, points, shape)
        self.lines_seen += n
        return True

    def _parse_lines(self, lines: list[bytes], shapes: list[bytes], first_no: int, points: Points) -> None:
        """The lines of the block's main layout in one parse, every other line alone, in order."""
        n = len(lines)
        known = [s for s in (shapes[0], shapes[n // 2], shapes[-1]) if s in self._layouts]
        if not known:  # a file's first lines (or a new layout's): each alone, until one teaches its shape
            i = 0
            while i < n and shapes[i] not in self._layouts:
                self._parse_raw_line(lines[i], first_no + i, points, shapes[i])
                i += 1
            if i < n:
                self._parse_lines(lines[i:], shapes[i:], first_no + i, points)
            return
        main = max(known, key=known.count)  # not a val line that happens to come first
        layout = self._layouts[main]
        names = layout.names
        odd = list(compress(range(n), map(main.__ne__, shapes)))
        values = _numbers(b"\n".join(compress(lines, map(main.__eq__, shapes))) + b"\n", layout, n - len(odd)) \
            if len(odd) < n else np.empty((0, len(names)))
        if values is None:  # not all numbers after all (`01`, `1e999`, keys that differ in digits)
            odd = range(n)
            values = np.empty((0, len(names)))
        row, after = 0, 0
        for j in odd:
            points.add_block(names, values[row:row + j - after])
            row += j - after
            self._parse_raw_line(lines[j], first_no + j, points, shapes[j])
            after = j + 1
        points.add_block(names, values[row:])

    def _parse_raw_line(self, raw: bytes, line_no: int, points: Points, shape: bytes | None = None) -> None:
        point = self._parse_line(raw.decode("utf-8", errors="replace"), line_no)
        if not point:
            return
        points.add(point)
        if shape is not None and shape not in self._layouts and _teaches_layout(point, shape):
            if len(self._layouts) < MAX_LAYOUTS:  # every quote is a key's: they split the line at its keys
                self._layouts[shape] = _Layout(tuple(point), raw)

    def _parse_line(self, line: str, line_no: int) -> dict | None:
        line = line.rstrip("\r\n")
        if not line.strip():
            return None  # a blank line is no record (its number still counts)
        obj = self._one(line)
        if type(obj) is not dict:
            self._bad(line_no, obj.why if type(obj) is _NotJson else f"not a JSON object but {_kind(obj)}")
            return None
        return _point(obj) or None

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


# The values of n lines of a layout's shape, as one JSON array: every character that is not a
# number's becomes a space, but for the commas between the values and each line's end (a comma too);
# the number characters (and commas) inside keys, like the `e` of "step", are blanked by their
# places. Only the values are parsed, never the keys: no key string is made a line (the parse of
# bench/jsonl_ingest.py's file took about 0.89x the CPU of keys and values parsed together and the
# keys compared as one string).
VALUES_ONLY = bytes(c if c in NUMBER_CHARS or c == ord(",") else ord(",") if c == NEWLINE else ord(" ")
                    for c in range(256))
QUOTE, SPACE = ord('"'), ord(" ")
MINUS = ord("-")  # a JSON number starts with - or a digit: a byte from MINUS to MINUS + 12 but . and /


class _Layout:
    """The keys of a line shape, in order, as its first line wrote them, and two sets of places in a
    line of its shape. (1) After each key's opening quote, the characters of its key that the
    values' text keeps (number characters, commas): they must be the layout's (`"step"` and
    `"st3p"` have one shape), and are blanked. (2) After each key's closing quote, where its
    value's first character is: it must start a number. A line of the layout's shape with a number
    outside its values (`{1"a": }`, `{"a1": }`, `{"a": }1`) has a value place without one (the
    number it moved holds the only digits), or the value has company in its stretch of the
    values' text, between two commas, which fails orjson's parse."""

    __slots__ = ("names", "kept_key", "kept_offset", "kept_bytes", "value_offset")

    def __init__(self, names: tuple[str, ...], raw: bytes):
        self.names = names
        quotes = [i for i, c in enumerate(raw) if c == QUOTE]  # every quote is a key's (_teaches_layout)
        opening, closing = quotes[0::2], quotes[1::2]
        kept = [(j, i - o, raw[i]) for j, (o, c) in enumerate(zip(opening, closing)) for i in range(o + 1, c)
                if VALUES_ONLY[raw[i]] != SPACE]
        self.kept_key = np.array([j for j, _, _ in kept], np.intp)  # the key a kept character is in,
        self.kept_offset = np.array([i for _, i, _ in kept], np.intp)  # its place after the opening quote,
        self.kept_bytes = np.array([c for _, _, c in kept], np.uint8)  # and the character
        # each value's first character, after its key's closing quote: past the colon and the spaces
        self.value_offset = np.array([_value_start(raw, c) - c for c in closing], np.intp)


def _value_start(raw: bytes, closing: int) -> int:
    after = raw[raw.index(b":", closing) + 1:]
    return len(raw) - len(after.lstrip())


def _numbers(lines: bytes, layout: _Layout, n: int) -> np.ndarray | None:
    """n lines of the layout's shape (each ending in a newline) as an n x len(keys) array of their
    values; None unless every line holds the layout's keys exactly as its first line wrote them, in
    order, each with a JSON number in its place. The shape leaves the number characters unchecked:
    the keys' own are compared in their places, each value must start in its place, and the
    values' text must parse as one number between each two commas (nothing else kept)."""
    k = len(layout.names)
    chars = np.frombuffer(lines, np.uint8)
    quotes = np.flatnonzero(chars == QUOTE).reshape(n, k, 2)  # the shape's quotes: 2k a line, keys' all
    # each value's first byte, as uint8 - MINUS: an empty value's place holds `,` `}` or a space (below 0:
    # wrapped above 12); `.` or `/` there would fail orjson's parse (no number starts so) or the shape
    if not (chars[quotes[:, :, 1] + layout.value_offset] - np.uint8(MINUS) <= 12).all():
        return None
    places = quotes[:, layout.kept_key, 0] + layout.kept_offset
    if not np.array_equal(chars[places], np.broadcast_to(layout.kept_bytes, places.shape)):
        return None
    text = bytearray(lines.translate(VALUES_ONLY))
    np.frombuffer(text, np.uint8)[places] = SPACE
    try:  # a last element (0) closes the array; one copy, one parse
        flat = orjson.loads(b"".join((b"[", text, b"0]")))
    except orjson.JSONDecodeError:
        return None
    if len(flat) != k * n + 1:
        return None
    flat.pop()
    try:
        packed = struct.pack(f"{k * n}d", *flat)  # measured 2x faster than np.array of the floats
    except (TypeError, OverflowError, struct.error):
        return None
    return np.frombuffer(packed).reshape(n, k)


class _NotJson:
    """A line that is not JSON at all, and why."""

    def __init__(self, why: str):
        self.why = why


def _teaches_layout(point: dict, shape: bytes) -> bool:
    """A flat object of finite numbers whose every quote is a key's: every line of its shape then
    has numbers (and only numbers) where it has them."""
    return (shape.count(b'"') == 2 * len(point)
            and all(type(v) is int and -2 ** 64 < v < 2 ** 64 or type(v) is float and math.isfinite(v)
                    for v in point.values()))


def _kind(obj) -> str:
    if obj is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}.get(
        type(obj), type(obj).__name__)


FLOAT_MAX = 1.7976931348623157e308


def _point(obj: dict) -> dict:
    for value in obj.values():
        vt = type(value)
        if vt is not float and (vt is not int or not -FLOAT_MAX < value < FLOAT_MAX):
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
        elif isinstance(value, int) and not isinstance(value, bool) and not -FLOAT_MAX < value < FLOAT_MAX:
            out[name] = math.inf if value > 0 else -math.inf  # an integer beyond any float (json keeps it whole)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out
