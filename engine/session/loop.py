"""The engine: `poll(now)` does the non-blocking work and returns new events, which it also
applies to its state and records. Its `state` is the session's one State (the TUI reads it, never
a copy): the engine itself needs the reduced state inside a poll (a run's end summary, live
diagnoses), and the CLI has no UI to hold one, so the reducer lives here. Commands (launch, kill) are method calls whose effects come
back as events from the next poll."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable

from urbanrun.engine.core.config import Config
from urbanrun.engine.notes.autolog import AutoLog
from urbanrun.engine.diagnosis.run_doctor import RunDoctor
from urbanrun.engine.session.queue_request import queue_request
from urbanrun.engine.session.run_end import observe_changes, finish_run
from urbanrun.engine.notes.scratchpad import settings_from
from urbanrun.engine.core.events import (Diagnosed, Event, GpuSample, GpuStatus, HostSample, Notice, RunChanged,
                                         StorageStatus)
from urbanrun.engine.session import disk_space
from urbanrun.engine.gpu.sources import annotate, default_gpu_source
from urbanrun.engine.gpu.host import HostSampler
from urbanrun.engine.session.recorder import Recorder
from urbanrun.engine.metrics.attribution import next_start
from urbanrun.engine.metrics.run_files import RunSources
from urbanrun.engine.runs.store import RECORD_FILE, RunRecord, RunStore
from urbanrun.engine.core.state import State
from urbanrun.engine.runs.supervisor import Supervisor

RESCAN_SECONDS = 2.0  # how often the runs folder is listed for runs launched by another urbanrun
WRITE_RETRY_SECONDS = 5.0  # a write the disk refused (the recording, scratchpad entries) is tried again this often


class Engine:
    def __init__(self, config: Config, runs_dir: str | os.PathLike | None = None, *,
                 record_session: bool = True, clock: Callable[[], float] = time.time,
                 gpu_source="nvml", host: bool = True, autolog: AutoLog | None | str = "config"):
        """gpu_source: "nvml" (real NVML, or the recording URBANRUN_GPU_RECORDING names), a
        source object (tests pass a RecordedGpuSource), or None for no GPU telemetry."""
        self.config = config
        self.clock = clock
        self.store = RunStore(Path(runs_dir) if runs_dir else config.runs_dir)
        self.supervisor = Supervisor(config, self.store, clock)
        self.doctor = RunDoctor(config, self.store)
        self._lock = threading.RLock()
        self.autolog = AutoLog(settings_from(config)) if autolog == "config" else autolog
        self.state = State()
        self.recorder = Recorder(self.store.root / "sessions") if record_session else None
        self._recording_paused: tuple[float, int] | None = None  # (next try, events not recorded) while refused
        self.disk = disk_space.DiskSpace(self.store.root)
        self._backlog_next, self._backlog_said = float("-inf"), False  # the scratchpad's refused entries
        self._unwritable_said = 0  # of its entries refused for good (said each, once)
        self._records: dict[str, RunRecord] = {}
        self._sources: dict[str, RunSources] = {}
        self._drained: set[str] = set()  # finished runs whose files were read to the end
        self._mtimes: dict[str, int] = {}
        self._pending: list[Event] = []
        self._ended: list[str] = []  # runs found ended outside a poll (by a kill), finished by the next
        self._last_scan = float("-inf")
        self.gpu = default_gpu_source() if gpu_source == "nvml" else gpu_source
        self.host = HostSampler() if host else None
        self._gpu_status: dict | None = None
        self._foreign_reported = False
        self._seen_pids: set[int] = set()
        self._gpu_procs: dict = {}  # pid -> psutil.Process of GPU processes, for their CPU %
        self._failing: dict[str, str] = {}  # poll steps failing now, and how (each said once)
        self._slurm_outage: str | None = None

    # -- commands --------------------------------------------------------------------------------
    def launch(self, recipe: str, overrides: dict[str, str] | None = None, values: dict | None = None,
               backend: str | None = None, options: dict | None = None, queue: dict | None = None) -> RunRecord:
        """Launch a run; `queue` ({"mem_gb", "gpus", "priority"}, each optional, or {} for the
        estimate) sends it through the GPU-aware launch queue."""
        with self._lock:  # commands come from UI worker threads while another thread polls
            request = None
            if queue is not None or self.config.recipe(recipe).queue:
                queue = queue or {}
                chosen = self.config.recipe(recipe).values_from_text(overrides or {})
                chosen.update(values or {})
                request = queue_request(self.config, self.store, recipe, chosen, queue.get("mem_gb"),
                                        queue.get("gpus"), queue.get("priority", 0))
            record = self.supervisor.launch(recipe, overrides, values, backend=backend, options=options,
                                            queue_request=request)
            self._remember(record, self.clock())
            self._log("launched", record)
            return record

    def observe(self, text: str, settings=None) -> Path:
        """A cross-agent observation written by hand into today's scratchpad (the one `settings` name,
        else the engine's), the runs it names linked."""
        from urbanrun.engine.notes import scratchpad
        from urbanrun.engine.notes.autolog import observe_by_hand

        settings = settings or (self.autolog.settings if self.autolog is not None else None)
        return observe_by_hand(settings or scratchpad.settings_from(self.config), self.store, text)[0]

    def move_queued(self, run_id: str, by: int) -> bool:
        """Move a queued run one place earlier (by < 0) or later; its record says the new place."""
        with self._lock:
            return self.supervisor.move_queued(run_id, by)

    def kill(self, run_id: str, grace: float | None = None, force: bool = False) -> RunRecord:
        """The CLI's kill (Supervisor.request_kill); escalation happens in `poll`. A run that had
        already ended is left as it is, with a notice saying how it ended."""
        with self._lock:
            now = self.clock()
            known = self._records.get(run_id)
            if known is not None and known.watched and self._reconcile(known, now):
                self._ended.append(run_id)  # found ended just now: finished by the next poll
            record, began = self.supervisor.request_kill(run_id, grace, force)
            if not began:
                self._pending.append(Notice(ts=now, level="info", run_id=run_id,
                                            text=f"{run_id} already ended ({record.status}): nothing to stop"))
                return record
            self._remember(record, now)
            self._log("killed", record)
            return record

    def _log(self, what: str, record: RunRecord) -> None:
        if self.autolog is None:
            return
        self.autolog.gpu_names = [f"{g.get('index')}: {g.get('name')}" for g in self.state.gpus]
        try:
            getattr(self.autolog, what)(record)
        except OSError:  # never let the scratchpad stop a launch or a kill: kept in its backlog, said by the poll
            pass

    def import_runs(self, path: str, name: str | None = None) -> list[RunRecord]:
        from urbanrun.engine.session.importer import import_path

        with self._lock:
            records = import_path(self.store, path, name)
            for record in records:
                self._remember(record, self.clock())
                self.follow(record.id)
            return records

    def reload_config(self) -> Config:
        """Re-read config.toml (after the launch form saved new defaults)."""
        from urbanrun.engine.core.config import load_config

        self.config = self.supervisor.config = self.doctor.config = load_config(self.config.path)
        return self.config

    def summary(self, run_id: str) -> dict:
        """The run's summary (engine/session/summary.py) from this engine's state of it: the same
        figures, verdict and next actions `urbanrun status` prints. Its diagnoses are those this
        engine's live doctor found and stored (not diagnosed again, nothing written)."""
        from urbanrun.engine.session.summary import run_summary

        with self._lock:
            record = self._records.get(run_id) or self.store.load(run_id)
            return run_summary(self.store, record, self.config, self.clock(), self.state.runs.get(run_id), save=False,
                               diagnose=False)

    def follow(self, run_id: str) -> None:
        """Read a run's files (also a finished run's: the view asked for its log and metrics)."""
        with self._lock:
            self._follow(run_id)

    def _follow(self, run_id: str) -> None:
        if run_id not in self._sources and run_id not in self._drained and run_id in self._records:
            self._sources[run_id] = RunSources(self.store.run_dir(run_id), self._records[run_id],
                                               lambda: self._next_start(run_id))

    def _next_start(self, run_id: str) -> float | None:
        record = self._records.get(run_id)
        return next_start(record, list(self._records.values())) if record else None

    # -- polling ---------------------------------------------------------------------------------
    def poll(self, now: float | None = None) -> list[Event]:
        with self._lock, self.state.guard:  # views read the state between polls, never during one
            return self._poll(now)

    def _poll(self, now: float | None) -> list[Event]:
        now = self.clock() if now is None else now
        if now - self._last_scan >= RESCAN_SECONDS:
            self._guarded(now, "the runs folder", self._scan, now)
            self._last_scan = now
        ended, self._ended = self._ended, []
        for record in [r for r in self._records.values() if r.watched]:
            if self._guarded(now, f"run {record.id}", self._reconcile, record, now):
                ended.append(record.id)
        self._note_slurm_outage(now)
        for run_id in list(self._sources):
            self._guarded(now, f"run {run_id}'s files", self._read_files, run_id, now, run_id in ended)
        self._guarded(now, "GPU and host sampling", self._sample_machine, now)
        self._guarded(now, "the runs folder's free space", self._check_disk, now)
        self._guarded(now, "the scratchpad", self._write_autolog_backlog, now)
        events, self._pending = self._pending, []
        self.state.apply_all(events)
        events += self._on_ended(ended, now)
        events += self._guarded_list(now, "live diagnosis", self._live_diagnoses, now)
        self._record(events, now)
        return events

    def _guarded(self, now: float, what: str, step: Callable, *args):
        """One step of a poll; its failure becomes a notice, and the poll's other events are kept."""
        try:
            result = step(*args)
        except Exception as exc:  # noqa: BLE001 - a poll never loses events to one bad file or run
            problem = f"{what}: {type(exc).__name__}: {exc}"
            if self._failing.get(what) != problem:  # said once, not at every poll
                self._failing[what] = problem
                self._pending.append(Notice(ts=now, level="error", text=problem))
            return None
        self._failing.pop(what, None)
        return result

    def _guarded_list(self, now: float, what: str, step: Callable, *args) -> list[Event]:
        before = len(self._pending)
        extra = self._guarded(now, what, step, *args)
        if extra is None:  # the notice it left in _pending belongs to this poll
            extra, self._pending = self._pending[before:], self._pending[:before]
            self.state.apply_all(extra)
        return extra

    def _reconcile(self, record: RunRecord, now: float) -> bool:
        """Reconcile one run (re-read first if another urbanrun changed it); True if it just ended."""
        record = self._refresh(record, now)
        was_active = record.active
        if self.supervisor.reconcile(record):
            self._note_saved(record)
            self._pending.append(RunChanged(ts=now, run=record.to_dict()))
            return was_active and not record.active
        return False

    def _record(self, events: list[Event], now: float) -> None:
        """The session recording; one the disk refuses (full) is paused, said once, and tried again
        every few seconds: it never costs the poll its events, and it resumes in the same file
        (whole lines only) once there is room, saying how many events it could not keep."""
        if self.recorder is None or not events:
            return
        paused = self._recording_paused
        if paused is not None and now < paused[0]:
            self._recording_paused = (paused[0], paused[1] + len(events))
            return
        try:
            self.recorder.write(events)
        except OSError as exc:
            missed = (paused[1] if paused else 0) + len(events)
            self._recording_paused = (now + WRITE_RETRY_SECONDS, missed)
            if paused is None:
                where = self.recorder.path or self.recorder.folder
                self._pending.append(Notice(ts=now, level="error", text=(
                    f"session recording paused: {where}: {exc.strerror or exc}; urbanrun goes on and tries "
                    f"again every {WRITE_RETRY_SECONDS:g} s")))
            return
        if paused is not None:
            self._recording_paused = None
            self._pending.append(Notice(ts=now, level="info", text=(
                f"session recording resumed in {self.recorder.path}; the {paused[1]:,} events meanwhile are "
                f"not in it")))

    def _write_autolog_backlog(self, now: float) -> None:
        """Scratchpad entries the disk refused (full, read-only) are kept and tried again every few
        seconds (and before any new entry): said once when the first is refused, once when all are in."""
        log = self.autolog
        if log is None:
            return
        if log.backlog and now >= self._backlog_next:
            try:
                log.write_backlog()
            except OSError as exc:
                self._backlog_next = now + WRITE_RETRY_SECONDS
                if not self._backlog_said:
                    self._backlog_said = True
                    self._pending.append(Notice(ts=now, level="warning", text=(
                        f"scratchpad entries not written yet: {exc.filename or log.settings.root}: "
                        f"{exc.strerror or exc}; they are kept, and written once it can be")))
        for _, why in log.unwritable[self._unwritable_said:]:
            self._pending.append(Notice(ts=now, level="warning", text=(
                f"a scratchpad entry cannot be written ({why}); its text is printed when urbanrun ends")))
        self._unwritable_said = len(log.unwritable)
        if self._backlog_said and not log.backlog:
            self._backlog_said = False
            self._pending.append(Notice(ts=now, level="info", text=(
                f"scratchpad: the entries kept meanwhile are written, now that {log.settings.root} takes them")))

    def _check_disk(self, now: float) -> None:
        status = self.disk.check(now)
        if status is not None:
            self._pending += [StorageStatus(ts=now, status=status),
                              Notice(ts=now, level="warning" if status["full"] else "info",
                                     text=disk_space.describe(status))]

    def _note_slurm_outage(self, now: float) -> None:
        """Say once when the SLURM controller stops answering (its jobs keep their last known state)
        and once when it answers again."""
        outage = self.supervisor.slurm_outage
        if (outage is None) == (self._slurm_outage is None):
            return
        self._slurm_outage = outage
        text = (f"{outage}; SLURM jobs keep their last known state, none is marked lost while it is down"
                if outage else "the SLURM controller answers again")
        self._pending.append(Notice(ts=now, level="warning" if outage else "info", text=text))

    def _sample_machine(self, now: float) -> None:
        if self.host is not None:
            live = {r.id: (r.pid, r.pid_create_time, self.store.run_dir(r.id)) for r in self._records.values()
                    if r.active and r.pid}
            host = self.host.sample(now, live)
            if host is not None:
                self._pending.append(HostSample(ts=now, host=host))
        if self.gpu is None:
            return
        reading = self.gpu.sample(now)
        if reading is None:
            return
        status, gpus, procs = reading
        if status != self._gpu_status:
            self._gpu_status = dict(status)
            self._pending.append(GpuStatus(ts=now, status=dict(status)))
        if not status.get("available"):
            return
        if self.host is not None:  # a GPU process started since the last walk of the process table
            self.host.note_gpu_pids([p["pid"] for p in procs])
        procs, foreign = annotate(procs, self.host.pids if self.host else {}, self._seen_pids,
                                  self._gpu_procs)
        if foreign and not self._foreign_reported:
            self._foreign_reported = True
            # info, not a warning: the user can do nothing about it, and it toasted on every start
            # (the GPU view says it beside the processes it concerns)
            self._pending.append(Notice(ts=now, level="info", text=(
                f"NVML reports GPU processes whose pids exist on no local process ({', '.join(map(str, foreign[:5]))}"
                f"{', …' if len(foreign) > 5 else ''}): inside a container NVML sees the host's pids, so these "
                f"processes cannot be tied to runs; they are marked 'not on this host'.")))
        self._pending.append(GpuSample(ts=now, gpus=tuple(gpus), processes=tuple(procs)))

    def _on_ended(self, ended: list[str], now: float) -> list[Event]:
        """Runs this engine saw end: summary figures into the record, the diagnosis, the scratchpad
        entry, and an OOM relaunch where the recipe asks (engine/ending.py)."""
        extra: list[Event] = []
        for run_id in ended:
            extra += self._guarded_list(now, f"run {run_id}'s end", self._finish, run_id, now)
        return extra

    def _finish(self, run_id: str, now: float) -> list[Event]:
        run, record = self.state.runs.get(run_id), self._records.get(run_id)
        if run is None or record is None:
            return []
        found, relaunch = finish_run(record, run, self.doctor, self.autolog)
        self._note_saved(record)
        extra: list[Event] = [Diagnosed(ts=now, run_id=run_id, diagnoses=tuple(d.to_dict() for d in found)),
                              RunChanged(ts=now, run=record.to_dict())]
        if relaunch:
            extra += self._relaunch(relaunch, now)[1]
        self.state.apply_all(extra)
        return extra

    def relaunch(self, run_id: str, change: dict, note: str) -> RunRecord:
        """Launch a run again with `change` applied to its parameters (a remedy chosen in the TUI)."""
        with self._lock:
            record = self.store.load(run_id)
            plan = {"recipe": record.recipe, "values": {**record.params, **change}, "parent": run_id, "recovery": note}
            child, events = self._relaunch(plan, self.clock(), strict=True)
            self._pending += events
            return child

    def _relaunch(self, plan: dict, now: float, strict: bool = False) -> tuple[RunRecord | None, list[Event]]:
        try:
            child = self.supervisor.launch(plan["recipe"], values=plan["values"])
        except Exception as exc:  # a relaunch that cannot start is reported, never fatal
            if strict:
                raise
            return None, [Notice(ts=now, level="error", run_id=plan["parent"], text=f"OOM relaunch failed: {exc}")]
        child.parent, child.recovery = plan["parent"], plan["recovery"]
        self.store.save(child)
        self._records[child.id] = child
        self._note_saved(child)
        self._follow(child.id)
        self._log("launched", child)
        return child, [RunChanged(ts=now, run=child.to_dict()),
                       Notice(ts=now, level="warning", run_id=child.id,
                              text=f"{plan['parent']} relaunched as {child.id} with {plan['recovery']}")]

    def _live_diagnoses(self, now: float) -> list[Event]:
        active = [r for r in self._records.values() if r.active]
        extra = [Diagnosed(ts=now, run_id=run_id, diagnoses=tuple(d.to_dict() for d in found))
                 for run_id, found in self.doctor.live(active, self.state.runs, self.state.gpus, now)]
        for event in list(extra):  # a new error while the run goes on (its loss turned NaN): what changed?
            record = self._records.get(event.run_id)
            if record is None or record.changes_since_good is not None or \
                    not any(d.get("severity") == "error" for d in event.diagnoses):
                continue
            if observe_changes(self.doctor, record, event.diagnoses):
                self._note_saved(record)
                if self.autolog is not None:
                    self.autolog.observed(record)
                extra.append(RunChanged(ts=now, run=record.to_dict()))
        self.state.apply_all(extra)
        return extra

    def close(self) -> str | None:
        """Close the files; returns a sentence for what could not be kept (scratchpad entries the
        disk still refuses, with their text), for urbanrun to print as it ends, or None."""
        for sources in self._sources.values():
            sources.close()
        if self.recorder is not None:
            self.recorder.close()
        return self.autolog.left_unwritten() if self.autolog is not None else None

    def _scan(self, now: float) -> None:
        """Pick up runs this engine has not seen: history at start, runs other urbanruns launch,
        and runs left running by an earlier urbanrun (reattach: reconcile checks pid + create time)."""
        known = set(self._records)
        for run_id in self.store.ids():
            if run_id in known:
                continue
            record = self.store.load_or_unreadable(run_id)
            if record.status == "unreadable":  # that run's problem: say so once, keep the rest going
                self._pending.append(Notice(ts=now, level="warning", text=record.error, run_id=run_id))
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
        fresh = self.store.load_or_unreadable(record.id)
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
            self._follow(record.id)

    def _read_files(self, run_id: str, now: float, to_end: bool = False) -> None:
        """New events from a run's files. A run that ended in this poll is read to the end at
        once (its summary is made from them next); otherwise each poll reads a bounded amount."""
        sources = self._sources[run_id]
        record = self._records.get(run_id)
        ended = record is not None and not record.active
        if to_end:
            for events in sources.read_to_end(now):
                self._pending += events
        else:
            before = sources.position
            self._pending += sources.read(now, final=ended)
            if not ended or sources.position != before:
                return
        if ended:
            sources.close()  # the run ended and its files are drained
            del self._sources[run_id]
            self._drained.add(run_id)
