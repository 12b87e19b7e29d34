"""What happens when a run ends, whoever notices it (the TUI's engine, or a CLI command that
reconciles): its loss summary and GPU figures go into its record, it is diagnosed, and the
scratchpad gets its end entry. Returns the diagnoses and an OOM relaunch plan, if any."""

from __future__ import annotations

import math
import time

from urbanrun.engine.core.events import RunChanged
from urbanrun.engine.core.state import RunState, State, loss_name
from urbanrun.engine.diagnosis import changes
from urbanrun.engine.diagnosis.run_doctor import RunDoctor, read_log_tail
from urbanrun.engine.metrics.run_files import RunSources
from urbanrun.engine.notes.autolog import AutoLog
from urbanrun.engine.runs.store import RunRecord, RunStore


def run_from_files(store: RunStore, record: RunRecord) -> RunState:
    """A run's state from its files, every byte of each read to the end (for commands without an
    engine): the same sources and the same reducer the engine uses, so both summarise alike."""
    now = time.time()
    state = State()
    state.apply(RunChanged(ts=now, run=record.to_dict()))
    sources = RunSources(store.run_dir(record.id), record)
    try:
        for events in sources.read_to_end(now):
            state.apply_all(events)
    finally:
        sources.close()
    return state.runs[record.id]


def finish_run(record: RunRecord, run: RunState | None, doctor: RunDoctor, autolog: AutoLog | None):
    if run is not None:
        name = loss_name(run)
        series = run.metrics.get(name) if name else None
        if series is not None and series.count:
            record.loss_name, record.steps = name, series.last_step
            record.loss_best = series.best
            record.loss_last = series.last if math.isfinite(series.last) else None
        if run.gpu_mem_peak:
            record.gpu_mem_peak_mb = round(run.gpu_mem_peak / 2 ** 20, 1)
            record.gpu_util_mean = None if run.gpu_util_mean is None else round(run.gpu_util_mean, 1)
    found, relaunch = doctor.on_end(record, run)  # saves the record
    observed = observe_changes(doctor, record)
    if autolog is not None:
        try:
            autolog.ended(record)
            if observed:
                autolog.observed(record)
        except OSError:
            pass  # a scratchpad that cannot be written must not stop supervision
    return found, relaunch


def observe_changes(doctor: RunDoctor, record: RunRecord) -> dict | None:
    """What changed since the recipe's last good run, when this run failed, was diagnosed or ended
    clearly worse; kept in the record as `changes_since_good`."""
    recipe = doctor.config.recipes.get(record.recipe)
    try:
        obs = changes.observe(doctor.store, record, recipe.observe if recipe else None,
                              read_log_tail(doctor.store.log_path(record)))
    except (OSError, ValueError) as exc:  # a repository or record we cannot read is no reason to stop
        obs = {"headline": f"could not compare with the last good run: {exc}", "reason": "error", "run": record.id,
               "commits": [], "files": {}, "params": {}, "data_loading": []}
    if obs is not None:
        record.changes_since_good = obs
        doctor.store.save(record)
    return obs
