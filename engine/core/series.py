"""A metric's points over a run, in bounded memory whatever the run's length, and the views a
chart needs: downsampled to N points, TensorBoard's debiased EMA, a y range that ignores outliers.

Storage is three `array('d')` columns (24 bytes a point). When a series outgrows its cap, its
older half is folded into min/max pairs per bucket of 4 (so spikes survive); recent points stay
at full resolution.
"""

from __future__ import annotations

import math
from array import array

import numpy as np

DEFAULT_CAP = 50_000


class Series:
    __slots__ = ("cap", "steps", "times", "values", "count", "best", "best_step", "worst", "last",
                 "first_step", "last_step")

    def __init__(self, cap: int = DEFAULT_CAP):
        self.cap = cap
        self.steps = array("d")
        self.times = array("d")
        self.values = array("d")
        self.count = 0  # points ever appended, not only those kept
        self.best: float | None = None  # the minimum finite value seen, and its step
        self.best_step: float | None = None
        self.worst: float | None = None  # the maximum finite value seen
        self.last: float | None = None
        self.first_step: float | None = None
        self.last_step: float | None = None

    def append(self, step: float, time: float, value: float) -> None:
        self.steps.append(step)
        self.times.append(time)
        self.values.append(value)
        self.count += 1
        self.last = value
        self.last_step = step
        if self.first_step is None:
            self.first_step = step
        if value == value and value not in (math.inf, -math.inf):
            if self.best is None or value < self.best:
                self.best, self.best_step = value, step
            if self.worst is None or value > self.worst:
                self.worst = value
        if len(self.values) > self.cap:
            self._fold_older_half()

    def _fold_older_half(self) -> None:
        half = (len(self.values) // 2) // 4 * 4
        vals = np.frombuffer(self.values, dtype=np.float64, count=half).reshape(-1, 4)
        filled = np.where(np.isnan(vals), np.inf, vals)
        lo = np.argmin(filled, axis=1)
        hi = np.argmax(np.where(np.isnan(vals), -np.inf, vals), axis=1)
        rows = np.arange(vals.shape[0])
        first, second = np.minimum(lo, hi), np.maximum(lo, hi)
        idx = np.stack([rows * 4 + first, rows * 4 + second], axis=1).ravel()
        keep = np.ones(idx.shape[0], dtype=bool)
        keep[1::2] = first != second  # one point when min and max are the same point
        idx = idx[keep]
        for name in ("steps", "times", "values"):
            column = getattr(self, name)
            folded = np.frombuffer(column, dtype=np.float64, count=half)[idx]
            rest = array("d", column[half:])
            new = array("d", folded.tobytes())
            new.extend(rest)
            setattr(self, name, new)

    def __len__(self) -> int:
        return len(self.values)

    def arrays(self, axis: str = "step") -> tuple[np.ndarray, np.ndarray]:
        """Views (no copy) of the kept points: x by step or wall time, and the values."""
        x = self.times if axis == "time" else self.steps
        return np.frombuffer(x, dtype=np.float64), np.frombuffer(self.values, dtype=np.float64)

    def view(self, max_points: int = 2000, axis: str = "step") -> tuple[np.ndarray, np.ndarray]:
        x, y = self.arrays(axis)
        return downsample(x, y, max_points)


def downsample(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most max_points points: min and max of each of max_points/2 buckets, in x order."""
    n = len(y)
    if n <= max_points:
        return x.copy(), y.copy()
    buckets = max(1, max_points // 2)
    size = n // buckets
    usable = size * buckets
    yb = y[n - usable:].reshape(buckets, size)  # the newest points fill whole buckets
    base = (n - usable) + np.arange(buckets) * size
    lo = np.nanargmin(np.where(np.isnan(yb), np.inf, yb), axis=1)
    hi = np.nanargmax(np.where(np.isnan(yb), -np.inf, yb), axis=1)
    idx = np.sort(np.concatenate([base + lo, base + hi]))
    idx = np.unique(idx)
    return x[idx], y[idx]


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average; non-finite values pass through."""
    if weight <= 0 or len(values) == 0:
        return np.asarray(values, dtype=np.float64).copy()
    out = np.empty(len(values), dtype=np.float64)
    last, n = 0.0, 0
    for i, v in enumerate(values.tolist()):
        if math.isfinite(v):
            last = last * weight + (1 - weight) * v
            n += 1
            out[i] = last / (1 - weight ** n)
        else:
            out[i] = v
    return out


def robust_range(values: np.ndarray, lower: float = 2.0, upper: float = 98.0) -> tuple[float, float] | None:
    """A y range that ignores outliers (TensorBoard's 'ignore outliers in chart scaling')."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    if finite.size < 20:
        lo, hi = float(finite.min()), float(finite.max())
    else:
        lo, hi = (float(v) for v in np.percentile(finite, [lower, upper]))
    pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
    return lo - pad, hi + pad
