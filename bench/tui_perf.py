"""TUI figures: time to first frame (vs a bare Textual app), RSS at idle and CPU while watching
4 runs, loss-pane frame cost with 1M points (vs plotext on the raw points), and headless replay
of a one-hour recording (goal <= 2 s)."""

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
FIRST_FRAME = """
import time, sys, asyncio
t0 = time.perf_counter()
sys.path.insert(0, %r)
%s
async def main():
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        print(time.perf_counter() - t0)
asyncio.run(main())
"""
OURS = ("from urbanrun.engine.core.config import load_config\nfrom urbanrun.engine.session.loop import Engine\nfrom urbanrun.tui.app import make_app\n"
        "app = make_app(Engine(load_config(%r), %r, record_session=False))")
BARE = "from textual.app import App\nfrom textual.widgets import Static\nclass A(App):\n" \
       "    def compose(self):\n        yield Static('hello')\napp = A()"


def first_frame(tmp: Path) -> None:
    ours = [float(subprocess.run([PY, "-c", FIRST_FRAME % (str(ROOT), OURS % (str(ROOT / "config.toml"), str(tmp)))],
                                 capture_output=True, text=True, cwd=tmp).stdout.split()[-1]) for _ in range(3)]
    bare = [float(subprocess.run([PY, "-c", FIRST_FRAME % (str(ROOT), BARE)], capture_output=True, text=True,
                                 cwd=tmp).stdout.split()[-1]) for _ in range(3)]
    print(f"time to first frame: urbanrun {min(ours):.2f} s (goal < 1 s); a bare Textual app {min(bare):.2f} s "
          f"(imports + first paint, interpreter start excluded)")


def watching(tmp: Path) -> None:
    import psutil

    sys.path.insert(0, str(ROOT))
    from urbanrun.engine.core.config import _build
    from urbanrun.engine.session.loop import Engine
    from urbanrun.tui.app import make_app

    text = '[recipes.sleep]\ncommand = ["{python}", "-c", "import time; time.sleep(120)"]\n'
    config = _build(tmp / "config.toml", text, __import__("tomllib").loads(text))
    engine = Engine(config, tmp / "runs4", record_session=False)
    app = make_app(engine, scratchpad_dir=tmp / "pad")
    me = psutil.Process()

    async def go():
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.pause(3)
            idle_rss = me.memory_info().rss
            for _ in range(4):
                engine.launch("sleep")
            await pilot.pause(3)
            cpu0, t0 = me.cpu_times(), time.monotonic()
            await pilot.pause(20)
            cpu1 = me.cpu_times()
            busy = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (time.monotonic() - t0)
            for run_id in list(app.state.runs):
                engine.kill(run_id, force=True)
            await pilot.pause(1)
            return idle_rss, busy

    idle_rss, busy = asyncio.run(go())
    engine.close()
    print(f"RSS at idle: {idle_rss / 2**20:.0f} MiB; CPU while watching 4 runs: {busy * 100:.1f}% of one core "
          f"(polling every 0.5 s, host sampling every 2 s, NVML when present)")


def loss_frame() -> None:
    import numpy as np
    import plotext as plt

    sys.path.insert(0, str(ROOT))
    from urbanrun.engine.core.series import Series
    from urbanrun.engine.core.state import RunState, State
    from urbanrun.tui.loss_pane import LossPane

    state = State()
    run = state.runs["r"] = RunState(record={"id": "r", "status": "running"})
    s = run.metrics["loss"] = Series(cap=2_000_000)
    for i in range(1_000_000):
        s.append(i, i, 1 / (1 + i * 1e-4) + (i % 97) * 1e-4)
    pane = LossPane()
    pane._size = None
    reps = 5
    t = time.perf_counter()
    for _ in range(reps):
        pane.draw(state, ["r"])
        pane.plt.build()
    ours = (time.perf_counter() - t) / reps
    x, y = np.frombuffer(s.steps), np.frombuffer(s.values)
    t = time.perf_counter()
    plt.clear_figure()
    plt.plotsize(100, 30)
    plt.plot(x.tolist(), y.tolist(), marker="braille")
    plt.build()
    raw = time.perf_counter() - t
    print(f"loss pane frame with 1M points: {ours * 1000:.0f} ms (downsample + EMA + plot); plotext on the raw 1M: "
          f"{raw * 1000:.0f} ms; {raw / ours:.0f}x")


def one_hour_replay(tmp: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from urbanrun.engine.core.events import GpuSample, GpuStatus, HostSample, LogLines, MetricPoints, RunChanged, encode

    t0, run = 1.8e9, "20261125-090000-cones-abcd"
    events = [RunChanged(ts=t0, run={"id": run, "recipe": "cones", "status": "running", "started": t0,
                                     "argv": ["python"], "cwd": "/"}),
              GpuStatus(ts=t0, status={"available": True, "driver": "550.90.07", "count": 1})]
    gpu = {"index": 0, "name": "NVIDIA A100", "mem_total": 80 * 2**30, "util_gpu": 90}
    for s in range(3600):
        ts = t0 + s
        events.append(GpuSample(ts=ts, gpus=({**gpu, "mem_used": 40 * 2**30},),
                                processes=({"gpu": 0, "pid": 1, "used_mem": 39 * 2**30, "run_id": run},)))
        events.append(MetricPoints(ts=ts, run_id=run, source="m", points=({"step": s, "loss": 1 / (1 + s)},)))
        events.append(LogLines(ts=ts, run_id=run, lines=(f"step {s} loss={1 / (1 + s):.5f}",)))
        if s % 2 == 0:
            events.append(HostSample(ts=ts, host={"cpu": [50.0, 50.0], "mem_used": 2**33, "mem_total": 2**34,
                                                  "runs": {run: {"cpu": 100.0, "rss": 2**31, "procs": 3}}}))
    events.append(RunChanged(ts=t0 + 3600, run={"id": run, "recipe": "cones", "status": "exited", "exit_code": 0,
                                                "started": t0, "ended": t0 + 3600, "argv": ["python"], "cwd": "/"}))
    path = tmp / "hour.jsonl"
    path.write_text("".join(encode(e) + "\n" for e in events))
    t = time.perf_counter()
    out = subprocess.run([PY, "-m", "urbanrun.engine.cli", "--replay", str(path), "--headless"], cwd=ROOT,
                         capture_output=True, text=True)
    took = time.perf_counter() - t
    print(f"headless replay of a one-hour recording ({len(events):,} events, {path.stat().st_size / 1e6:.1f} MB): "
          f"{took:.2f} s wall including start-up (goal <= 2 s); exit {out.returncode}")


if __name__ == "__main__":
    tmp = Path(tempfile.mkdtemp())
    os.environ.setdefault("URBANRUN_CONE_CACHE", str(tmp / "cache"))
    watching(tmp)  # first: the others leave big series in this process's memory
    first_frame(tmp)
    loss_frame()
    one_hour_replay(tmp)
