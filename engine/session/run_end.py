"""What happens when a run ends, whoever notices it (the TUI's engine, or a CLI command that
reconciles): its summary figures (progress, loss, GPU) go into its record, it is diagnosed, and
the scratchpad gets its end entry. Returns the diagnoses and an OOM relaunch plan, if any."""

from __future__ import annotations

import math
import time

from urbanrun.engine.core.state import RunState
from urbanrun.engine.diagnosis import changes
from urbanrun.engine.diagnosis.run_doctor import RunDoctor, read_log_tail
from urbanrun.engine.metrics.run_files import read_run
from urbanrun.engine.notes.autolog import AutoLog
from urbanrun.engine.runs.store import RunRecord, RunStore
from urbanrun.engine.session.end_files import fingerprint
from urbanrun.engine.session.summary import figures_of, stored_figures


def run_from_files(store: RunStore, record: RunRecord) -> RunState:
    """A run's state from its files, read to the end (for commands without an engine)."""
    return read_run(store, record, time.time())


def keep_figures(store: RunStore, record: RunRecord, run: RunState | None) -> None:
    """A finished (or imported) run's figures into its record, with the files they hold for."""
    if run is not None:
        figures = figures_of(record, run, record.ended or time.time())
        record.summary = stored_figures(figures)
        metric = figures["metric"]
        if metric is not None:
            record.loss_name, record.steps, record.loss_best = metric["name"], metric["last_step"], metric["best"]
            record.loss_last = metric["last"] if math.isfinite(metric["last"]) else None
        if run.gpu_mem_peak:
            record.gpu_mem_peak_mb = round(run.gpu_mem_peak / 2 ** 20, 1)
            record.gpu_util_mean = None if run.gpu_util_mean is None else round(run.gpu_util_mean, 1)
    record.end_files = fingerprint(store, record)  # the figures and diagnoses hold for these files


def finish_run(record: RunRecord, run: RunState | None, doctor: RunDoctor, autolog: AutoLog | None):
    keep_figures(doctor.store, record, run)
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


def observe_changes(doctor: RunDoctor, record: RunRecord, live: tuple[dict, ...] = ()) -> dict | None:
    """What changed since the recipe's last good run, when this run failed, was diagnosed (`live`:
    a new error diagnosis of a run still going) or ended clearly worse; kept in the record as
    `changes_since_good`."""
    recipe = doctor.config.recipes.get(record.recipe)
    try:
        obs = changes.observe(doctor.store, record, recipe.observe if recipe else None,
                              read_log_tail(doctor.store.log_path(record)), live)
    except (OSError, ValueError) as exc:  # a repository or record we cannot read is no reason to stop
        obs = {"headline": f"could not compare with the last good run: {exc}", "reason": "error", "run": record.id,
               "commits": [], "files": {}, "params": {}, "data_loading": []}
    if obs is not None:
        record.changes_since_good = obs
        doctor.store.save(record)
    return obs
