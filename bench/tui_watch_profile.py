"""Where the TUI's CPU goes while it watches 4 live demo runs (issue #14's 'watching' figure).

The mounted app at its real size (160x45) watches 4 real demo trainers (CPU, tiny settings). For
WINDOW seconds, REPEATS times, every call of a few functions is timed by its own thread's CPU
clock, exclusive of the timed calls inside it (no profiler: a tracer would inflate Python's share
of a few-percent load many times over). Each bucket is printed as ms of CPU per window, beside the
process's whole CPU in the same window (the rest: the event loop, messages, timers, Rich), median
of the repeats. Compare buckets between two versions of the code, not with other machines.

    python bench/tui_watch_profile.py            # WINDOW=40 REPEATS=3 by default
"""

import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REPEATS = int(os.environ.get("REPEATS", 3))
WINDOW = float(os.environ.get("WINDOW", 40))
SIZE = (160, 45)

from textual._compositor import Compositor  # noqa: E402
from textual.app import App  # noqa: E402
from textual.screen import Screen  # noqa: E402
from textual.widget import Widget  # noqa: E402

from urbanrun.engine.core.config import load_config  # noqa: E402
from urbanrun.engine.session.loop import Engine  # noqa: E402
from urbanrun.tui import app as app_module  # noqa: E402
from urbanrun.tui.log_pane import LogPane  # noqa: E402
from urbanrun.tui.loss_pane import LossPane  # noqa: E402
from urbanrun.tui.runs_table import RunsTable  # noqa: E402

spent: dict[str, float] = defaultdict(float)  # bucket -> CPU seconds, exclusive of nested timed calls
calls: dict[str, int] = defaultdict(int)
local = threading.local()


PROFILE = os.environ.get("PROFILE")  # a bucket's name starts so: its calls also go through cProfile
profiler = None


def timed(owner, name: str, bucket) -> None:
    """Time every call of owner.name into `bucket` (a name, or a function of the call's self)."""
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        key = bucket(args[0]) if callable(bucket) else bucket
        if PROFILE and key.startswith(PROFILE) and threading.current_thread() is threading.main_thread() \
                and not getattr(local, "profiling", False):
            local.profiling = True
            try:
                return profiler.runcall(wrapper_inner, *args, **kwargs)
            finally:
                local.profiling = False
        return wrapper_inner(*args, **kwargs)

    def wrapper_inner(*args, **kwargs):
        key = bucket(args[0]) if callable(bucket) else bucket
        stack = getattr(local, "stack", None)
        if stack is None:
            stack = local.stack = []
        stack.append(0.0)  # the nested timed calls' CPU, taken out of this one
        t = time.thread_time()
        try:
            return real(*args, **kwargs)
        finally:
            total = time.thread_time() - t
            nested = stack.pop()
            spent[key] += total - nested
            calls[key] += 1
            if stack:
                stack[-1] += total

    setattr(owner, name, wrapper)


def instrument() -> None:
    timed(Engine, "poll", "engine poll (worker thread)")
    timed(app_module.UrbanrunApp, "_summary_of", "run summary (worker thread)")
    timed(app_module.UrbanrunApp, "_redraw", "app._redraw (widget updates)")
    timed(app_module.UrbanrunApp, "_notify_news", "app notifications")
    timed(LossPane, "draw", "loss pane: draw (plot calls)")
    timed(LossPane, "render", "loss pane: render (plotext build)")
    timed(RunsTable, "refresh_rows", "runs table: refresh_rows")
    timed(LogPane, "show", "log pane: show")
    # Widget.render_lines is where every widget's lines are made (subclasses call it through super)
    timed(Widget, "render_lines", lambda widget: f"render_lines: {type(widget).__name__}#{widget.id}")
    timed(Screen, "_refresh_layout", "screen: layout (reflow)")
    timed(Compositor, "render_update", "compositor: render_update")
    timed(Compositor, "update_widgets", "compositor: update_widgets")
    timed(App, "_display", "app._display (driver write)")


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    os.environ.setdefault("URBANRUN_CONE_CACHE", str(tmp / "cache"))
    os.chdir(tmp)
    global profiler
    if PROFILE:
        import cProfile
        profiler = cProfile.Profile()
    instrument()
    engine = Engine(load_config(ROOT / "config.toml"), tmp / "runs", record_session=False, autolog=None)
    app = app_module.make_app(engine, scratchpad_dir=tmp / "pad")
    values = {"epochs": 400, "cones": 8, "batch_size": 4, "device": "cpu"}
    me = psutil.Process()
    windows = []

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(3)
            ids = [engine.launch("cones", values=values).id for _ in range(4)]
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and not all(
                    engine.state.runs.get(i) and engine.state.runs[i].metrics for i in ids):
                await pilot.pause(1)
            await pilot.pause(3)
            for _ in range(REPEATS):
                spent.clear(), calls.clear()
                c0, t0 = me.cpu_times(), time.monotonic()
                await asyncio.sleep(WINDOW)
                c1, t1 = me.cpu_times(), time.monotonic()
                total = c1.user + c1.system - c0.user - c0.system
                windows.append((total, t1 - t0, dict(spent), dict(calls)))
            for run_id in ids:
                engine.kill(run_id, force=True)
            await pilot.press("q")

    asyncio.run(go())
    engine.close()
    scale = WINDOW  # ms per WINDOW seconds
    shares = [total / wall * 100 for total, wall, _, _ in windows]
    print(f"whole process: {statistics.median(shares):.2f} % of a core (windows: "
          f"{', '.join(f'{s:.2f}' for s in shares)}); load average {os.getloadavg()[0]:.1f}")
    buckets = sorted({b for _, _, s, _ in windows for b in s}, key=lambda b: -statistics.median(
        w[2].get(b, 0) for w in windows))
    print(f"{'bucket':44} {'ms/' + format(scale, 'g') + ' s':>10} {'calls':>6}")
    timed_total = []
    for total, wall, s, c in windows:
        timed_total.append(sum(s.values()) / wall * scale * 1000)
    for b in buckets:
        ms = statistics.median(w[2].get(b, 0) / w[1] * scale * 1000 for w in windows)
        n = statistics.median(w[3].get(b, 0) for w in windows)
        print(f"{b:44} {ms:10.1f} {n:6.0f}")
    rest = statistics.median(total / wall * scale * 1000 - tt for (total, wall, _, _), tt in zip(windows, timed_total))
    print(f"{'the rest (event loop, messages, timers, gc)':44} {rest:10.1f}")
    if PROFILE:
        import pstats

        stats = pstats.Stats(profiler).sort_stats("tottime")
        stats.print_stats(25)
        if os.environ.get("CALLERS"):
            stats.print_callers(os.environ["CALLERS"])


if __name__ == "__main__":
    main()
