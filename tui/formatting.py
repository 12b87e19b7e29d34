"""Small text helpers shared by the panes: durations, sizes, status glyphs and colours."""

from __future__ import annotations

import math

GLYPHS = {"starting": ("◌", "yellow"), "pending": ("◷", "yellow"), "running": ("▶", "green"), "stopping": ("■", "yellow"),
          "exited": ("✔", "green"), "failed": ("✖", "red"), "killed": ("■", "magenta"),
          "lost": ("?", "yellow"), "imported": ("⇣", "cyan"),
          "unreadable": ("!", "red"), "queued": ("⧗", "yellow"), "cancelled": ("⊘", "magenta")}


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0 or math.isnan(seconds):
        return "-"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def gib(value: float | None) -> str:
    return "-" if not value else f"{value / 2 ** 30:.1f}G"


def num(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def whole(value) -> str:
    """A step or epoch as the JSON gives it: whole numbers without a decimal point."""
    if value is None:
        return "-"
    return str(int(value)) if isinstance(value, float) and value.is_integer() else num(value)


def status_of(record: dict) -> str:
    """The status to show: a running run that was asked to stop shows `stopping`."""
    status = record.get("status", "starting")
    return "stopping" if status == "running" and record.get("kill_requested") else status


def bar(fraction: float | None, width: int = 10) -> str:
    if fraction is None:
        return " " * width
    filled = max(0, min(width, round(fraction * width)))
    return "█" * filled + "░" * (width - filled)


def cut(text: str, limit: int) -> str:
    """At most `limit` characters; a cut one ends with … (it was cut, not the whole line)."""
    return text if len(text) <= limit else text[:limit - 1] + "…"
