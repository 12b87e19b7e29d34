"""The GPU view: at least 10 minutes of history per GPU (the whole session kept, downsampled),
each GPU process's CPU % and RSS beside its GPU memory (measured with psutil on a real busy
process), and the process table sortable."""

from __future__ import annotations

import subprocess
import sys
import time

from urbanrun.engine.core.events import GpuSample
from urbanrun.engine.core.state import State
from urbanrun.engine.gpu.sources import annotate
from urbanrun.engine.session.replay import ReplaySource
from urbanrun.tui.app import make_app
from urbanrun.tui.gpu_pane import GpuView, history_points

from conftest import ROOT
from test_tui import wait_until


def test_half_an_hour_of_samples_keeps_ten_minutes_and_the_whole_session():
    state = State()
    start = 1_700_000_000.0
    for i in range(1800 * 4):  # 30 minutes at 4 samples a second
        util = 100 if i == 10 else 50  # one spike in the session's first seconds
        state.apply(GpuSample(ts=start + i / 4, gpus=({"index": 0, "util_gpu": util, "mem_used": 2**30,
                                                       "mem_total": 2**32},)))
    util = state.gpu_series[0]["util"]
    assert util.count == 7200 and util.first_step == start and util.worst == 100
    assert 100.0 in util.values  # older samples are folded, their peaks kept
    xs, ys = history_points(util, util.last_step, 1.0, 400)
    assert xs[0] <= -9.99 and xs[-1] == 0.0 and len(xs) <= 400  # ten minutes, downsampled
    mx, my = history_points(state.gpu_series[0]["mem"], util.last_step, 100 / 2**32, 400)
    assert set(my) == {25.0}


def test_gpu_processes_get_cpu_and_rss_from_a_real_process():
    busy = subprocess.Popen([sys.executable, "-c", "x = bytearray(64 << 20)\nwhile True: pass"])
    try:
        cache, seen = {}, set()
        time.sleep(0.5)
        annotate([{"pid": busy.pid, "gpu": 0}], {}, seen, cache)
        time.sleep(1.0)
        (proc,), foreign = annotate([{"pid": busy.pid, "gpu": 0}], {busy.pid: "run-1"}, seen, cache)
        assert not foreign and proc["run_id"] == "run-1" and proc["name"].startswith("python")
        assert proc["cpu"] > 1  # a spinning loop (on shared cores), measured between the two samples, not 0.0
        assert proc["rss"] > 64 << 20
    finally:
        busy.kill()
        busy.wait()
    (gone,), _ = annotate([{"pid": busy.pid, "gpu": 0}], {}, seen, cache)
    assert "cpu" not in gone and not gone.get("foreign")  # ended, not taken for another host's


def test_sorting_puts_unknown_values_last():
    view = GpuView()
    procs = [{"pid": 1, "used_mem": 5, "cpu": 10.0, "rss": 3}, {"pid": 2, "used_mem": None, "cpu": 90.0, "rss": 1},
             {"pid": 3, "used_mem": 9, "cpu": None, "rss": 2}]
    assert [p["pid"] for p in view.sorted_processes(procs)] == [3, 1, 2]
    view.sort_by = "CPU %"
    assert [p["pid"] for p in view.sorted_processes(procs)] == [2, 1, 3]
    view.sort_by, view.sort_reverse = "PID", False
    assert [p["pid"] for p in view.sorted_processes(procs)] == [1, 2, 3]


async def test_the_gpu_tab_shows_cpu_and_rss_columns_and_sorts(workspace):
    app = make_app(ReplaySource(ROOT / "tests/fixtures/sessions/cones_gpu.jsonl", fast=True),
                   scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_until(pilot, lambda: app._panes_mounted)  # the GPU tab's pane comes after the first frame
        await pilot.press("g")
        await pilot.pause(0.5)
        view = app.query_one(GpuView)
        table = view.query_one("DataTable")
        labels = [str(c.label) for c in table.columns.values()]
        status = view.query_one("#gpu-status")
        assert labels[4:7] == ["GPU memory", "CPU %", "RSS"] and "processes by GPU memory ▼" in str(status.render())
        await pilot.press("p")  # the view redraws between polls: after the one in flight, on a busy machine
        await wait_until(pilot, lambda: "processes by CPU % ▼" in str(status.render()))
        assert view.sort_by == "CPU %"
        assert app.is_running
