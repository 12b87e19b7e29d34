"""A metric's points over a whole run, in bounded memory whatever the run's length, and the views
a chart needs: downsampled to N points, TensorBoard's debiased EMA, a y range that ignores outliers.

Multi-resolution storage: the newest points are kept exactly (a raw tail); older points are
folded into buckets of `width` consecutive points, each keeping its first, last, minimum and
maximum point (with their steps and times) and the sum and count of its finite values. When the
buckets fill their cap, neighbours merge pairwise and the width doubles. So a run of any length
plots from its first step to its last, every spike survives (each bucket's extremes), and memory
stays at about 0.5 MB a series. The first point, the last and the best are also kept exactly.

Points are appended one by one (`append`) or in bulk from numpy arrays (`extend`).
"""

from __future__ import annotations

import functools
import math

import numpy as np

DEFAULT_CAP = 16_384  # points a series may hand to a chart: half raw tail, half bucket extremes

# bucket columns: global index of its first point, point count, finite count, sum of finite values,
# then (index, step, time, value) of its first, last, minimum and maximum points
I0, N, NFIN, SUM = 0, 1, 2, 3
FIRST, LAST, LO, HI = 4, 8, 12, 16  # each starts a group of 4: index, step, time, value
# the smoothing weights a chart offers; for each, a bucket keeps its points' own EMA contribution
# sum((1-w) * w**(n-1-k) * v_k), so the EMA across buckets is exact, not an estimate from the mean
EMA_WEIGHTS = (0.3, 0.6, 0.8, 0.9, 0.95, 0.99)
EMA_FIRST = 20
EMA_COL = {w: EMA_FIRST + i for i, w in enumerate(EMA_WEIGHTS)}
COLS = EMA_FIRST + len(EMA_WEIGHTS)


def _summarise(x: np.ndarray, t: np.ndarray, v: np.ndarray, start: int) -> np.ndarray:
    """Bucket rows for the points in 2-D arrays (one row a bucket, all rows of equal length);
    `start` is the global index of the first point."""
    rows, width = v.shape
    out = np.empty((rows, COLS))
    base = start + np.arange(rows) * width
    finite = np.isfinite(v)
    lo = np.argmin(np.where(finite, v, np.inf), axis=1)
    hi = np.argmax(np.where(finite, v, -np.inf), axis=1)
    r = np.arange(rows)
    out[:, I0] = base
    out[:, N] = width
    out[:, NFIN] = finite.sum(axis=1)
    out[:, SUM] = np.where(finite, v, 0.0).sum(axis=1)
    for col, pos in ((FIRST, np.zeros(rows, dtype=np.int64)), (LAST, np.full(rows, width - 1)), (LO, lo), (HI, hi)):
        out[:, col] = base + pos
        out[:, col + 1] = x[r, pos]
        out[:, col + 2] = t[r, pos]
        out[:, col + 3] = v[r, pos]
    if finite.all():  # the usual case: every row weighs its columns alike, one matrix product
        out[:, EMA_FIRST:EMA_FIRST + len(EMA_WEIGHTS)] = v @ _ema_factors(width)
        return out
    later = out[:, NFIN][:, None] - np.cumsum(finite, axis=1)  # finite points after each point
    clean = np.where(finite, v, 0.0)
    for w, col in EMA_COL.items():
        out[:, col] = ((1 - w) * np.power(w, later) * clean).sum(axis=1)
    return out


@functools.lru_cache(maxsize=32)
def _ema_factors(width: int) -> np.ndarray:
    """(width, len(EMA_WEIGHTS)): what each of `width` finite points adds to its bucket's EMA
    contribution, (1-w) * w**(points after it), for each weight."""
    weights = np.array(EMA_WEIGHTS)
    factors = (1 - weights) * np.power(weights, np.arange(width - 1, -1, -1, dtype=np.float64)[:, None])
    factors.flags.writeable = False
    return factors


def _combine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows of `a` merged with the rows of `b` that directly follow them."""
    out = a.copy()
    out[:, N] += b[:, N]
    out[:, NFIN] += b[:, NFIN]
    out[:, SUM] += b[:, SUM]
    out[:, LAST:LAST + 4] = b[:, LAST:LAST + 4]
    a_lo = np.where(a[:, NFIN] > 0, a[:, LO + 3], np.inf)
    b_lo = np.where(b[:, NFIN] > 0, b[:, LO + 3], np.inf)
    out[:, LO:LO + 4] = np.where((b_lo < a_lo)[:, None], b[:, LO:LO + 4], a[:, LO:LO + 4])
    a_hi = np.where(a[:, NFIN] > 0, a[:, HI + 3], -np.inf)
    b_hi = np.where(b[:, NFIN] > 0, b[:, HI + 3], -np.inf)
    out[:, HI:HI + 4] = np.where((b_hi > a_hi)[:, None], b[:, HI:HI + 4], a[:, HI:HI + 4])
    for w, col in EMA_COL.items():
        out[:, col] = a[:, col] * np.power(w, b[:, NFIN]) + b[:, col]
    return out


class Series:
    __slots__ = ("cap", "raw_cap", "bucket_cap", "width", "_raw", "_n_raw", "_buckets", "_n_buckets", "count",
                 "best", "best_step", "worst", "last", "first_step", "first_value", "last_step", "_cache", "_pending", "_stored")

    def __init__(self, cap: int = DEFAULT_CAP):
        self.cap = max(64, cap)
        self.raw_cap = self.cap // 2  # newest points, exact
        self.bucket_cap = self.cap // 8  # each bucket hands up to 4 points to a chart
        self.width = 1  # points a (full) bucket summarises; doubles when the buckets merge
        self._raw = np.empty((3, min(64, self.raw_cap)))  # step, time, value rows; grows up to raw_cap columns
        self._n_raw = 0
        self._buckets = np.empty((0, COLS))
        self._n_buckets = 0
        self.count = 0  # points ever appended
        self._stored = 0  # of which moved into the raw tail (the rest wait in _pending)
        self.best: float | None = None  # the minimum finite value seen, and its step
        self.best_step: float | None = None
        self.worst: float | None = None  # the maximum finite value seen
        self.last: float | None = None
        self.first_step: float | None = None
        self.first_value: float | None = None
        self.last_step: float | None = None
        self._cache: dict = {}
        self._pending: list[tuple[float, float, float]] = []  # appended one by one, not yet in _raw

    # -- appending ---------------------------------------------------------------------------------
    def append(self, step: float, time: float, value: float) -> None:
        self._pending.append((step, time, value))  # a list append: ~10x cheaper than a numpy write
        self.count += 1
        if self.first_step is None:
            self.first_step, self.first_value = step, value
        self.last, self.last_step = value, step
        if math.isfinite(value):
            if self.best is None or value < self.best:
                self.best, self.best_step = value, step
            if self.worst is None or value > self.worst:
                self.worst = value
        if len(self._pending) >= 1024:
            self._flush()
        elif self._cache:
            self._cache.clear()

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = np.array(self._pending, dtype=np.float64), []
            self._store(pending[:, 0], pending[:, 1], pending[:, 2])

    def extend(self, steps, times, values) -> None:
        """Many points at once (numpy arrays or sequences of equal length)."""
        steps, times, values = (np.asarray(a, dtype=np.float64).ravel() for a in (steps, times, values))
        n = len(values)
        if not len(steps) == len(times) == n:
            raise ValueError("steps, times and values must have the same length")
        if n == 0:
            return
        self._flush()
        if self.first_step is None:
            self.first_step, self.first_value = float(steps[0]), float(values[0])
        self.last, self.last_step = float(values[-1]), float(steps[-1])
        finite = np.isfinite(values)
        all_finite = finite.all()  # the usual batch: its extremes without masked copies
        if all_finite or finite.any():
            masked = values if all_finite else np.where(finite, values, np.inf)
            i = int(np.argmin(masked))
            if self.best is None or masked[i] < self.best:
                self.best, self.best_step = float(masked[i]), float(steps[i])
            top = float(np.max(values if all_finite else np.where(finite, values, -np.inf)))
            if self.worst is None or top > self.worst:
                self.worst = top
        self._store(steps, times, values)
        self.count += n

    def _store(self, steps: np.ndarray, times: np.ndarray, values: np.ndarray) -> None:
        """Points into the raw tail (folding its older half whenever it is full); stats already done."""
        n = len(values)
        if self._n_raw + n > self.raw_cap + self.raw_cap // 2:  # two folds or more ahead
            self._store_bulk(steps, times, values)
            return
        done = 0
        while done < n:
            if self._n_raw == self._raw.shape[1]:
                self._make_room()
            take = min(n - done, self._raw.shape[1] - self._n_raw)
            end = self._n_raw + take
            self._raw[0, self._n_raw:end] = steps[done:done + take]
            self._raw[1, self._n_raw:end] = times[done:done + take]
            self._raw[2, self._n_raw:end] = values[done:done + take]
            self._n_raw, done = end, done + take
            self._stored += take
        self._cache.clear()

    def _store_bulk(self, steps: np.ndarray, times: np.ndarray, values: np.ndarray) -> None:
        """What _store makes of many points (the same buckets, the same raw tail), the points to
        fold taken straight from the input, and a run of folds that fill whole buckets of one
        width without a merge summarised at once (a 4 MiB read of metrics: ~8 folds a series)."""
        q = np.empty((3, self._n_raw + len(values)))
        q[:, :self._n_raw] = self._raw[:, :self._n_raw]
        q[0, self._n_raw:], q[1, self._n_raw:], q[2, self._n_raw:] = steps, times, values
        half = self.raw_cap // 2
        folds = -(-(q.shape[1] - self.raw_cap) // half)  # each frees half the tail, until the rest fits
        start = self._stored - self._n_raw  # global index of q's first point
        i = 0
        while i < folds:
            a, w = i * half, self.width
            per = half // w if half % w == 0 else 0  # buckets one fold fills, when it fills whole ones
            whole = per >= 2 and (not self._n_buckets or self._buckets[self._n_buckets - 1, N] == w)
            g = min(folds - i, (self.bucket_cap - 2 - self._n_buckets) // per) if whole else 0  # before a merge
            if g >= 2 and np.isfinite(q[2, a:a + g * half]).all():  # (as _summarise reduces each fold's rows)
                b = a + g * half
                self._add_buckets(_summarise(q[0, a:b].reshape(-1, w), q[1, a:b].reshape(-1, w),
                                             q[2, a:b].reshape(-1, w), start + a))
                i += g
            else:
                self._fold_points(q[0, a:a + half], q[1, a:a + half], q[2, a:a + half], start + a)
                i += 1
        kept = q.shape[1] - folds * half
        if self._raw.shape[1] < self.raw_cap:
            self._raw = np.empty((3, self.raw_cap))
        self._raw[:, :kept] = q[:, folds * half:]
        self._n_raw = kept
        self._stored += len(values)
        self._cache.clear()

    def _make_room(self) -> None:
        """Grow the raw tail up to its cap; at the cap, fold its older half into buckets."""
        size = self._raw.shape[1]
        if size < self.raw_cap:
            grown = np.empty((3, min(self.raw_cap, size * 2)))
            grown[:, :size] = self._raw
            self._raw = grown
            return
        k = self.raw_cap // 2
        self._fold_points(self._raw[0, :k], self._raw[1, :k], self._raw[2, :k], self._stored - self._n_raw)
        self._raw[:, :self._n_raw - k] = self._raw[:, k:self._n_raw]
        self._n_raw -= k

    def _fold_points(self, x: np.ndarray, t: np.ndarray, v: np.ndarray, start: int) -> None:
        """The oldest points (step, time and value arrays; `start` is the first's global index)
        into buckets: a partial last bucket topped up, then whole ones, the rest a new partial one."""
        k = len(v)
        while self._n_buckets + k // self.width + 2 > self.bucket_cap:
            if self._n_buckets >= 2:
                self._merge_pairs()  # doubles the width too
            else:
                self.width *= 2
        rows = []
        done = 0
        if self._n_buckets and self._buckets[self._n_buckets - 1, N] < self.width:  # top up a partial bucket
            room = int(self.width - self._buckets[self._n_buckets - 1, N])
            part = min(room, k)
            top = _summarise(x[None, :part], t[None, :part], v[None, :part], start)
            self._buckets[self._n_buckets - 1] = _combine(self._buckets[self._n_buckets - 1:self._n_buckets], top)[0]
            done = part
        full = (k - done) // self.width * self.width
        if full:
            w = self.width
            rows.append(_summarise(x[done:done + full].reshape(-1, w), t[done:done + full].reshape(-1, w),
                                   v[done:done + full].reshape(-1, w), start + done))
            done += full
        if done < k:  # a partial bucket, topped up by the next fold
            rows.append(_summarise(x[None, done:k], t[None, done:k], v[None, done:k], start + done))
        for block in rows:
            self._add_buckets(block)

    def _add_buckets(self, block: np.ndarray) -> None:
        if self._n_buckets + len(block) > len(self._buckets):
            grown = np.empty((min(self.bucket_cap, max(64, 2 * (self._n_buckets + len(block)))), COLS))
            grown[:self._n_buckets] = self._buckets[:self._n_buckets]
            self._buckets = grown
        self._buckets[self._n_buckets:self._n_buckets + len(block)] = block
        self._n_buckets += len(block)

    def _merge_pairs(self) -> None:
        n = self._n_buckets
        pairs = n // 2
        b = self._buckets
        merged = _combine(b[0:2 * pairs:2], b[1:2 * pairs:2])
        if n % 2:  # an odd last bucket stays as it is
            merged = np.vstack([merged, b[n - 1:n]])
        b[:len(merged)] = merged
        self._n_buckets = len(merged)
        self.width *= 2

    # -- reading -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Kept entries (buckets and raw points); 0 only when nothing was appended."""
        return self._n_buckets + self._n_raw + len(self._pending)

    @property
    def nbytes(self) -> int:
        """Memory held by the kept points (the raw tail's and the buckets' arrays)."""
        return self._raw.nbytes + self._buckets.nbytes + len(self._pending) * 80

    def _points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every kept point in order: each bucket's first, minimum, maximum and last, then the raw tail."""
        self._flush()
        cached = self._cache.get("points")
        if cached is None:
            b = self._buckets[:self._n_buckets]
            groups = (FIRST, LO, HI, LAST)
            order = np.argsort(np.stack([b[:, g] for g in groups], axis=1), axis=1, kind="stable")
            index, xs, ts, vs = (np.take_along_axis(np.stack([b[:, g + k] for g in groups], axis=1), order, 1)
                                 for k in range(4))
            keep = np.ones(index.shape, dtype=bool)
            keep[:, 1:] = np.diff(index, axis=1) != 0  # one point where first/min/max/last coincide
            xs, ts, vs = xs[keep], ts[keep], vs[keep]
            n = self._n_raw
            cached = (np.concatenate([xs, self._raw[0, :n]]), np.concatenate([ts, self._raw[1, :n]]),
                      np.concatenate([vs, self._raw[2, :n]]))
            self._cache["points"] = cached
        return cached

    @property
    def steps(self) -> np.ndarray:
        return self._points()[0]

    @property
    def times(self) -> np.ndarray:
        return self._points()[1]

    @property
    def values(self) -> np.ndarray:
        return self._points()[2]

    def arrays(self, axis: str = "step") -> tuple[np.ndarray, np.ndarray]:
        """The kept points (read-only): x by step or wall time, and the values."""
        steps, times, values = self._points()
        return (times if axis == "time" else steps), values

    def view(self, max_points: int = 2000, axis: str = "step") -> tuple[np.ndarray, np.ndarray]:
        x, y = self.arrays(axis)
        return downsample(x, y, max_points)

    def smoothed(self, weight: float, axis: str = "step") -> tuple[np.ndarray, np.ndarray]:
        """TensorBoard's debiased EMA over every point ever appended, whatever the chart's width:
        raw points one by one, and each bucket as the EMA of its own points (exact for the
        weights in EMA_WEIGHTS; other weights take the bucket's mean for each of its points).
        One smoothed point a bucket (at its last point) and one a raw point."""
        if weight <= 0:
            return self.arrays(axis)
        self._flush()
        key = ("ema", weight, axis)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        b = self._buckets[:self._n_buckets]
        n = self._n_raw
        col = 1 if axis == "step" else 2
        fin = b[:, NFIN]
        decay = np.power(weight, fin)
        if weight in EMA_COL:
            add = b[:, EMA_COL[weight]]
        else:
            add = (1 - decay) * np.divide(b[:, SUM], fin, out=np.zeros(len(b)), where=fin > 0)
        raw = self._raw[2, :n]
        finite = np.isfinite(raw)
        decays = np.concatenate([decay, np.full(n, weight)])
        adds = np.concatenate([add, (1 - weight) * np.where(finite, raw, 0.0)])
        counts = np.concatenate([fin, finite.astype(np.float64)])
        passed = np.concatenate([np.full(len(b), np.nan), raw])  # shown where nothing finite is averaged
        cached = (np.concatenate([b[:, LAST + col], self._raw[col - 1, :n]]),
                  _ema_loop(decays, adds, counts, passed, weight))
        self._cache[key] = cached
        return cached

    def at(self, x: float, axis: str = "step") -> dict | None:
        """The point nearest to x: exact for a raw point; for a bucket, its mean and range."""
        self._flush()
        if self.count == 0:
            return None
        b = self._buckets[:self._n_buckets]
        col = 1 if axis == "step" else 2
        raw_x = self._raw[col - 1, :self._n_raw]
        if self._n_raw and (not len(b) or x >= raw_x[0] or x > b[-1, LAST + col]):
            i = int(np.argmin(np.abs(raw_x - x)))
            return {"x": float(raw_x[i]), "value": float(self._raw[2, i]), "exact": True}
        ends = b[:, LAST + col]
        i = min(int(np.searchsorted(ends, x)), len(b) - 1)
        row = b[i]
        mean = row[SUM] / row[NFIN] if row[NFIN] else math.nan
        return {"x": float(row[FIRST + col]), "x_end": float(row[LAST + col]), "value": float(mean),
                "min": float(row[LO + 3]), "max": float(row[HI + 3]), "points": int(row[N]), "exact": False}


def downsample(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most max_points points, in order: the first and the last, and the minimum and maximum
    of each of (max_points - 2) / 2 equal buckets (so spikes and the start both survive)."""
    n = len(y)
    if n <= max_points:
        return np.array(x, dtype=np.float64), np.array(y, dtype=np.float64)
    buckets = max(1, (max_points - 2) // 2)
    size = -(-n // buckets)
    padded = np.full(buckets * size, np.nan)
    padded[:n] = y
    grid = padded.reshape(buckets, size)
    finite = np.isfinite(grid)
    lo = np.argmin(np.where(finite, grid, np.inf), axis=1)
    hi = np.argmax(np.where(finite, grid, -np.inf), axis=1)
    base = np.arange(buckets) * size
    idx = np.concatenate([[0, n - 1], base + lo, base + hi])
    idx = np.unique(idx[idx < n])
    return np.asarray(x)[idx], np.asarray(y)[idx]


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average; non-finite values pass through."""
    values = np.asarray(values, dtype=np.float64)
    if weight <= 0 or len(values) == 0:
        return values.copy()
    finite = np.isfinite(values)
    return _ema_loop(np.full(len(values), weight), (1 - weight) * np.where(finite, values, 0.0),
                     finite.astype(np.float64), values, weight)


def _ema_loop(decays: np.ndarray, adds: np.ndarray, counts: np.ndarray, passed: np.ndarray,
              weight: float) -> np.ndarray:
    """The EMA state through entries that each stand for `counts` points: last = last * decay + add,
    debiased by the points seen so far; an entry without finite points shows `passed`."""
    out = passed.astype(np.float64).copy()
    last, seen = 0.0, 0.0
    for i, (d, a, c) in enumerate(zip(decays.tolist(), adds.tolist(), counts.tolist())):
        if c > 0:
            last = last * d + a
            seen += c
            out[i] = last / (1 - weight ** seen)
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
