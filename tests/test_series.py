"""Series: bounded memory, spikes survive decimation, downsampling, TensorBoard's EMA."""

from __future__ import annotations

import math

import numpy as np

from urbanrun.engine.core.series import Series, downsample, ema, robust_range


def test_bounded_memory_keeps_spikes_and_recent_points():
    s = Series(cap=10_000)
    for i in range(200_000):
        s.append(i, i * 0.1, 100.0 if i == 1234 else math.sin(i / 1000))
    assert len(s) <= 10_000 and s.count == 200_000
    x, y = s.arrays()
    assert 100.0 in y  # the spike survived every fold
    assert list(x[-100:]) == list(range(199_900, 200_000))  # recent points at full resolution
    assert np.all(np.diff(x) > 0)
    assert s.worst == 100.0 and s.best_step is not None and s.last_step == 199_999


def test_downsample_keeps_extremes_and_bounds():
    x = np.arange(1_000_000, dtype=float)
    y = np.sin(x / 5000)
    y[777_777] = -50
    dx, dy = downsample(x, y, 2000)
    assert len(dx) <= 2000 and dy.min() == -50 and np.all(np.diff(dx) > 0)


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
