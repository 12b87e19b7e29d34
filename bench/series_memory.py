"""Memory: 10 runs x 1M points into the series store (RSS growth), and the cost of a display
view: downsampling 1M points to 2k vs plotting the 1M raw points with plotext."""

import os
import sys
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from urbanrun.engine.core.series import Series  # noqa: E402

RUNS, POINTS = 10, int(os.environ.get("POINTS", 1_000_000))


def main():
    proc = psutil.Process()
    before = proc.memory_info().rss
    runs = []
    t = time.perf_counter()
    chunk = 10_000  # the reducer appends a metric's points of one poll in bulk
    for r in range(RUNS):
        s = Series()
        for start in range(0, POINTS, chunk):
            i = np.arange(start, min(POINTS, start + chunk), dtype=float)
            s.extend(i, i * 0.1, 1.0 / (1 + i) + (r % 3) * 0.01)
        runs.append(s)
    fill = time.perf_counter() - t
    growth = (proc.memory_info().rss - before) / 1e6
    print(f"{RUNS} runs x {POINTS:,} points: RSS growth {growth:.1f} MB (goal <= 100 MB); "
          f"kept {len(runs[0].steps):,} points a series ({runs[0].nbytes / 1e6:.2f} MB), steps "
          f"{runs[0].steps[0]:.0f}..{runs[0].steps[-1]:.0f}; {RUNS * POINTS / fill / 1e6:.2f} M appends/s")

    x = np.arange(POINTS, dtype=float)
    y = np.sin(x / 1e4) + np.random.default_rng(0).normal(0, 0.1, POINTS)
    from urbanrun.engine.core.series import downsample

    reps = 20
    t = time.perf_counter()
    for _ in range(reps):
        downsample(x, y, 2000)
    ours = (time.perf_counter() - t) / reps

    import plotext as plt

    t = time.perf_counter()
    plt.clear_figure()
    plt.plotsize(120, 30)
    plt.plot(x.tolist(), y.tolist())
    plt.build()
    raw = time.perf_counter() - t
    print(f"downsample 1M -> 2k: {ours * 1000:.1f} ms (goal <= 20 ms); plotext on the 1M raw points: "
          f"{raw * 1000:.0f} ms; ratio {raw / ours:.0f}x")


if __name__ == "__main__":
    main()
