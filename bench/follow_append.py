"""10 files growing at 10k lines/s each (a writer process), followed by urbanrun's metric
sources in this process: no point lost, and this process's CPU while it follows.
SECONDS (default 30) sets the length."""

import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from urbanrun.engine.metrics.sources import MetricSource  # noqa: E402

FILES, RATE = 10, 10_000
SECONDS = float(os.environ.get("SECONDS_", os.environ.get("BENCH_SECONDS", 30)))


def writer(folder: str, seconds: float, done):
    handles = [open(Path(folder) / f"m{i}.jsonl", "a") for i in range(FILES)]
    start, written = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * RATE)
        if due > written:
            for fh in handles:
                fh.write("".join(json.dumps({"step": s, "loss": 1 / (1 + s)}) + "\n" for s in range(written, due)))
                fh.flush()
            written = due
        time.sleep(0.005)
    done.value = written


def main():
    folder = tempfile.mkdtemp()
    for i in range(FILES):
        (Path(folder) / f"m{i}.jsonl").touch()
    done = mp.Value("i", -1)
    proc = mp.Process(target=writer, args=(folder, SECONDS, done))
    sources = [MetricSource(Path(folder) / f"m{i}.jsonl", "jsonl") for i in range(FILES)]
    counts, last = [0] * FILES, [-1] * FILES
    cpu0, t0 = time.process_time(), time.monotonic()
    proc.start()
    ok = True
    while True:
        for i, source in enumerate(sources):
            points, _ = source.poll()
            for p in points:
                ok &= p["step"] == last[i] + 1  # nothing lost, nothing repeated, in order
                last[i] = p["step"]
            counts[i] += len(points)
        if done.value >= 0 and all(c == done.value for c in counts):
            break
        time.sleep(0.25)  # the engine's poll interval
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    proc.join()
    total = sum(counts)
    print(f"{FILES} files x {RATE:,} lines/s for {SECONDS:.0f} s: {total:,} points followed, "
          f"{'none lost or repeated' if ok and total == FILES * done.value else 'LOST OR REPEATED POINTS'}")
    print(f"follower CPU: {cpu:.2f} s over {wall:.1f} s = {cpu / wall * 100:.1f}% of one core "
          f"({total / max(cpu, 1e-9) / 1e6:.2f} M points per CPU-second)")


if __name__ == "__main__":
    main()
