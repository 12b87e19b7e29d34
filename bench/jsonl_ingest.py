"""1,000,000-line JSONL metrics file: urbanrun's ingest (follower + parser) vs a json.loads loop,
pandas.read_json(lines=True), and a bare orjson.loads loop (the parse limit)."""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from urbanrun.engine.metrics.sources import MetricSource  # noqa: E402

LINES = int(os.environ.get("LINES", 1_000_000))


def timed(fn):
    t = time.perf_counter()
    n = fn()
    return time.perf_counter() - t, n


def main():
    folder = Path(tempfile.mkdtemp())
    path = folder / "metrics.jsonl"
    with open(path, "w") as fh:
        for i in range(LINES):
            fh.write(json.dumps({"step": i, "epoch": i // 1000, "time": 1.7e9 + i * 0.01, "loss": 1 / (1 + i),
                                 "lr": 1e-3, "samples_per_s": 123.4}) + "\n")
    size = path.stat().st_size / 1e6

    def ours():
        source, n = MetricSource(path, "jsonl"), 0
        while True:
            points, _ = source.poll()
            if not points:
                return n
            n += len(points)

    def json_loop():
        with open(path) as fh:
            return sum(1 for line in fh if json.loads(line))

    def orjson_loop():
        with open(path, "rb") as fh:
            return sum(1 for line in fh if orjson.loads(line))

    def pandas_lines():
        import pandas as pd

        return len(pd.read_json(path, lines=True))

    results = {name: timed(fn) for name, fn in
               [("urbanrun", ours), ("json.loads loop", json_loop), ("orjson.loads loop", orjson_loop),
                ("pandas.read_json(lines=True)", pandas_lines)]}
    base = results["urbanrun"][0]
    print(f"{LINES:,} lines, {size:.0f} MB")
    for name, (seconds, n) in results.items():
        assert n == LINES, (name, n)
        print(f"  {name:<30} {seconds:7.3f} s  {LINES / seconds / 1e6:6.2f} M lines/s  urbanrun is {seconds / base:5.2f}x faster")
    print(f"goal: >= 5x the json loop ({results['json.loads loop'][0] / base:.2f}x); "
          f"within 1.5x of bare orjson ({base / results['orjson.loads loop'][0]:.2f}x its time)")


if __name__ == "__main__":
    main()
