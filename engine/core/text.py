"""Text as a terminal shows it."""

from __future__ import annotations

import re


def last_frame(line: str) -> str:
    """What a terminal leaves of a line holding carriage returns: its last non-blank frame (a
    tqdm bar redrawn in place; the CR of a Windows CRLF line end)."""
    if "\r" not in line:
        return line
    frames = [f for f in line.split("\r") if f.strip()]
    return frames[-1] if frames else ""


# How Python holds bytes of a command line, an environment or a file name that are not UTF-8
# (surrogateescape): text that a UTF-8 file (a run record, the scratchpad) cannot hold.
SURROGATES = re.compile("[\ud800-\udfff]")


def not_utf8(text: str) -> str | None:
    """The text with each byte that is not UTF-8 shown as ?, or None if it is all UTF-8."""
    return SURROGATES.sub("?", text) if SURROGATES.search(text) else None


# Terminal control sequences (colours, cursor moves, window titles: CSI, OSC and two-byte ESC ones)
# and the other control characters but tab and newline: what must not reach a shared text file
# that people `cat` (a title set, the screen cleared, a line overwritten by the text itself).
ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def printable(text: str) -> str:
    """The text without terminal escape sequences, CRLF line ends as LF, and each other control
    character (a NUL, a lone CR, a bell) as U+FFFD."""
    return CONTROLS.sub("\ufffd", ESCAPES.sub("", text.replace("\r\n", "\n")))
