"""Diagnosis wired to runs: when a run ends, diagnose its whole log and exit status, keep the
result in its record (a swallowed error turns `exited` into `failed`), and — where the recipe
opts in — relaunch after a CUDA OOM with the next remedy. While a run lives, look at its
trends (memory leak, hang, data-loading bound, divergence) every few seconds."""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

from urbanrun.engine import platform
from urbanrun.engine.core.config import Config, Recipe
from urbanrun.engine.core.errors import UserError
from urbanrun.engine.core.files import kind_of
from urbanrun.engine.diagnosis.rules import Diagnosis, diagnose, headline
from urbanrun.engine.runs.store import RunRecord, RunStore
from urbanrun.engine.core.state import RunState, loss_name
from urbanrun.engine.diagnosis import trends

LOG_TAIL_BYTES = 4 << 20  # what is read of a finished run's log for its diagnosis
LIVE_SECONDS = 10.0


def read_log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> list[str]:
    return _log_tail(path, limit)[0]


def _log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> tuple[list[str], str | None]:
    """The log's last lines, and why it could not be read (None: read, or not written yet)."""
    try:
        with platform.open_regular(path) as fh:  # a FIFO there would block, /dev/zero never end
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read()
    except FileNotFoundError:
        return [], None
    except OSError as exc:
        return [], exc.strerror or str(exc)
    return data.decode("utf-8", errors="replace").splitlines(), None


def metric_values(run: RunState | None) -> dict[str, list[float]]:
    if run is None:
        return {}
    return {name: series.values for name, series in run.metrics.items()}


def output_diagnoses(lines: list[str], run: RunState | None, params: dict, exit_code: int | None = None,
                     signal: int | None = None, killed_by_user: bool = False) -> list[Diagnosis]:
    """What a run's output and series show: the rules over its log text and every metric, the
    loss's divergence, a memory leak. One function for `doctor LOG`, `doctor RUN`, the end of a run
    and the live check, so they all give the same kinds."""
    found = diagnose(lines, exit_code, signal, params=params, metrics=metric_values(run),
                     killed_by_user=killed_by_user)
    name = loss_name(run) if run is not None else None
    if name and (d := trends.diverging(run.metrics[name].values)):
        found.append(d)
    mem = _memory_series(run)
    if mem is not None and (d := trends.leak(*mem)):
        found.append(d)
    return found


def diagnose_run(store: RunStore, record: RunRecord, run: RunState | None) -> list[Diagnosis]:
    path = store.log_path(record)
    lines, unreadable = _log_tail(path)
    found = output_diagnoses(lines, run, record.params, record.exit_code, record.signal,
                             killed_by_user=record.status == "killed")
    if unreadable:  # "no problem found" would be a guess made without the run's output
        found.append(_log_unreadable(path, unreadable, "exit status"))
    return found


def _log_unreadable(path: Path, why: str, besides: str) -> Diagnosis:
    return Diagnosis("log_unreadable", "warning",
                     f"its output log {path} cannot be read ({why}): only the run's metrics and {besides} were "
                     f"diagnosed", (), (f"Put the run's output back as a regular file at {path}, then run doctor again.",))


def _not_a_log(path: Path) -> str | None:
    """Why a live run's log cannot be read (a folder or FIFO put in its place), from one stat: None
    when it is a file or not there yet (a run being started)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    return None if stat.S_ISREG(st.st_mode) else f"it is {kind_of(st)}, not a file"


def live_diagnoses(record: RunRecord, run: RunState, now: float, gpus: list[dict] = (),
                   idle_seconds: float | None = None, log: Path | None = None) -> list[Diagnosis]:
    """A running run's diagnoses: those of its output so far (the last lines kept in `run.log`),
    the trends only a live run has (a hang, a data-loading bottleneck), and a `log` that can no
    longer be read (else its silence would pass for a healthy run's)."""
    found = output_diagnoses(list(run.log), run, record.params)
    if log is not None and (why := _not_a_log(log)):
        found.append(_log_unreadable(log, why, "trends"))
    util = _run_gpu_util(run, gpus)
    if idle_seconds is None:
        idle_seconds = now - (run.last_output_ts or record.started or now)
    for d in (trends.hang(idle_seconds, util), trends.input_bound(util, run.host.get("cpu"))):
        if d:
            found.append(d)
    if not any(d.kind == "leak" for d in found):  # with the GPU's capacity, the leak says when it runs out
        capacity = max((g.get("mem_total") or 0 for g in gpus), default=None) or None
        mem = _memory_series(run)
        if mem is not None and (d := trends.leak(*mem[:2], capacity=capacity, steps_per_s=_steps_per_second(run))):
            found.append(d)
    return found


# Kinds that say how things are now, not what happened: every diagnosis looks for them afresh, so
# one not found again no longer holds (a log put back as a file is readable again).
WHILE_THEY_HOLD = frozenset({"log_unreadable"})


def merged(fresh: list[dict], stored: list[dict]) -> list[dict]:
    """Diagnoses so far: the fresh ones, then what was found earlier and is not found again (a NaN
    seen at step 40 stays a fact of the run even when its log has scrolled on), except what holds
    only while it is found (WHILE_THEY_HOLD)."""
    kinds = {d.get("kind") for d in fresh}
    return list(fresh) + [d for d in stored if d.get("kind") not in kinds and d.get("kind") not in WHILE_THEY_HOLD]


def has_new_non_finite(run: RunState, known_kinds) -> bool:
    """A series whose latest value is NaN/Inf, not yet diagnosed: looked at on every poll (cheap)."""
    if "nan_loss" in known_kinds or "nan_metric" in known_kinds:
        return False
    return any(s.last is not None and not math.isfinite(s.last) for s in run.metrics.values())


def _memory_series(run: RunState | None):
    """(steps, bytes, capacity) from the trainer's torch memory, else from NVML's per-run memory."""
    if run is not None and "mem_allocated_gb" in run.metrics:
        s = run.metrics["mem_allocated_gb"]
        return list(s.steps), [v * 2 ** 30 for v in s.values], None
    if run is not None and len(run.gpu_mem_history) > 20:
        s = run.gpu_mem_history
        return list(s.steps), list(s.values), None
    return None


# -- OOM recovery -------------------------------------------------------------------------------------
def next_remedy(recipe: Recipe, params: dict) -> tuple[dict, str] | None:
    """The next change after an OOM: halve the batch, then mixed precision, then checkpointing."""
    names = {p.name for p in recipe.params}
    batch = params.get("batch_size")
    if "batch_size" in names and isinstance(batch, int) and batch > 1:
        return {"batch_size": batch // 2}, f"batch_size {batch} -> {batch // 2}"
    if "amp" in names and not params.get("amp"):
        return {"amp": True}, "amp off -> on"
    if "grad_checkpoint" in names and not params.get("grad_checkpoint"):
        return {"grad_checkpoint": True}, "grad_checkpoint off -> on"
    return None


def remedy_options(recipe: Recipe, params: dict) -> list[tuple[dict, str]]:
    """Every remedy that applies to this run's parameters, in the order OOM recovery tries them."""
    options, params = [], dict(params)
    while (remedy := next_remedy(recipe, params)) is not None:
        options.append(remedy)
        params.update(remedy[0])
        if "batch_size" in remedy[0]:  # one batch step is enough to offer
            params["batch_size"] = 1
    return options


# causes a relaunch with other parameters can cure; every other cause (an integer edge_index, a
# tensor on the wrong device, NCCL, a driver) is fixed in the code or the machine, not by a relaunch
MEMORY_KINDS = frozenset({"cuda_oom", "host_oom", "leak"})


def relaunch_remedies(recipe: Recipe | None, params: dict, diagnoses: list[dict]) -> tuple[list[tuple[dict, str]], str]:
    """The parameter changes a relaunch can apply to this run, chosen by its diagnosed cause, and,
    when there are none, the sentence saying why (and what to do instead)."""
    causes = [d for d in diagnoses if d.get("severity") in ("error", "warning")]
    if causes and not any(d.get("kind") in MEMORY_KINDS for d in causes):
        first = causes[0]
        hint = (first.get("remedies") or ["see its diagnosis"])[0]
        return [], f"{first.get('kind')} is fixed in the code, not by relaunching with other parameters: {hint}"
    if recipe is None:
        return [], "its recipe is not in config.toml any more, so it cannot be relaunched"
    options = remedy_options(recipe, params)
    if not options:
        return [], "no remedy applies to this run's parameters (no batch_size, amp or grad_checkpoint to change)"
    return options, ""


def recovery_depth(store: RunStore, record: RunRecord) -> int:
    depth, parent = 0, record.parent
    while parent and depth < 100:
        depth += 1
        try:
            parent = store.load(parent).parent
        except UserError:  # the chain's older runs were removed (or are unreadable): counted this far
            break
    return depth


class RunDoctor:
    def __init__(self, config: Config, store: RunStore):
        self.config = config
        self.store = store
        self._next_live = 0.0
        self._live_kinds: dict[str, tuple] = {}

    def on_end(self, record: RunRecord, run: RunState | None) -> tuple[list[Diagnosis], dict | None]:
        """Diagnose a run that just ended (and save its record); returns the diagnoses and, when
        OOM recovery applies, the relaunch to make: {"recipe", "values", "parent", "recovery"}."""
        found = diagnose_run(self.store, record, run)
        record.diagnoses = merged([d.to_dict() for d in found], record.diagnoses)
        record.diagnosis = headline([Diagnosis.from_dict(d) for d in record.diagnoses])
        if any(d.kind == "swallowed_error" for d in found) and record.status == "exited":
            record.status = "failed"
        self.store.save(record)
        return found, self._relaunch(record, found)

    def _relaunch(self, record: RunRecord, found: list[Diagnosis]) -> dict | None:
        recipe = self.config.recipes.get(record.recipe)
        if recipe is None or not recipe.oom_recovery or not any(d.kind == "cuda_oom" for d in found):
            return None
        if recovery_depth(self.store, record) >= recipe.oom_recovery:
            return None
        remedy = next_remedy(recipe, record.params)
        if remedy is None:
            return None
        change, text = remedy
        return {"recipe": recipe.name, "values": {**record.params, **change}, "parent": record.id, "recovery": text}

    def live(self, records: list[RunRecord], runs: dict[str, RunState], gpus: list[dict], now: float):
        """(run id, diagnoses so far) for live runs whose diagnoses changed since the last look, each
        stored in the run's record. Every few seconds, and at once when a series turns NaN/Inf."""
        due = now >= self._next_live
        if due:
            self._next_live = now + LIVE_SECONDS
        changed = []
        for record in records:
            run = runs.get(record.id)
            if run is None or not record.active:
                continue
            known = self._live_kinds.get(record.id, ())
            if not due and not has_new_non_finite(run, known):
                continue
            found = merged([d.to_dict() for d in live_diagnoses(record, run, now, gpus, log=self.store.log_path(record))],
                           record.diagnoses)
            kinds = tuple(sorted(d["kind"] for d in found))
            if kinds != known:
                self._live_kinds[record.id] = kinds
                self.store.save_diagnoses(record, found, headline([Diagnosis.from_dict(d) for d in found]))
                changed.append((record.id, [Diagnosis.from_dict(d) for d in found]))
        return changed


def _run_gpu_util(run: RunState, gpus: list[dict]) -> float | None:
    if not run.gpu_mem:
        return None
    utils = [g.get("util_gpu") for g in gpus if g.get("util_gpu") is not None]
    return sum(utils) / len(utils) if utils else None


def _steps_per_second(run: RunState) -> float | None:
    name = loss_name(run)
    series = run.metrics.get(name) if name else None
    if series is None or len(series) < 2:
        return None
    steps, times = series.steps, series.times
    span = times[-1] - times[0]
    return (steps[-1] - steps[0]) / span if span > 0 else None

