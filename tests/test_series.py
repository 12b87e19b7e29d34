"""Series: a whole run's history in bounded memory (multi-resolution buckets with exact first,
last and best), extremes kept by every fold and downsample, TensorBoard's EMA at full resolution."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from urbanrun.engine.core.series import EMA_WEIGHTS, Series, downsample, ema, robust_range


def test_ten_million_points_keep_the_whole_history_first_step_and_extremes():
    s = Series()
    chunk = 250_000
    for start in range(0, 10_000_000, chunk):
        steps = np.arange(start, start + chunk, dtype=float)
        values = 1.0 / (1.0 + steps / 1e4)
        if start == 5_000_000:
            values[17] = 99.0  # one spike mid-run
        if start == 9_750_000:
            values[-3] = -7.0  # and a dip at the very end
        s.extend(steps, steps * 0.01, values)
    assert s.count == 10_000_000
    x, y = s.arrays()
    assert x[0] == 0.0 and y[0] == 1.0  # the first step, exactly
    assert x[-1] == 9_999_999.0  # the last step
    assert 99.0 in y and -7.0 in y  # both extremes survived every fold
    assert y[x == 5_000_017.0].tolist() == [99.0]  # at their own steps
    assert np.all(np.diff(x) > 0)
    assert len(x) <= s.cap
    assert s.best == -7.0 and s.best_step == 9_999_997.0 and s.worst == 99.0
    assert s.first_step == 0.0 and s.last_step == 9_999_999.0
    assert s.nbytes < 1_000_000
    # the plot spans the run: a 500-point view still starts at step 0 and ends at the last step
    vx, vy = s.view(500)
    assert vx[0] == 0.0 and vx[-1] == 9_999_999.0 and 99.0 in vy and -7.0 in vy


def test_one_by_one_appends_match_bulk_appends():
    rng = np.random.default_rng(3)
    values = rng.normal(size=50_000)
    values[[5, 777, 40_000]] = [np.nan, np.inf, -np.inf]
    one, bulk, whole = Series(cap=2048), Series(cap=2048), Series(cap=2048)
    for i, v in enumerate(values):
        one.append(float(i), float(i), float(v))
    for part in np.array_split(np.arange(50_000), 7):  # each part many folds at once (and runs of them in one go)
        bulk.extend(part, part, values[part])
    whole.extend(np.arange(50_000), np.arange(50_000), values)
    for other in (bulk, whole):
        for a, b in zip(one.arrays(), other.arrays()):
            np.testing.assert_array_equal(a, b)
        for weight in EMA_WEIGHTS + (0.5,):  # the buckets' own EMA and their means, bit for bit
            for a, b in zip(one.smoothed(weight, "time"), other.smoothed(weight, "time")):
                np.testing.assert_array_equal(a, b)
        assert (one.count, one.best, one.best_step, one.worst) == (other.count, other.best, other.best_step,
                                                                   other.worst)
    finite = values[np.isfinite(values)]
    assert one.best == finite.min() and one.worst == finite.max()


def test_ten_runs_of_a_million_points_fit_in_100_mb():
    total = 0
    for r in range(10):
        s = Series()
        steps = np.arange(1_000_000, dtype=float)
        s.extend(steps, steps, np.sin(steps / 1000 + r))
        total += s.nbytes
    assert total <= 100e6
    assert total <= 10e6  # in fact about 0.5 MB a series


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                                   st.floats(-1e3, 1e3)), max_size=3000), max_size=8),
       st.sampled_from([64, 256, 4096]))
def test_any_values_keep_count_first_last_and_extremes(batches, cap):
    s = Series(cap=cap)
    seen = []
    for batch in batches:
        steps = np.arange(len(seen), len(seen) + len(batch), dtype=float)
        if len(batch) % 2:
            s.extend(steps, steps, batch)
        else:
            for step, v in zip(steps, batch):
                s.append(step, step, v)
        seen += batch
    x, y = s.arrays()
    assert s.count == len(seen) and len(x) <= s.cap + 4
    if not seen:
        assert len(x) == 0 and s.best is None and s.at(0) is None
        return
    assert x[0] == 0 and x[-1] == len(seen) - 1 and np.all(np.diff(x) > 0)
    assert s.last == seen[-1] or (math.isnan(s.last) and math.isnan(seen[-1]))
    finite = [v for v in seen if math.isfinite(v)]
    if finite:
        assert s.best == min(finite) and s.worst == max(finite)
        assert min(finite) in y and max(finite) in y
    smooth_x, smooth_y = s.smoothed(0.6)
    assert len(smooth_x) == len(smooth_y) and smooth_x[-1] == len(seen) - 1
    assert s.at(len(seen) / 2) is not None


def test_ema_does_not_depend_on_the_view_and_follows_full_resolution():
    s = Series(cap=1024)  # small: most points are folded into buckets
    steps = np.arange(100_000, dtype=float)
    values = 1.0 / (1.0 + steps / 5000) + 0.05 * np.sin(steps)
    s.extend(steps, steps, values)
    exact = ema(values, 0.99)
    x, smooth = s.smoothed(0.99)
    at = x.astype(int)
    # each bucket carries its own points' EMA: the same curve as the full-resolution EMA
    np.testing.assert_allclose(smooth, exact[at], rtol=1e-9)
    np.testing.assert_allclose(smooth[-100:], exact[-100:], rtol=1e-12)  # the raw tail: point by point
    # the chart only decimates the smoothed curve; narrow or wide, the values are the same curve's
    for width in (60, 250):
        vx, vy = downsample(x, smooth, width * 2)
        np.testing.assert_array_equal(vy, smooth[np.searchsorted(x, vx)])


def test_at_reads_exact_recent_values_and_bucket_summaries():
    s = Series(cap=256)
    s.extend(np.arange(10_000.0), np.arange(10_000.0), np.arange(10_000.0) * 2)
    recent = s.at(9_990.0)
    assert recent == {"x": 9_990.0, "value": 19_980.0, "exact": True}
    old = s.at(10.0)
    assert not old["exact"] and old["x"] <= 10 <= old["x_end"] and old["min"] <= 20 <= old["max"]


def test_downsample_keeps_extremes_first_points_and_bounds():
    x = np.arange(1_000_003, dtype=float)  # not a multiple of the bucket count
    y = np.sin(x / 5000)
    y[777_777] = -50
    y[1] = 60
    dx, dy = downsample(x, y, 2000)
    assert len(dx) <= 2000 and dy.min() == -50 and dy.max() == 60 and np.all(np.diff(dx) > 0)
    assert dx[0] == 0 and dx[-1] == 1_000_002


def test_ema_is_tensorboards_debiased_ema():
    values = np.array([1.0, 2.0, float("nan"), 3.0])
    w = 0.6
    out = ema(values, w)
    last, n, expected = 0.0, 0, []
    for v in values:
        if math.isfinite(v):
            last = last * w + (1 - w) * v
            n += 1
            expected.append(last / (1 - w ** n))
        else:
            expected.append(v)
    assert out[0] == 1.0  # debiased: the first point is itself
    np.testing.assert_allclose(out, expected)
    assert list(ema(values[:2], 0)) == [1.0, 2.0]


def test_robust_range_ignores_an_outlier():
    values = np.concatenate([np.linspace(0.1, 1.0, 500), [1e6]])
    lo, hi = robust_range(values)
    assert hi < 2 and lo < 0.2
