"""The state: a function of the event sequence. `State.apply(event)` is the reducer.

It updates in place for speed, but reads nothing but the event: the same events in the same
order give the same state, which is what makes --replay exact.

There is one State per session, owned by the source that reduces (the Engine, or the
ReplaySource): views read that one, never a copy. `State.guard` is held by the reducer for a
whole poll; a view reads between polls and takes the guard without waiting (a UI thread that
finds it held draws when the poll's events arrive instead).
"""

from __future__ import annotations

import math
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING

from urbanrun.engine.core.events import (Diagnosed, Event, GpuSample, GpuStatus, HostSample, LogLines, MetricPoints, Notice,
                                         Progress, RunChanged, StorageStatus)
from urbanrun.engine.core.points import Block, Points, whole
from urbanrun.engine.core.run_order import newest_first

if TYPE_CHECKING:
    from urbanrun.engine.core.series import Series

LOG_LINES_KEPT = 5_000
NOTICES_KEPT = 200
GPU_HISTORY = 3600  # recent samples per GPU kept for the sparklines (an hour at 1 s)
GPU_SERIES_CAP = 4096  # per GPU field: the newest 2048 samples exact, all older ones as min/max buckets
AXIS_KEYS = {"step", "epoch", "time", "timestamp", "_step", "_runtime", "_timestamp"}
GPU_MEM_KEY = "gpu_mem"  # metrics contract: bytes of GPU memory the run reports holding (optional)


def new_series(**kwargs) -> Series:
    """A Series. Its module (numpy) is imported with the first one, not with the state: the TUI's
    first frame and the CLI's record-only commands (ls, --help) import the state but need no numpy."""
    from urbanrun.engine.core.series import Series

    return Series(**kwargs)


@dataclass
class RunState:
    record: dict
    log: deque = field(default_factory=lambda: deque(maxlen=LOG_LINES_KEPT))
    log_lines_total: int = 0
    metrics: dict[str, Series] = field(default_factory=dict)
    metric_formats: dict[str, str] = field(default_factory=dict)  # which source feeds each series
    points_total: int = 0
    progress: dict = field(default_factory=dict)  # latest Progress, per unit
    progress_ts: float = 0.0
    gpu_mem: float = 0.0  # bytes on GPUs now, summed over the run's processes
    gpu_mem_peak: float = 0.0
    # where gpu_mem comes from: "nvml" (per-process figures), "run" (its own `gpu_mem` metric, used
    # while NVML's per-process figure is N/A: WDDM, MIG, containers), or "" (none yet)
    gpu_mem_source: str = ""
    gpu_util_sum: float = 0.0
    gpu_util_samples: int = 0
    host: dict = field(default_factory=dict)  # cpu %, rss, procs of the run's tree
    diagnoses: list = field(default_factory=list)
    epoch: float | None = None  # the highest epoch any metric point named
    last_output_ts: float = 0.0  # when its log or metrics last grew
    gpu_mem_history: Series = field(default_factory=lambda: new_series(cap=4096))  # bytes over wall time
    changes: int = 0  # events that changed this run so far: views redraw a run only when it moved

    @property
    def gpu_util_mean(self) -> float | None:
        return self.gpu_util_sum / self.gpu_util_samples if self.gpu_util_samples else None

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def status(self) -> str:
        return self.record.get("status", "starting")


@dataclass
class State:
    runs: dict[str, RunState] = field(default_factory=dict)
    notices: deque = field(default_factory=lambda: deque(maxlen=NOTICES_KEPT))
    last_ts: float = 0.0
    gpu_status: dict = field(default_factory=dict)
    gpus: list = field(default_factory=list)
    gpu_processes: list = field(default_factory=list)
    gpu_history: dict = field(default_factory=dict)  # index -> deque of (ts, util %, mem used, temp, power W)
    gpu_series: dict = field(default_factory=dict)  # index -> {"util": Series, "mem": Series}: the whole session
    host: dict = field(default_factory=dict)
    storage: dict = field(default_factory=dict)  # the runs folder's disk: {"path", "free", "full"} once it filled
    guard: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def newest_first(self) -> list[str]:
        """The runs' ids by when they were made, newest first: the order of `ls` (core/run_order.py)."""
        return newest_first({run_id: run.record for run_id, run in self.runs.items()})

    def apply(self, event: Event) -> None:
        self.last_ts = max(self.last_ts, event.ts)
        if isinstance(event, RunChanged):
            run = self.runs.get(event.run_id)
            if run is None:
                self.runs[event.run_id] = RunState(record=dict(event.run))
            else:
                run.record = dict(event.run)
                run.changes += 1
        elif isinstance(event, LogLines):
            run = self._run(event.run_id)
            if event.restarted:
                run.log.append("── log restarted (file truncated or replaced) ──")
            run.log.extend(event.lines)
            run.log_lines_total += len(event.lines)
            run.last_output_ts = event.ts
            run.changes += 1
        elif isinstance(event, MetricPoints):
            run = self._run(event.run_id)
            add_points(run, event.points, event.format, event.ts)
            _reported_gpu_mem(run, event.points, event.ts)
            run.last_output_ts = event.ts
            run.changes += 1
        elif isinstance(event, Progress):
            run = self._run(event.run_id)
            run.progress[event.progress.get("unit", "step")] = dict(event.progress)
            run.progress_ts = event.ts
            run.changes += 1
        elif isinstance(event, Diagnosed):
            run = self._run(event.run_id)
            run.diagnoses = [dict(d) for d in event.diagnoses]
            run.record["diagnoses"] = list(run.diagnoses)  # as stored: views that read the record agree (an empty list too)
            run.changes += 1
        elif isinstance(event, GpuStatus):
            self.gpu_status = dict(event.status)
        elif isinstance(event, StorageStatus):
            self.storage = dict(event.status)
        elif isinstance(event, GpuSample):
            self._gpu_sample(event)
        elif isinstance(event, HostSample):
            self.host = dict(event.host)
            for run_id, figures in event.host.get("runs", {}).items():
                if run_id in self.runs:
                    self.runs[run_id].host = figures
                    self.runs[run_id].changes += 1
        elif isinstance(event, Notice):
            self.notices.append(event)

    def _gpu_sample(self, event: GpuSample) -> None:
        self.gpus = [dict(g) for g in event.gpus]
        by_index = {g.get("index"): g for g in self.gpus}
        for g in self.gpus:
            history = self.gpu_history.get(g.get("index"))
            if history is None:
                history = self.gpu_history[g.get("index")] = deque(maxlen=GPU_HISTORY)
            history.append((event.ts, g.get("util_gpu"), g.get("mem_used"), g.get("temp"), g.get("power_w")))
            series = self.gpu_series.get(g.get("index"))
            if series is None:
                series = self.gpu_series[g.get("index")] = {"util": new_series(cap=GPU_SERIES_CAP),
                                                             "mem": new_series(cap=GPU_SERIES_CAP)}
            for name, value in (("util", g.get("util_gpu")), ("mem", g.get("mem_used"))):
                if isinstance(value, (int, float)):
                    series[name].append(event.ts, event.ts, float(value))
        self.gpu_processes = [dict(p) for p in event.processes]
        per_run: dict[str, list[dict]] = {}
        for p in self.gpu_processes:
            if p.get("run_id"):
                per_run.setdefault(p["run_id"], []).append(p)
        for run in self.runs.values():
            procs = per_run.get(run.id) or []
            figures = [p["used_mem"] for p in procs if p.get("used_mem") is not None]
            if figures:
                run.gpu_mem, run.gpu_mem_source = float(sum(figures)), "nvml"
                run.gpu_mem_peak = max(run.gpu_mem_peak, run.gpu_mem)
                run.gpu_mem_history.append(event.ts, event.ts, run.gpu_mem)
            elif run.gpu_mem_source != "run" and run.gpu_mem:  # gone from the GPU
                run.gpu_mem, run.gpu_mem_source = 0.0, ""
                run.changes += 1
            # else the run's own figure stands until it reports another
            if not procs:
                continue
            run.changes += 1
            utils = [p["sm_util"] if p.get("sm_util") is not None else by_index.get(p.get("gpu"), {}).get("util_gpu")
                     for p in procs]
            utils = [u for u in utils if u is not None]
            if utils:
                run.gpu_util_sum += sum(utils) / len(utils)
                run.gpu_util_samples += 1

    def apply_all(self, events) -> None:
        for event in events:
            self.apply(event)

    def _run(self, run_id: str) -> RunState:
        run = self.runs.get(run_id)
        if run is None:  # output before its record (a replay cut short): keep it anyway
            run = self.runs[run_id] = RunState(record={"id": run_id, "status": "running"})
        return run



def add_points(run: RunState, points, fmt: str = "jsonl", ts: float = 0.0) -> None:
    """Metric points (dicts, or Points with blocks of columns) into a run's series (the reducer's
    step; also used by commands that read files without an engine). A point's step is its step,
    else its epoch, else a running count. A log line's metric yields to a structured source's
    (metrics.jsonl, CSV, TensorBoard, W&B) of the same metric, whatever its spelling (_twins)."""
    for part in points.parts if type(points) is Points else (points,):
        if type(part) is Block:
            _add_block(run, part, fmt, ts)
        elif not _add_columns(run, part, fmt, ts):
            _add_rows(run, part, fmt, ts)


_NUMBERS = {int, float}


def _add_columns(run: RunState, points, fmt: str, ts: float) -> bool:
    """The usual batch (one writer's lines: every point has the same names, each name always a
    number or never one) taken column by column with C-speed maps instead of value by value.
    Returns False, having changed nothing, for any other batch: `_add_rows` takes it."""
    if not points or type(points[0]) is not dict:
        return False
    names = list(points[0])
    if set(map(len, points)) != {len(names)}:
        return False
    columns: dict[str, list] = {}
    try:
        for name in names:
            values = list(map(itemgetter(name), points))  # KeyError: a point with other names
            kinds = set(map(type, values))
            if kinds <= _NUMBERS:
                columns[name] = values
            elif kinds & _NUMBERS or (bool in kinds and name in AXIS_KEYS):
                return False  # numbers mixed with other things (or a bool step): value by value
    except (KeyError, TypeError):
        return False
    steps = columns.get("step") if "step" in names else columns.get("epoch")
    epochs = columns.get("epoch")
    top = whole(float(max(epochs))) if epochs else None
    _extend(run, columns, steps, columns.get("time"), top, len(points), fmt, ts)
    return True


def _add_block(run: RunState, block: Block, fmt: str, ts: float) -> None:
    """A block of columns (points with the same names, all numbers): as _add_columns takes them."""
    columns = {name: block.values[:, i] for i, name in enumerate(block.names)}
    steps = columns.get("step") if "step" in columns else columns.get("epoch")
    epochs = columns.get("epoch")
    top = whole(float(epochs.max())) if epochs is not None else None
    _extend(run, columns, steps, columns.get("time"), top, len(block), fmt, ts)


def _extend(run: RunState, columns: dict, steps, times, top_epoch, n: int, fmt: str, ts: float) -> None:
    """n points' columns into the series: by their steps, else a running count; by their times,
    else the event's."""
    import numpy as np

    if steps is None:  # no step (or no numeric one): a running count, as _add_rows counts
        steps = range(run.points_total, run.points_total + n)
    if times is None:
        times = np.full(n, ts, dtype=np.float64)
    # contiguous once for every metric (a block's columns are strided views: each series would copy them)
    steps, times = np.ascontiguousarray(steps, dtype=np.float64), np.ascontiguousarray(times, dtype=np.float64)
    run.points_total += n
    if top_epoch is not None:
        run.epoch = top_epoch if run.epoch is None else max(run.epoch, top_epoch)
    for name, values in columns.items():
        if name not in AXIS_KEYS and _column_for(run, name, fmt) is not None:
            run.metrics[name].extend(steps, times, values)


def _add_rows(run: RunState, points, fmt: str, ts: float) -> None:
    columns: dict[str, tuple[list, list, list] | None] = {}  # name -> steps, times, values (None: skipped)
    for point in points:
        run.points_total += 1
        epoch = point.get("epoch")
        if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) and (run.epoch is None or epoch > run.epoch):
            run.epoch = whole(float(epoch))  # as every path keeps it: a float64, whole ones as ints
        step = point.get("step", epoch)
        step = run.points_total - 1 if not isinstance(step, (int, float)) else step
        when = point.get("time")
        when = ts if not isinstance(when, (int, float)) else when
        for name, value in point.items():
            if name in AXIS_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            column = columns.get(name, ())
            if column == ():
                column = columns[name] = _column_for(run, name, fmt)
            if column is not None:
                column[0].append(step)
                column[1].append(when)
                column[2].append(value)
    for name, column in columns.items():
        if column is not None:
            run.metrics[name].extend(*column)  # one numpy append a metric a batch


def _reported_gpu_mem(run: RunState, points, ts: float) -> None:
    """The run's own `gpu_mem` (bytes) stands for its GPU memory while NVML has no per-process
    figure for it; NVML's figure, when there is one, wins."""
    if run.gpu_mem_source == "nvml":
        return
    for part in points.parts if type(points) is Points else (points,):
        if type(part) is Block:
            _reported_gpu_mem_block(run, part, ts)
        else:
            _reported_gpu_mem_dicts(run, part, ts)


def _reported_gpu_mem_block(run: RunState, block: Block, ts: float) -> None:
    values = block.column(GPU_MEM_KEY)
    if values is None:
        return
    kept = (values >= 0) & (values < math.inf)
    if not kept.any():
        return
    times = block.column("time")
    values = values[kept]
    times = [ts] * len(values) if times is None else times[kept]  # a list: Series.extend takes sequences
    run.gpu_mem, run.gpu_mem_source = float(values[-1]), "run"
    run.gpu_mem_peak = max(run.gpu_mem_peak, float(values.max()))
    run.gpu_mem_history.extend(times, times, values)


def _reported_gpu_mem_dicts(run: RunState, points, ts: float) -> None:
    for point in points:
        value = point.get(GPU_MEM_KEY)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            continue
        when = point.get("time")
        when = when if isinstance(when, (int, float)) and not isinstance(when, bool) else ts
        run.gpu_mem, run.gpu_mem_source = float(value), "run"
        run.gpu_mem_peak = max(run.gpu_mem_peak, run.gpu_mem)
        run.gpu_mem_history.append(when, when, run.gpu_mem)


def _column_for(run: RunState, name: str, fmt: str) -> tuple[list, list, list] | None:
    """The lists a batch's values of `name` gather in (None: this source's values of it are not
    kept). A log line repeats what a structured source writes, with its own name and steps (the
    demo prints `Train Loss` by epoch beside metrics.jsonl's train_loss_epoch): the structured
    series wins, and replaces a log one that came first."""
    formats = run.metric_formats
    fed_by = formats.get(name)
    if fed_by is None:
        twins = _twins(run, name)
        if fmt == "log" and any(formats[t] != "log" for t in twins):
            return None
        for twin in twins if fmt != "log" else ():
            if formats[twin] == "log":
                del run.metrics[twin], formats[twin]
    elif fmt == "log" and fed_by != "log":
        return None
    if fed_by is None or (fed_by == "log" and fmt != "log"):
        run.metrics[name] = new_series()  # first source, or a structured one replacing log lines
        run.metric_formats[name] = fmt
    return [], [], []


_SPELLING = re.compile(r"[\s/.-]+")


def _same_metric(name: str) -> str:
    """A metric's name without its spelling: `Train Loss`, `train/loss`, `train_loss_epoch` and
    `train_loss_step` (Lightning's on_epoch / on_step copies) are all train_loss."""
    key = _SPELLING.sub("_", name.strip().lower())
    return key.removesuffix("_epoch").removesuffix("_step")


def _twins(run: RunState, name: str) -> list[str]:
    """The run's other series holding the same metric under another spelling."""
    key = _same_metric(name)
    return [n for n in run.metric_formats if n != name and _same_metric(n) == key]


def eta_seconds(run: RunState, now: float) -> float | None:
    """Seconds left: by epochs when the run reports epochs, else by its finest progress unit."""
    for unit in ("epoch", "step", "batch"):
        p = run.progress.get(unit)
        if not p or not p.get("total"):
            continue
        if p.get("eta") is not None and unit == "batch" and "epochs" not in p:
            return p["eta"]
        started = run.record.get("started")
        done = p["n"] / p["total"]
        if started and done > 0:
            elapsed = max(0.0, run.progress_ts - started)
            return max(0.0, elapsed / done - elapsed - (now - run.progress_ts))
    return None


def loss_name(run: RunState) -> str | None:
    """The series to show as 'loss': train loss if present, else the first loss-like name."""
    for name in ("loss", "train_loss", "train/loss", "Train Loss"):
        if name in run.metrics:
            return name
    for name in run.metrics:
        if "loss" in name.lower() and not math.isnan(run.metrics[name].last or 0.0):
            return name
    return None
