"""Loss curves (plotext through textual-plotext): the selected run and the marked ones overlaid,
a metric picker, TensorBoard's debiased EMA, log-y, x by step or wall time, and a y range that
ignores outliers. Always plotted from downsampled series, never from all raw points."""

from __future__ import annotations

import math

import numpy as np
from textual_plotext import PlotextPlot

from urbanrun.engine.core.series import ema, robust_range
from urbanrun.engine.core.state import State, loss_name

COLOURS = ["cyan", "orange", "green", "magenta", "yellow", "blue", "red", "white"]
SMOOTHING_STEPS = [0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99]


class LossPane(PlotextPlot):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.metric: str | None = None  # None: the run's loss
        self.smoothing = 0.6
        self.log_y = False
        self.axis = "step"
        self.empty_reason = "no run selected"

    def cycle_metric(self, state: State, run_id: str | None, step: int = 1) -> str | None:
        run = state.runs.get(run_id or "")
        if not run or not run.metrics:
            return None
        names = sorted(run.metrics, key=lambda n: ("loss" not in n.lower(), n))
        current = self.metric or loss_name(run)
        i = names.index(current) if current in names else -1
        self.metric = names[(i + step) % len(names)]
        return self.metric

    def change_smoothing(self, direction: int) -> float:
        i = min(range(len(SMOOTHING_STEPS)), key=lambda k: abs(SMOOTHING_STEPS[k] - self.smoothing))
        self.smoothing = SMOOTHING_STEPS[max(0, min(len(SMOOTHING_STEPS) - 1, i + direction))]
        return self.smoothing

    def draw(self, state: State, run_ids: list[str]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        width = max(20, self.size.width)
        shown, y_all = [], []
        name = self.metric
        for k, run_id in enumerate(run_ids):
            run = state.runs.get(run_id)
            if run is None:
                continue
            metric = name or loss_name(run)
            series = run.metrics.get(metric) if metric else None
            if series is None or len(series) == 0:
                continue
            x, y = series.view(max_points=width * 2, axis=self.axis)
            if self.axis == "time":
                start = run.record.get("started") or (x[0] if len(x) else 0)
                x = (x - start) / 60.0
            if self.log_y:
                keep = y > 0
                x, y = x[keep], y[keep]
            if len(y) == 0:
                continue
            colour = COLOURS[k % len(COLOURS)]
            label = run_id.split("-", 2)[-1] if len(run_ids) > 1 else metric
            if self.smoothing > 0 and len(y) > 2:
                plt.plot(x.tolist(), y.tolist(), color="gray", marker="braille")
                plt.plot(x.tolist(), ema(y, self.smoothing).tolist(), color=colour, marker="braille", label=label)
            else:
                plt.plot(x.tolist(), y.tolist(), color=colour, marker="braille", label=label)
            shown.append(metric)
            y_all.append(y)
        title = name or (shown[0] if shown else "loss")
        plt.title(f"{title} · smoothing {self.smoothing:g}{' · log y' if self.log_y else ''} · x: {self.axis}")
        plt.xlabel("minutes" if self.axis == "time" else "step")
        if not shown:
            self.empty_reason = ("no metrics yet: the run writes none so far (metrics.jsonl, CSV, TensorBoard, "
                                 "W&B or loss lines in its log)" if run_ids else "no run selected")
            plt.title(self.empty_reason)
        else:
            if self.log_y:
                plt.yscale("log")
            span = robust_range(np.concatenate(y_all))
            if span and not self.log_y and all(math.isfinite(v) for v in span):
                plt.ylim(*span)
        self.refresh()
