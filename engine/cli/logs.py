"""A run's output as numbered lines, for programs: `urbanrun logs RUN --json` and the MCP tool
run_logs print the same object (schema `logs`): the last N lines, or the last N matching a search,
each with its line number and the text a terminal leaves of it (its last carriage-return frame).
Read streaming (memory bounded by N, whatever the log's size); with --follow, one object a line
for each batch of new lines, until the run ends."""

from __future__ import annotations

import re
import time
from collections import deque
from pathlib import Path

from urbanrun.engine.cli.output import emit, emit_line, say_notices
from urbanrun.engine.core.errors import UserError
from urbanrun.engine.core.files import path_stat, regular_file
from urbanrun.engine.core.text import last_frame
from urbanrun.engine.metrics.follower import FileFollower

DEFAULT_LINES = 100
FOLLOW_INTERVAL = 0.2


def pattern_of(search: str | None, name: str = "--search") -> re.Pattern | None:
    """A search as a case-insensitive regular expression; a bad one is one sentence (exit 2)."""
    try:
        return re.compile(search, re.I) if search else None
    except re.error as exc:
        raise UserError(f"{name} is not a valid regular expression ({exc}): '{search}'.") from None


class NumberedLog:
    """One log read from its first line on: each read returns the new lines that match, numbered."""

    def __init__(self, path: Path, search: str | None):
        self.path, self.search, self.pattern = path, search, pattern_of(search)
        self.total = 0
        self.follower: FileFollower | None = None
        self._open()

    def _open(self) -> None:
        if self.follower is None and path_stat(self.path, "log") is not None:  # no log yet: it may come
            regular_file(self.path, "log")  # a FIFO in its place would block, a device never end
            self.follower = FileFollower(self.path, max_read=4 << 20)

    def read(self, keep: int | None = None) -> list[dict]:
        """The new complete lines that match, up to the file's end (the last `keep` of them)."""
        kept: deque = deque(maxlen=keep)
        self._open()
        if self.follower is None:
            return []
        while True:
            before = self.follower.position
            for raw in self.follower.poll():
                self.total += 1
                text = last_frame(raw)
                if self.pattern is None or self.pattern.search(text):
                    kept.append({"line": self.total, "text": text})
            if self.follower.position == before or self.follower.has_notices:  # a notice goes between
                return list(kept)  # the old file's lines and the new one's

    def partial(self) -> list[dict]:
        """The last line when it has no newline yet (a run that ended mid-line), as the next line."""
        pending = self.follower.pending_line() if self.follower is not None else None
        if pending is None:
            return []
        self.total += 1
        text = last_frame(pending)
        return [{"line": self.total, "text": text}] if self.pattern is None or self.pattern.search(text) else []

    def document(self, run_id: str, lines: list[dict]) -> dict:
        skipped = self.follower.skipped_lines if self.follower is not None else 0
        return {"run": run_id, "path": str(self.path), "total_lines": self.total, "search": self.search, "lines": lines,
                "skipped_lines": skipped}

    def say_notices(self, run_id: str) -> None:
        """Notice lines for what happened to the log since the last read (deleted, replaced, ...)."""
        if self.follower is not None:
            say_notices(self.follower, as_json=True, run=run_id)

    def close(self) -> None:
        if self.follower is not None:
            self.follower.close()


def log_lines(run_id: str, path: Path, lines: int = DEFAULT_LINES, search: str | None = None) -> dict:
    """The last `lines` lines of a log (of those matching `search`), as the `logs` schema says."""
    log = NumberedLog(path, search)
    try:
        found = log.read(lines) + log.partial()
        return log.document(run_id, found[-lines:] if lines else [])
    finally:
        log.close()


def print_json(run_id: str, path: Path, lines: int | None, search: str | None, follow: bool, still_running) -> int:
    """`logs RUN --json`: one object; with `follow`, then one object a line per batch of new lines
    until `still_running()` is False."""
    keep = DEFAULT_LINES if lines is None else lines
    if not follow:
        emit(log_lines(run_id, path, keep, search))
        return 0
    log = NumberedLog(path, search)
    try:
        first = log.read(keep)
        emit_line(log.document(run_id, first[-keep:] if keep else []))
        log.say_notices(run_id)
        running = True
        while running:
            time.sleep(FOLLOW_INTERVAL)
            running = still_running()
            new = log.read()
            if not running:
                new += log.partial()
            if new:
                emit_line(log.document(run_id, new))
            log.say_notices(run_id)
    except KeyboardInterrupt:
        return 130
    finally:
        log.close()
    return 0
