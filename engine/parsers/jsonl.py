"""JSON-lines metrics: one object per line; NaN/Infinity tokens allowed; nested dicts are
flattened with '/' (`{"train": {"loss": 1}}` -> `train/loss`)."""

from __future__ import annotations

import json
import math


class JsonlParser:
    format = "jsonl"

    def __init__(self):
        self.bad_lines = 0
        self.first_error: str | None = None

    def feed(self, lines: list[str], first_line_no: int = 0) -> list[dict]:
        points = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                self.bad_lines += 1
                if self.first_error is None:
                    self.first_error = f"line {first_line_no + i + 1}: {exc}"
                continue
            point = flatten(obj)
            if point:
                points.append(point)
        return points


def flatten(obj: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
        elif isinstance(value, str) and value in ("NaN", "nan", "Infinity", "-Infinity", "inf", "-inf"):
            out[name] = float(value.replace("Infinity", "inf"))
    return out


def is_finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
