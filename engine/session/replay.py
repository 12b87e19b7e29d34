"""Replay a recorded session: the same events, on a virtual clock, through the same reducer.

`poll(now)` returns the events whose recorded offset has been reached at `speed` times real
pace (pauses excluded); `fast=True` returns everything at once (headless replays). Like the
Engine, it applies what it returns to its `state`, the replay's one State."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from urbanrun.engine.core.errors import UserError
from urbanrun.engine.core.files import path_stat, regular_file
from urbanrun.engine.core.events import Event, Notice
from urbanrun.engine.core.state import State
from urbanrun.engine.session.recorder import read_recording


class ReplaySource:
    read_only = True

    def __init__(self, path: str | os.PathLike, speed: float = 1.0, fast: bool = False,
                 clock: Callable[[], float] = time.monotonic):
        if path_stat(path, "recording") is not None:  # a missing one is said below, as any unreadable one
            regular_file(path, "recording")  # a FIFO would block the open, a device never end
        try:
            self.events, skipped, first = read_recording(path)
        except OSError as exc:
            raise UserError(f"cannot read the recording {path}: {exc.strerror or exc}.") from None
        unread = (f"{skipped} line(s) are not events this urbanrun reads (a newer urbanrun's recording, or a "
                  f"damaged one; {first})") if skipped else ""
        if not self.events:
            raise UserError(f"{path} holds no events{'; ' + unread if unread else ''}; give a session file from "
                            f"runs/sessions/.")
        if skipped:  # said where the replay's notices are, the events that could be read replayed
            self.events.insert(0, Notice(ts=self.events[0].ts, level="warning", text=f"{path}: {unread}; "
                                         f"the rest is replayed."))
        if speed <= 0:
            raise UserError(f"--speed must be > 0, not {speed}.")
        self.path = path
        self.speed = speed
        self.fast = fast
        self.clock = clock
        self.t0 = self.events[0].ts
        self._i = 0
        self._start: float | None = None
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self.state = State()

    @property
    def done(self) -> bool:
        return self._i >= len(self.events)

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def toggle_pause(self) -> bool:
        now = self.clock()
        if self._paused_at is None:
            self._paused_at = now
        else:
            self._paused_total += now - self._paused_at
            self._paused_at = None
        return self.paused

    def summary(self, run_id: str) -> dict:
        """A run's summary (engine/session/summary.py) as the recording has it so far, at the
        recording's own clock; its diagnoses are the recorded ones."""
        from urbanrun.engine.runs.store import RunRecord, RunStore
        from urbanrun.engine.session.summary import run_summary

        with self.state.guard:
            run = self.state.runs[run_id]
            record = RunRecord.from_dict(run.record)
            record.diagnoses = run.diagnoses or record.diagnoses  # the latest recorded diagnosis event's
            store = RunStore(Path(self.path).resolve().parent.parent)  # runs/sessions/X.jsonl: its runs folder
            return run_summary(store, record, None, self.state.last_ts, run, save=False, diagnose=False)

    def poll(self, now: float | None = None) -> list[Event]:
        with self.state.guard:
            events = self._due(now)
            self.state.apply_all(events)
        return events

    def _due(self, now: float | None) -> list[Event]:
        if self.fast:
            out, self._i = self.events[self._i:], len(self.events)
            return out
        now = self.clock() if now is None else now
        if self._start is None:
            self._start = now
        if self._paused_at is not None:
            return []
        reached = self.t0 + (now - self._start - self._paused_total) * self.speed
        start = self._i
        while self._i < len(self.events) and self.events[self._i].ts <= reached:
            self._i += 1
        return self.events[start:self._i]
