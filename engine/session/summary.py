"""One run summary, computed the same way for every view: progress (step, epoch, totals, fraction,
a smoothed rate and the ETA from it), the primary metric's last and best values with their steps,
the GPU peak, the diagnoses so far, a verdict, and the next actions.

It is computed from a RunState: the engine's (the TUI) or one read from the run's files
(`read_run`), so `show`, `status`, `ls`, the run record, the scratchpad and the TUI agree whether
or not a TUI was watching. A finished run keeps its figures in its record (`record.summary`)."""

from __future__ import annotations

import math
import os
import time

from urbanrun.engine.core.config import Config
from urbanrun.engine.core.state import RunState, loss_name
from urbanrun.engine.diagnosis.actions import next_actions
from urbanrun.engine.diagnosis.rules import Diagnosis, headline
from urbanrun.engine.diagnosis.run_doctor import live_diagnoses, merged
from urbanrun.engine.metrics.run_files import read_run
from urbanrun.engine.runs.store import METRICS_FILE, RunRecord, RunStore, iso
from urbanrun.engine.session.end_files import changes_since_end, ended_diagnoses, fingerprint
from urbanrun.engine.session.transitions import failed

RATE_POINTS = 200  # the recent intervals the rate is smoothed over
RATE_SMOOTHING = 0.7  # EMA weight on seconds per step (debiased, as TensorBoard; tqdm smooths as much)
VERDICTS = ("running-healthy", "running-sick", "ended-ok", "ended-failed")


def run_summary(store: RunStore, record: RunRecord, config: Config | None, now: float | None = None,
                run: RunState | None = None, *, brief: bool = False, save: bool = True,
                idle: float | None = None, diagnose: bool = True) -> dict:
    """The summary of one run. `run`: the engine's state of it (else its files are read). `brief`
    (for listings): a finished run's stored figures are used as they are, without next actions.
    `save`: a live run's diagnoses, when they changed, are stored in its record. `idle`: seconds
    since its output last grew (default: from the engine's state, or the files' times). `diagnose`:
    False skips a live run's diagnosis (its stored diagnoses are used: nothing new was read)."""
    now = time.time() if now is None else now
    changes = changes_since_end(store, record)
    if brief and not record.active and (changes == [] or record.status == "unreadable"):  # stored at its end
        return _assemble(record, dict(record.summary) or _figures_of_record(record), None, [], "", 1, config,
                         actions=False)
    if run is None:
        run = read_run(store, record, now)
        idle = idle_seconds(store, record, now) if idle is None else idle
    figures = figures_of(record, run, now)
    diagnoses = None
    if not record.active:  # the same list `doctor` gives (session/end_files.py)
        diagnoses = ended_diagnoses(store, record, changes, run)
    elif diagnose:
        found = merged([d.to_dict() for d in live_diagnoses(record, run, now, idle_seconds=idle,
                                                            log=store.log_path(record))], record.diagnoses)
        saved = False
        if save and _kinds(found) != _kinds(record.diagnoses):
            try:
                store.save_diagnoses(record, found, headline([Diagnosis.from_dict(d) for d in found]))
                saved = True
            except OSError as exc:  # a read-only or full run folder: shown, not kept (store.unsaved says so)
                store.unsaved[record.id] = exc.strerror or str(exc)
        if not saved:
            record.diagnoses = found
    if changes is None and not record.active and save and record.status != "unreadable":
        _keep_as_ended(store, record, figures, diagnoses)
    lines = list(run.log)
    first_line = run.log_lines_total - len(lines) + 1
    return _assemble(record, figures, run, lines, str(store.log_path(record)), first_line, config,
                     actions=not brief, diagnoses=diagnoses)


def _keep_as_ended(store: RunStore, record: RunRecord, figures: dict, diagnoses: list[dict]) -> None:
    """A run that ended before its end files were kept (an older urbanrun): its figures and
    diagnoses as read now are kept as those of its end, with its files as they are, so that `ls`
    (stored figures) and `status` (files read) agree from the first look on, and a later change of
    its files is noticed. A record that cannot be written is shown as read (store.unsaved says so)."""
    record.summary = stored_figures(figures)
    record.diagnoses, record.diagnosis = list(diagnoses), headline([Diagnosis.from_dict(d) for d in diagnoses])
    record.end_files = fingerprint(store, record)
    try:
        store.save(record)
    except OSError as exc:
        store.unsaved[record.id] = exc.strerror or str(exc)


def figures_of(record: RunRecord, run: RunState, now: float) -> dict:
    """The figures a finished run keeps in its record: progress, primary metric, every metric's
    last/best, GPU peak."""
    name = loss_name(run)
    series = run.metrics.get(name) if name else None
    metric = None
    if series is not None and series.count:
        metric = {"name": name, "last": series.last, "last_step": series.last_step, "best": series.best,
                  "best_step": series.best_step}
    metrics = {n: {"last": s.last, "best": s.best, "best_step": s.best_step, "count": s.count}
               for n, s in list(run.metrics.items())[:50] if s.count}
    return {"progress": progress_of(record, run, now), "metric": metric, "metrics": metrics,
            "gpu_peak_mb": _gpu_peak_mb(record, run)}


def progress_of(record: RunRecord, run: RunState, now: float) -> dict:
    prog = run.progress
    structured = [s for n, s in run.metrics.items() if run.metric_formats.get(n) != "log" and s.count]
    step = max(s.last_step for s in structured) if structured else _n(prog.get("step"), "n")
    bar = prog.get("batch") or {}
    epochs_seen = [e for e in (run.epoch, _n(prog.get("epoch"), "n"), bar.get("epoch")) if e is not None]
    epoch = max(epochs_seen) if epochs_seen else None
    total_epochs = _n(prog.get("epoch"), "total") or bar.get("epochs") or _positive(record.params.get("epochs"))
    total_steps = _n(prog.get("step"), "total")
    if total_steps is None and bar.get("total") and bar.get("epochs") and total_epochs:
        total_steps = bar["total"] * total_epochs  # a bar per epoch: its total is the steps per epoch
    if _positive(record.params.get("max_steps")):
        total_steps = min(total_steps or math.inf, record.params["max_steps"])
    fraction = None
    if step is not None and total_steps:
        fraction = step / total_steps
    elif epoch is not None and total_epochs:
        within = bar["n"] / bar["total"] if bar.get("total") and bar.get("epoch") == epoch else 1.0
        fraction = (epoch - 1 + within) / total_epochs
    if fraction is not None:
        fraction = min(1.0, max(0.0, fraction))
    rate = smoothed_rate(run, structured) or bar.get("rate")
    eta = None
    if record.active:
        if total_steps and step is not None and rate:
            eta = max(0.0, total_steps - step) / rate
        elif fraction and record.started:
            elapsed = now - record.started
            eta = elapsed * (1 - fraction) / fraction
    end = record.ended or now
    return {"step": step, "epoch": epoch, "total_epochs": total_epochs, "total_steps": total_steps,
            "fraction": None if fraction is None else round(fraction, 4),
            "steps_per_second": None if rate is None else round(rate, 4),
            "eta_seconds": None if eta is None else round(eta, 1),
            "elapsed_seconds": round(end - record.started, 1) if record.started else None}


def smoothed_rate(run: RunState, structured) -> float | None:
    """Steps per second: the debiased EMA of seconds per step over the recent points of the
    metric with the most points (its own `time` stamps), so one slow step moves it little."""
    if not structured:
        return None
    import numpy as np  # here: `ls` and `status` of a finished run read stored figures, no series

    from urbanrun.engine.core.series import ema

    series = max(structured, key=len)
    steps, times = (np.asarray(a, dtype=np.float64)[-(RATE_POINTS + 1):] for a in (series.steps, series.times))
    ds, dt = np.diff(steps), np.diff(times)
    keep = (ds > 0) & (dt >= 0)
    if keep.sum() < 1 or dt[keep].sum() <= 0:
        return None
    seconds = dt[keep] / ds[keep]
    # one stalled step (a checkpoint, a validation pass) counts as at most twice the usual step:
    # the ETA moves a little, it does not jump 0:01 -> 2:49 -> 1:28 while the EMA forgets it
    usual = float(np.median(seconds))
    per_step = ema(np.clip(seconds, usual / 2, usual * 2) if usual > 0 else seconds, RATE_SMOOTHING)[-1]
    return 1.0 / per_step if per_step > 0 else None


def verdict(record: RunRecord, diagnoses: list[dict]) -> str:
    sick = any(d.get("severity") in ("error", "warning") for d in diagnoses)
    if record.active:
        return "running-sick" if sick else "running-healthy"
    return "ended-failed" if failed(record.status, diagnoses) else "ended-ok"


def stored_figures(figures: dict) -> dict:
    """The figures as a TOML table (no None; TOML has no null)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if v is not None}
        return value

    return strip(figures)


def _assemble(record: RunRecord, figures: dict, run: RunState | None, lines: list[str], log_path: str,
              first_line: int, config: Config | None, actions: bool, diagnoses: list[dict] | None = None) -> dict:
    """The summary object; `diagnoses`: a finished run's, read again (else the record's)."""
    recipe = config.recipes.get(record.recipe) if config is not None else None
    headline_text = record.diagnosis
    if diagnoses is None:
        diagnoses = record.diagnoses
    elif diagnoses != record.diagnoses:
        headline_text = headline([Diagnosis.from_dict(d) for d in diagnoses])
    progress = {key: figures.get("progress", {}).get(key) for key in (
        "step", "epoch", "total_epochs", "total_steps", "fraction", "steps_per_second", "eta_seconds",
        "elapsed_seconds")}
    metric = figures.get("metric")
    if metric is not None:
        metric = {key: metric.get(key) for key in ("name", "last", "last_step", "best", "best_step")}
    out = {"id": record.id, "recipe": record.recipe, "status": record.status, "active": record.active,
           "exit_code": record.exit_code, "signal": record.signal, "started": iso(record.started),
           "ended": iso(record.ended), "progress": progress, "metric": metric,
           "metrics": figures.get("metrics") or {}, "gpu_peak_mb": figures.get("gpu_peak_mb"),
           "diagnosis": headline_text, "diagnoses": list(diagnoses), "verdict": verdict(record, diagnoses)}
    if actions:
        out["next_actions"] = next_actions(record, diagnoses, recipe, lines, log_path, first_line)
    return out


def _figures_of_record(record: RunRecord) -> dict:
    """What a record written before summaries were stored still says (its loss and GPU peak)."""
    metric = None
    if record.loss_name:
        metric = {"name": record.loss_name, "last": record.loss_last, "last_step": record.steps,
                  "best": record.loss_best, "best_step": None}
    return {"progress": {"step": record.steps}, "metric": metric, "gpu_peak_mb": record.gpu_mem_peak_mb}


def _gpu_peak_mb(record: RunRecord, run: RunState) -> float | None:
    if record.gpu_mem_peak_mb:
        return record.gpu_mem_peak_mb
    if run.gpu_mem_peak:
        return round(run.gpu_mem_peak / 2 ** 20, 1)
    for name in ("mem_peak_gb", "mem_reserved_gb", "mem_allocated_gb"):  # the trainer's own torch figures
        series = run.metrics.get(name)
        if series is not None and series.worst is not None:
            return round(series.worst * 1024, 1)
    return None


def idle_seconds(store: RunStore, record: RunRecord, now: float) -> float | None:
    """Seconds since the run's log or metrics file last grew (files read by a command, not watched)."""
    times = []
    for path in (store.log_path(record), store.run_dir(record.id) / METRICS_FILE):
        try:
            times.append(os.stat(path).st_mtime)
        except OSError:
            pass
    last = max(times, default=None) or record.started
    return None if last is None else max(0.0, now - last)


def _kinds(diagnoses: list[dict]) -> list[str]:
    return sorted(d.get("kind", "") for d in diagnoses)


def _n(progress: dict | None, key: str):
    return None if not progress else progress.get(key)


def _positive(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None
