"""The engine: `poll(now)` does the non-blocking work and returns new events, which it also
applies to its state and records. Commands (launch, kill) are method calls whose effects come
back as events from the next poll."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from .config import Config
from .events import Event, Notice, RunChanged
from .recorder import Recorder
from .run_sources import RunSources
from .runs import RECORD_FILE, RunRecord, RunStore
from .state import State
from .supervisor import Supervisor

RESCAN_SECONDS = 2.0  # how often the runs folder is listed for runs launched by another urbanrun


class Engine:
    def __init__(self, config: Config, runs_dir: str | os.PathLike | None = None, *,
                 record_session: bool = True, clock: Callable[[], float] = time.time):
        self.config = config
        self.clock = clock
        self.store = RunStore(Path(runs_dir) if runs_dir else config.runs_dir)
        self.supervisor = Supervisor(config, self.store, clock)
        self.state = State()
        self.recorder = Recorder(self.store.root / "sessions") if record_session else None
        self._records: dict[str, RunRecord] = {}
        self._sources: dict[str, RunSources] = {}
        self._drained: set[str] = set()  # finished runs whose files were read to the end
        self._mtimes: dict[str, int] = {}
        self._pending: list[Event] = []
        self._last_scan = float("-inf")

    # -- commands --------------------------------------------------------------------------------
    def launch(self, recipe: str, overrides: dict[str, str] | None = None, values: dict | None = None) -> RunRecord:
        record = self.supervisor.launch(recipe, overrides, values)
        self._remember(record, self.clock())
        return record

    def kill(self, run_id: str, grace: float | None = None, force: bool = False) -> RunRecord:
        record = self.supervisor.request_kill(run_id, grace, force)
        self._remember(record, self.clock())
        return record

    def follow(self, run_id: str) -> None:
        """Read a run's files (also a finished run's: the view asked for its log and metrics)."""
        if run_id not in self._sources and run_id not in self._drained and run_id in self._records:
            self._sources[run_id] = RunSources(self.store.run_dir(run_id), self._records[run_id])

    # -- polling ---------------------------------------------------------------------------------
    def poll(self, now: float | None = None) -> list[Event]:
        now = self.clock() if now is None else now
        if now - self._last_scan >= RESCAN_SECONDS:
            self._scan(now)
            self._last_scan = now
        for record in [r for r in self._records.values() if r.active]:
            record = self._refresh(record, now)
            if self.supervisor.reconcile(record):
                self._note_saved(record)
                self._pending.append(RunChanged(ts=now, run=record.to_dict()))
        for run_id in list(self._sources):
            self._read_files(run_id, now)
        events, self._pending = self._pending, []
        self.state.apply_all(events)
        if self.recorder is not None:
            self.recorder.write(events)
        return events

    def close(self) -> None:
        for sources in self._sources.values():
            sources.close()
        if self.recorder is not None:
            self.recorder.close()

    def _scan(self, now: float) -> None:
        """Pick up runs this engine has not seen: history at start, runs other urbanruns launch,
        and runs left running by an earlier urbanrun (reattach: reconcile checks pid + create time)."""
        known = set(self._records)
        for run_id in self.store.ids():
            if run_id in known:
                continue
            try:
                record = self.store.load(run_id)
            except Exception as exc:  # a corrupt record: say so once, keep the rest going
                self._records[run_id] = RunRecord(id=run_id, recipe="?", argv=[], cwd="", status="lost",
                                                  error=str(exc))
                self._pending.append(Notice(ts=now, level="warning", text=str(exc), run_id=run_id))
                continue
            self._remember(record, now)

    def _refresh(self, record: RunRecord, now: float) -> RunRecord:
        """Re-read a record another urbanrun changed (a kill from the CLI while the TUI watches)."""
        try:
            mtime = (self.store.run_dir(record.id) / RECORD_FILE).stat().st_mtime_ns
        except OSError:
            return record
        if mtime == self._mtimes.get(record.id):
            return record
        self._mtimes[record.id] = mtime
        try:
            fresh = self.store.load(record.id)
        except Exception:
            return record
        if fresh != record:
            self._records[record.id] = fresh
            self._pending.append(RunChanged(ts=now, run=fresh.to_dict()))
        return fresh

    def _note_saved(self, record: RunRecord) -> None:
        try:
            self._mtimes[record.id] = (self.store.run_dir(record.id) / RECORD_FILE).stat().st_mtime_ns
        except OSError:
            pass

    def _remember(self, record: RunRecord, now: float) -> None:
        self._records[record.id] = record
        self._note_saved(record)
        self._pending.append(RunChanged(ts=now, run=record.to_dict()))
        if record.active:
            self.follow(record.id)

    def _read_files(self, run_id: str, now: float) -> None:
        sources = self._sources[run_id]
        record = self._records.get(run_id)
        events = sources.read(now, final=record is not None and not record.active)
        self._pending += events
        if record is not None and not record.active and not events:
            sources.close()  # the run ended and its files are drained
            del self._sources[run_id]
            self._drained.add(run_id)
