"""How the CLI prints for programs: every --json object carries `schema_version` (the version of
the JSON Schemas in engine/cli/schemas/, `urbanrun schema NAME`), numbers are JSON-safe (NaN and
infinities as the strings "nan", "inf", "-inf"; whole-number steps as integers up to 2^53, the largest
every JSON reader holds exactly, larger ones as floats: never a 300-digit integer), errors are one
`{"error": {"code", "message"}}` object on stdout."""

from __future__ import annotations

import json
import math
import sys

SCHEMA_VERSION = 1
EXACT = 2 ** 53  # beyond it an integer is not exact in a JavaScript (or any float64) JSON reader
WHOLE_KEYS = frozenset({"step", "last_step", "best_step", "first_step", "min_step", "total_steps", "steps", "epoch",
                        "total_epochs"})


def number(value):
    """A JSON-safe number, as every --json output prints one: NaN and infinities as strings, whole
    values as integers up to 2^53, larger ones as floats (None beyond any float)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if value != value else ("inf" if value > 0 else "-inf")
        return int(value) if value.is_integer() and abs(value) <= EXACT else value
    if type(value) is int and abs(value) > EXACT:  # a tqdm total of 40 digits, a metric of 30
        try:
            return float(value)
        except OverflowError:  # beyond any float: no figure, not 309 digits
            return None
    return value


def plain(value, key: str | None = None):
    """A JSON-safe copy: non-finite floats as strings, whole steps and epochs as integers."""
    if key in WHOLE_KEYS and (isinstance(value, float) or type(value) is int):
        return number(value)
    if isinstance(value, float):
        return number(value) if not math.isfinite(value) else value
    if isinstance(value, dict):
        return {str(k): plain(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def versioned(data: dict) -> dict:
    return {"schema_version": SCHEMA_VERSION, **plain(data)}


def emit(data: dict) -> None:
    """One JSON document (indented) on stdout."""
    print(json.dumps(versioned(data), indent=2))
    sys.stdout.flush()


def emit_line(data: dict) -> None:
    """One JSON object on one line (streams: events, followed metrics)."""
    print(json.dumps(versioned(data), separators=(",", ":")))
    sys.stdout.flush()


def notice_line(code: str, level: str, message: str, path: str | None = None, run: str | None = None) -> dict:
    """A --follow stream's notice (schema part NOTICE_LINE): not data, something its reader should
    know; every stream's notice has the same top-level `notice` object."""
    return {"notice": {"code": code, "level": level, "message": message, "path": path}, "run": run}


def say_notices(follower, as_json: bool, run: str | None = None) -> None:
    """A followed file's notices (deleted, replaced, rewritten, unreadable): JSON notice lines on
    stdout, or one sentence each on stderr."""
    for code, level, text in follower.take_notices():
        if as_json:
            emit_line(notice_line(code, level, text, str(follower.path), run))
        else:
            print(f"urbanrun: {text}", file=sys.stderr)


def error_object(code: str, message: str) -> dict:
    return versioned({"error": {"code": code, "message": message}})
