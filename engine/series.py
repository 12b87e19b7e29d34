"""A metric's points over a run, in bounded memory whatever the run's length.

Recent points stay at full resolution; when the series outgrows its cap, its older half is
folded into min/max pairs, so spikes survive decimation.
"""

from __future__ import annotations

import math


class Series:
    __slots__ = ("cap", "steps", "times", "values", "count", "best", "best_step", "last")

    def __init__(self, cap: int = 20_000):
        self.cap = cap
        self.steps: list[float] = []
        self.times: list[float] = []
        self.values: list[float] = []
        self.count = 0  # points ever appended (not only those kept)
        self.best: float | None = None  # minimum finite value seen
        self.best_step: float | None = None
        self.last: float | None = None

    def append(self, step: float, time: float, value: float) -> None:
        self.steps.append(step)
        self.times.append(time)
        self.values.append(value)
        self.count += 1
        self.last = value
        if math.isfinite(value) and (self.best is None or value < self.best):
            self.best, self.best_step = value, step
        if len(self.values) > self.cap:
            self._fold_older_half()

    def _fold_older_half(self) -> None:
        half = (len(self.values) // 2) // 4 * 4
        steps, times, values = [], [], []
        for i in range(0, half, 4):
            window = range(i, i + 4)
            finite = [j for j in window if not math.isnan(self.values[j])] or list(window)
            lo = min(finite, key=self.values.__getitem__)
            hi = max(finite, key=self.values.__getitem__)
            for j in sorted({lo, hi}):
                steps.append(self.steps[j])
                times.append(self.times[j])
                values.append(self.values[j])
        self.steps[:half] = steps
        self.times[:half] = times
        self.values[:half] = values

    def __len__(self) -> int:
        return len(self.values)
