"""The one order of runs by when they were made (`ls`, `last`, the TUI's runs table): the record's
creation time, the id to break ties (the random tail of two launches in one second is no order).
A run whose record cannot be read is placed by its id's time: the newest launch is `last` even
when it lost its record. Its id tells the second only: it counts as that second's end (of two
launches in one second, the one that lost its record is `last`, never hidden behind the other by
the fraction its id lacks)."""

from __future__ import annotations

import re
import time

RUN_ID_SHAPE = re.compile(r"^(\d{8}-\d{6})-[A-Za-z0-9_-]+-[0-9a-f]{4}$")


def creation_key(run_id: str, status: str | None, created: float | None) -> tuple:
    """Sort key, oldest first."""
    if status != "unreadable":
        return (created or 0.0, run_id)
    shape = RUN_ID_SHAPE.match(run_id)
    try:
        return (time.mktime(time.strptime(shape.group(1), "%Y%m%d-%H%M%S")) + 0.999999 if shape else 0.0, run_id)
    except (ValueError, OverflowError):
        return (0.0, run_id)


def newest_first(records: dict[str, dict]) -> list[str]:
    """Run ids of records (id -> the record as a dict, as the state holds them), newest first."""
    return sorted(records, key=lambda run_id: creation_key(run_id, records[run_id].get("status"),
                                                           records[run_id].get("created")), reverse=True)
