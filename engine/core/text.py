"""Text as a terminal shows it."""

from __future__ import annotations


def last_frame(line: str) -> str:
    """What a terminal leaves of a line holding carriage returns: its last non-blank frame (a
    tqdm bar redrawn in place; the CR of a Windows CRLF line end)."""
    if "\r" not in line:
        return line
    frames = [f for f in line.split("\r") if f.strip()]
    return frames[-1] if frames else ""
