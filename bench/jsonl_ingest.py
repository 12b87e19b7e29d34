"""`urbanrun metrics` on a 1,000,000-line JSONL metrics file with 0.1 % torn lines (a line cut
short, as a killed writer leaves it), end to end: read, parse, reduce into the series, summarise
(count, last, min with its step, max per metric). Baseline: a plain orjson loop over the lines
computing the same summary. Both run in this process, interleaved, median of REPEATS; the ratio
is urbanrun's time over the loop's (goal <= 0.6). The json.loads loop is shown for scale
(JSON_LOOP=0 leaves it out).
STAGES=1 then prints the CPU time of urbanrun's stages (read, parse, reduce; best of REPEATS,
no profiler to inflate Python's share); PROFILE=1 profiles one urbanrun pass, by function."""

import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from urbanrun.engine.cli.metrics import sources_for, summarise  # noqa: E402
from urbanrun.engine.core.state import RunState, add_points  # noqa: E402
from urbanrun.engine.metrics.sources import MetricSource, until_drained  # noqa: E402
from urbanrun.engine.runs.store import RunStore  # noqa: E402

LINES = int(os.environ.get("LINES", 1_000_000))
TORN = float(os.environ.get("TORN", 0.001))
REPEATS = int(os.environ.get("REPEATS", 3))
AXIS = {"step", "epoch", "time"}


def write(path: Path) -> int:
    rng = random.Random(0)
    torn = 0
    with open(path, "w") as fh:
        for i in range(LINES):
            line = json.dumps({"step": i, "epoch": i // 1000, "time": 1.7e9 + i * 0.01,
                               "loss": 1 / (1 + i) + rng.random() * 0.01, "lr": 1e-3, "samples_per_s": 123.4})
            if rng.random() < TORN:
                line, torn = line[: rng.randrange(1, len(line) - 1)], torn + 1
            fh.write(line + "\n")
    return torn


def loop_summary(path: Path, loads) -> dict:
    """The baseline: one parse per line, the summary kept in a dict."""
    stats: dict[str, list] = {}
    with open(path, "rb") as fh:
        for line in fh:
            try:
                obj = loads(line)
            except ValueError:
                continue
            step = obj.get("step")
            for name, value in obj.items():
                if name in AXIS or type(value) not in (int, float):
                    continue
                s = stats.get(name)
                if s is None:
                    stats[name] = [1, value, value, step, value]
                    continue
                s[0] += 1
                s[1] = value
                if value < s[2]:
                    s[2], s[3] = value, step
                if value > s[4]:
                    s[4] = value
    return {name: {"count": s[0], "last": s[1], "min": s[2], "min_step": s[3], "max": s[4]} for name, s in stats.items()}


def ours(path: Path, store: RunStore) -> dict:
    sources, _run_id = sources_for(str(path), store)
    (source,) = summarise(sources)["sources"]
    return {name: {k: m[k] for k in ("count", "last", "min", "min_step", "max")} for name, m in source["metrics"].items()}


def stages(path: Path) -> dict[str, float]:
    """CPU seconds of each stage of one pass: the follower's reads, the parse, the reduce."""
    source, run = MetricSource(path, "jsonl"), RunState(record={"id": "bench"})
    parse, blocks = source.parser.feed_blocks, source.follower.poll_blocks
    c = time.process_time()
    polls = list(until_drained(blocks, lambda: source.follower.position))
    read = time.process_time() - c
    points = [parse(poll) for poll in polls]
    parsed = time.process_time() - c - read
    for batch in points:
        add_points(run, batch, "jsonl")
    return {"read": read, "parse": parsed, "reduce": time.process_time() - c - read - parsed}


def main():
    folder = Path(tempfile.mkdtemp())
    path = folder / "metrics.jsonl"
    torn = write(path)
    store = RunStore(folder / "runs")
    jobs = {"urbanrun metrics": lambda: ours(path, store),
            "orjson loop + summary": lambda: loop_summary(path, orjson.loads)}
    if os.environ.get("JSON_LOOP", "1") != "0":  # for scale only (10x the others' time): JSON_LOOP=0 skips it
        jobs["json loop + summary"] = lambda: loop_summary(path, json.loads)
    times: dict[str, list[float]] = {name: [] for name in jobs}
    cpu: dict[str, list[float]] = {name: [] for name in jobs}  # less swayed by other processes than wall time
    results = {}
    for _ in range(REPEATS):  # interleaved, so a burst of load hits every contender alike
        for name, job in jobs.items():
            t, c = time.perf_counter(), time.process_time()
            results[name] = job()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    assert all(result == results["orjson loop + summary"] for result in results.values()), "the summaries differ"
    median = {name: statistics.median(ts) for name, ts in times.items()}
    load = os.getloadavg() if hasattr(os, "getloadavg") else ()  # wall times mean little on a busy machine
    print(f"{LINES:,} lines ({torn} torn), {path.stat().st_size / 1e6:.0f} MB; orjson {orjson.__version__}; "
          f"load average {' '.join(f'{x:.2f}' for x in load) or '?'}; median of {REPEATS}, "
          f"each run: {', '.join(f'{name} ' + '/'.join(f'{t:.2f}' for t in ts) for name, ts in times.items())}")
    for name, seconds in median.items():
        print(f"  {name:<24} {seconds:7.3f} s  {LINES / seconds / 1e6:6.2f} M lines/s")
    ratio = median["urbanrun metrics"] / median["orjson loop + summary"]
    print(f"urbanrun / orjson loop = {ratio:.2f} (goal <= 0.6)" + (
        f"; urbanrun / json loop = {median['urbanrun metrics'] / median['json loop + summary']:.2f}"
        if "json loop + summary" in median else ""))
    cpu_ratio = statistics.median(cpu["urbanrun metrics"]) / statistics.median(cpu["orjson loop + summary"])
    print(f"CPU time: urbanrun / orjson loop = {cpu_ratio:.2f} (medians of {REPEATS}; wall time is the goal's measure)")
    if os.environ.get("STAGES"):
        best: dict[str, float] = {}
        for _ in range(REPEATS):
            for stage, seconds in stages(path).items():
                best[stage] = min(best.get(stage, math.inf), seconds)
        loop = min(cpu["orjson loop + summary"])
        print("urbanrun's stages, CPU us a line (best of each): " + ", ".join(
            f"{stage} {seconds / LINES * 1e6:.3f} ({seconds / loop:.2f} of the loop's best)"
            for stage, seconds in best.items()))
    if os.environ.get("PROFILE"):
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(ours, path, store)
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
