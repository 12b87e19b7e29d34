"""Records every event of a supervisor session to runs/sessions/<timestamp>.jsonl (append-only),
readable by its owner only, with secrets redacted from every event that carries text."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path

from urbanrun.engine import platform
from urbanrun.engine.core import redact
from urbanrun.engine.core.events import Event, GpuSample, GpuStatus, HostSample, MetricPoints, Progress, decode, encode

NUMBERS_ONLY = (MetricPoints, GpuSample, GpuStatus, HostSample, Progress)  # no free text: written as they are


class Recorder:
    """Appends whole lines only: a write the disk refuses part way (full) is cut back to the last
    whole line, so the recording stays readable and the next write can follow it once there is room."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path: Path | None = None  # created with the first events, so idle CLIs leave no files
        self._fd: int | None = None
        self._size = 0  # bytes of whole lines written

    def write(self, events: list[Event]) -> None:
        if not events:
            return
        data = "".join(encode(_redacted(e)) + "\n" for e in events).encode("utf-8")
        if self._fd is None:
            self._open()
        try:
            view = memoryview(data)
            while view:  # a full disk first takes what fits (a short write), then refuses
                view = view[os.write(self._fd, view):]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise
        self._size += len(data)

    def _open(self) -> None:
        if self.path is None:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(OSError):  # also a folder an older urbanrun made (if it is ours)
                platform.make_private(self.folder)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.path = self.folder / f"{stamp}-{os.getpid()}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
        platform.make_private(self.path)
        self._size = os.fstat(self._fd).st_size

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _redacted(event: Event) -> Event:
    if isinstance(event, NUMBERS_ONLY):
        return event
    return dataclasses.replace(event, **{f.name: redact.data(getattr(event, f.name))
                                         for f in dataclasses.fields(event) if f.name != "ts"})


def read_session(path: str | os.PathLike) -> list[Event]:
    """The events of a recording (read_recording: and what was skipped)."""
    return read_recording(path)[0]


def read_recording(path: str | os.PathLike) -> tuple[list[Event], int, str | None]:
    """The events of a recording, how many lines were skipped as not events of this version (a
    newer urbanrun's recording, a damaged line) and why the first was; a torn last line (a session
    killed mid-write) is ignored."""
    events, skipped, first = [], 0, None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.endswith("\n"):
                break
            if not line.strip():
                continue
            try:
                events.append(decode(line))
            except (ValueError, TypeError, RecursionError) as exc:  # TypeError: a field this version lacks
                skipped += 1
                first = first or f"line {number}: {exc}"
    return events, skipped, first
