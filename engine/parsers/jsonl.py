"""JSON-lines metrics: one object per line; NaN/Infinity tokens allowed; nested dicts are
flattened with '/' (`{"train": {"loss": 1}}` -> `train/loss`); non-numeric values dropped.

Fast path: a whole batch of lines is parsed by orjson in one call (as one JSON array); only a
batch that fails (NaN tokens, a corrupt line) is parsed line by line, with json as the fallback.
"""

from __future__ import annotations

import json

import orjson


class JsonlParser:
    format = "jsonl"

    def __init__(self):
        self.bad_lines = 0
        self.first_error: str | None = None

    def feed(self, lines: list[str], first_line_no: int = 0) -> list[dict]:
        lines = [line for line in lines if line.strip()]
        if not lines:
            return []
        try:
            objects = orjson.loads("[" + ",".join(lines) + "]")
        except orjson.JSONDecodeError:
            objects = [self._one(line, first_line_no + i + 1) for i, line in enumerate(lines)]
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
