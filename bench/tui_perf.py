"""TUI figures, each beside a baseline from the same run, median of REPEATS:

- CPU of the urbanrun process at idle (no runs) vs a bare Textual app of the same size (goal
  <= 0.5 % of a core);
- CPU while watching 4 live demo runs (the real cone trainer, CPU, tiny settings; their own
  processes are not counted) vs the engine polled at the same pace without a UI (goal <= 2 %);
- time to the first frame (the first screen painted) vs a bare Textual app, wall and CPU (goal
  < 1 s; interpreter start excluded; both from compiled bytecode);
- the loss pane mounted in the app at its real size (160x45): one frame (draw + render) of a
  noisy 1M-point run vs a 2k-point run (goal <= 2x);
- headless replay of a one-hour recording vs reading and reducing it without a UI.

The machine may be shared: compare the ratios, which come from the same run."""

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable
REPEATS = int(os.environ.get("REPEATS", 3))
WINDOW = float(os.environ.get("WINDOW", 10))  # seconds of CPU per measurement
SIZE = (160, 45)
ME = psutil.Process()

from urbanrun.engine.core.config import load_config  # noqa: E402
from urbanrun.engine.core.events import MetricPoints, RunChanged  # noqa: E402
from urbanrun.engine.session.loop import Engine  # noqa: E402
from urbanrun.tui.app import POLL_SECONDS, make_app  # noqa: E402
from urbanrun.tui.loss_pane import LossPane  # noqa: E402
from urbanrun.tui.runs_table import RunsTable  # noqa: E402


def cpu_share(seconds: float) -> float:
    """This process's CPU over the next `seconds`, in % of one core (call from a thread)."""
    c0, t0 = ME.cpu_times(), time.monotonic()
    time.sleep(seconds)
    c1 = ME.cpu_times()
    return (c1.user + c1.system - c0.user - c0.system) / (time.monotonic() - t0) * 100


async def app_cpu(pilot) -> list[float]:
    shares = []
    for _ in range(REPEATS):
        shares.append(await asyncio.to_thread(cpu_share, WINDOW))
    return shares


def bare_idle_cpu() -> list[float]:
    from textual.app import App
    from textual.widgets import Static

    class Bare(App):
        def compose(self):
            yield Static("hello")

    async def go():
        async with Bare().run_test(size=SIZE) as pilot:
            await pilot.pause(2)
            return await app_cpu(pilot)

    return asyncio.run(go())


def ratio_line(name: str, ours: list[float], theirs: list[float], unit: str, goal: str, base: str) -> None:
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{name}: urbanrun {a:.2f}{unit} (runs: {', '.join(f'{v:.2f}' for v in ours)}); {base} {b:.2f}{unit}; "
          f"ratio {f'{a / b:.1f}' if b >= 0.05 else 'n/a (baseline ~0)'}; {goal}; load average {os.getloadavg()[0]:.1f}")


def idle_and_watching(tmp: Path) -> None:
    config = load_config(ROOT / "config.toml")
    engine = Engine(config, tmp / "runs", record_session=False, autolog=None)
    app = make_app(engine, scratchpad_dir=tmp / "pad")
    values = {"epochs": 400, "cones": 8, "batch_size": 4, "device": "cpu"}
    ids = []

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(3)
            idle = await app_cpu(pilot)
            for _ in range(4):
                ids.append(engine.launch("cones", values=values).id)
            deadline = time.monotonic() + 180  # every trainer past its imports and writing metrics
            while time.monotonic() < deadline and not all(
                    engine.state.runs.get(i) and engine.state.runs[i].metrics for i in ids):
                await pilot.pause(1)
            watching = await app_cpu(pilot)
            points = sum(r.points_total for r in engine.state.runs.values())
            await pilot.press("q")
            return idle, watching, points

    idle, watching, points = asyncio.run(go())
    print(f"(the 4 runs had written {points} metric points by the end of the measurement)")
    ratio_line("CPU at idle, no runs", idle, bare_idle_cpu(), "% of a core", "goal <= 0.5 %", "bare Textual app")

    stop = threading.Event()

    def headless():  # the baseline: the same engine work at the app's pace, without a UI
        while not stop.is_set():
            engine.poll()
            time.sleep(POLL_SECONDS)

    worker = threading.Thread(target=headless)
    worker.start()
    baseline = [cpu_share(WINDOW) for _ in range(REPEATS)]
    stop.set()
    worker.join()
    ratio_line("CPU watching 4 live demo runs", watching, baseline, "% of a core", "goal <= 2 %",
               "engine polled without a UI")
    for run_id in ids:
        engine.kill(run_id, force=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(engine.store.load(i).active for i in ids):
        engine.poll()
        time.sleep(0.2)
    engine.close()


# The first frame is the app's Ready event: its first screen laid out and painted. Wall and CPU
# seconds from the script's start (interpreter start excluded); CPU is what a loaded machine does
# not inflate. Both apps load compiled bytecode, as an installed wheel does: this environment sets
# PYTHONDONTWRITEBYTECODE, which made every run compile urbanrun's ~80 modules from source while
# textual's came from its installed .pyc files (one untimed run each writes the cache first).
FIRST_FRAME = """
import time, sys, asyncio
t0, c0 = time.perf_counter(), time.process_time()
sys.path.insert(0, %r)
%s
from textual import events
first, mounted, polled = [], [], []
def now():
    return time.perf_counter() - t0, time.process_time() - c0
def on_event(event, _real=app.on_event):
    if isinstance(event, events.Ready) and not first:
        first.append(now())
    return _real(event)
app.on_event = on_event
if hasattr(app, "_mount_later_panes"):  # urbanrun: the panes that come after the first frame, and its first poll
    _later, _show = app._mount_later_panes, app._show_events
    async def later():
        await _later()
        mounted.append(now())
    def show(events):
        _show(events)
        polled.append(now())
    app._mount_later_panes, app._show_events = later, show
async def main():
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        while hasattr(app, "_mount_later_panes") and not (mounted and polled):
            await pilot.pause(0.01)
        whole = max(mounted[0], polled[0]) if mounted else first[0]
        print(*first[0], *whole)
asyncio.run(main())
"""
OURS = ("from urbanrun.engine.core.config import load_config\nfrom urbanrun.engine.session.loop import Engine\n"
        "from urbanrun.tui.app import make_app\n"
        "app = make_app(Engine(load_config(%r), %r, record_session=False), scratchpad_dir=%r)")
BARE = "from textual.app import App\nfrom textual.widgets import Static\nclass A(App):\n" \
       "    def compose(self):\n        yield Static('hello')\napp = A()"


def first_frame(tmp: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")

    def once(code: str) -> tuple[float, float, float, float]:
        """Wall and CPU to the first frame, then to the whole screen (urbanrun: every pane mounted and
        the first poll drawn; a bare app: its first frame)."""
        out = subprocess.run([PY, "-c", FIRST_FRAME % (str(ROOT), code)], capture_output=True, text=True,
                             cwd=tmp, env=env, check=True).stdout.split()
        return tuple(float(v) for v in out[-4:])

    runs = tmp / "runs" if (tmp / "runs").is_dir() else tmp / "runs-ff"  # the watched demo runs, when there are
    ours_code = OURS % (str(ROOT / "config.toml"), str(runs), str(tmp / "pad"))
    once(ours_code), once(BARE)  # the bytecode cache
    ours, bare = [], []
    for _ in range(REPEATS):
        ours.append(once(ours_code))
        bare.append(once(BARE))
    for i, what, goal in ((0, "time to first frame, wall", "goal < 1 s"), (1, "time to first frame, CPU", ""),
                          (2, "time to the whole screen (every pane, first poll drawn), wall", ""),
                          (3, "time to the whole screen (every pane, first poll drawn), CPU", "")):
        ratio_line(what, [v[i] for v in ours], [v[i] for v in bare], " s", goal, "bare Textual app")
    print(f"(the runs folder held {sum(1 for p in runs.glob('*/run.toml'))} runs)")


def loss_frames(tmp: Path) -> None:
    """The loss pane in the mounted app at its real size: a noisy 1M-point run vs a 2k-point one."""
    engine = Engine(load_config(ROOT / "config.toml"), tmp / "runs-loss", record_session=False, gpu_source=None,
                    host=False, autolog=None)
    rng = np.random.default_rng(0)

    def run_with(run_id: str, n: int) -> None:
        steps = np.arange(n)
        loss = 2.0 / (1 + steps * 1e-4) + rng.normal(0, 0.05, n) + (rng.random(n) < 1e-4) * 5  # noise and spikes
        points = [{"step": int(s), "time": 1.8e9 + s * 0.01, "loss": float(v)} for s, v in zip(steps, loss)]
        with engine.state.guard:  # as a poll reduces: through the reducer, holding the guard
            engine.state.apply_all([RunChanged(ts=1.8e9, run={"id": run_id, "recipe": "cones", "status": "exited",
                                                              "started": 1.8e9, "ended": 1.8e9 + n * 0.01}),
                                    MetricPoints(ts=1.8e9, run_id=run_id, format="jsonl", points=tuple(points))])

    run_with("20261130-000000-cones-0001", 1_000_000)
    run_with("20261130-000000-cones-0002", 2_000)
    app = make_app(engine, scratchpad_dir=tmp / "pad")

    from textual.visual import Visual, visualize

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(1)
            pane, table = app.query_one(LossPane), app.query_one(RunsTable)
            print(f"loss pane mounted at {pane.size.width}x{pane.size.height} cells in a {SIZE[0]}x{SIZE[1]} app")
            frames = {}
            for run_id in sorted(engine.state.runs):
                table.move_cursor(row=list(table.rows).index(run_id))
                await pilot.pause(0.3)
                times = []
                for _ in range(max(REPEATS, 5)):
                    with engine.state.guard:
                        t = time.perf_counter()
                        pane.draw(engine.state, [run_id])
                        # plotext builds the frame, then its lines are made into what Textual draws
                        Visual.to_strips(pane, visualize(pane, pane.render()), pane.size.width, pane.size.height,
                                         pane.visual_style)
                        times.append((time.perf_counter() - t) * 1000)
                frames[engine.state.runs[run_id].metrics["loss"].count] = times
            return frames

    frames = asyncio.run(go())
    ratio_line("loss pane frame at 1M noisy points", frames[1_000_000], frames[2_000], " ms", "goal <= 2x",
               "the same pane at 2k points")
    engine.close()


def one_hour_replay(tmp: Path) -> None:
    from urbanrun.engine.core.events import GpuSample, GpuStatus, HostSample, LogLines, encode

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
    def child(argv: list[str]) -> tuple[float, float]:
        """Wall and CPU seconds of a child process (CPU: what a loaded machine does not inflate)."""
        before, t = os.times(), time.perf_counter()
        subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
        after = os.times()
        return time.perf_counter() - t, after.children_user + after.children_system - before.children_user - \
            before.children_system

    ours, reduce_only = [], []
    for _ in range(REPEATS):
        ours.append(child([PY, "-m", "urbanrun.engine.cli", "--replay", str(path), "--headless"]))
        reduce_only.append(child([PY, "-c", "from urbanrun.engine.core.state import State\n"
                                  "from urbanrun.engine.session.recorder import read_session\n"
                                  f"State().apply_all(read_session({str(path)!r}))"]))
    what = f"headless replay of one hour ({len(events):,} events, {path.stat().st_size / 1e6:.1f} MB, with start-up)"
    ratio_line(what + ", wall", [w for w, _ in ours], [w for w, _ in reduce_only], " s", "goal <= 2 s",
               "read + reduce without a UI")
    ratio_line(what + ", CPU", [c for _, c in ours], [c for _, c in reduce_only], " s", "", "read + reduce without a UI")


if __name__ == "__main__":
    tmp = Path(tempfile.mkdtemp())
    os.environ.setdefault("URBANRUN_CONE_CACHE", str(tmp / "cache"))
    os.chdir(tmp)
    only = sys.argv[1:] or ["watch", "first", "loss", "replay"]
    if "watch" in only:
        idle_and_watching(tmp)  # first: the others leave big series in this process's memory
    if "first" in only:
        first_frame(tmp)
    if "loss" in only:
        loss_frames(tmp)
    if "replay" in only:
        one_hour_replay(tmp)
