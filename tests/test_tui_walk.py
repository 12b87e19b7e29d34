"""Round 4 of using the TUI as a person would (80x24, 100x30, 160x45): what was found cut, stuck,
invisible or said too often, each with the test that failed before its fix."""

from __future__ import annotations

import json

from hypothesis import given, settings, strategies as st
from rich.cells import cell_len

from urbanrun.engine.core.config import load_config
from urbanrun.engine.session.loop import Engine
from urbanrun.tui.app import make_app
from urbanrun.tui.log_status import LogStatus, fit_status

from test_tui import wait_until

TEXTS = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120)


@settings(max_examples=300, deadline=None)
@given(note=st.none() | TEXTS, progress=st.none() | st.tuples(TEXTS, TEXTS),
       following=st.none() | st.booleans(), width=st.integers(0, 200))
def test_the_log_status_line_fits_its_row_and_always_says_whether_it_follows(note, progress, following, width):
    line = fit_status(note, progress, following, width)
    assert "\n" not in line
    if width:
        assert cell_len(line) <= width, (line, width)
    if following is not None and width >= len("paused (f)"):
        assert ("following" if following else "paused (f") in line, (line, width)


def test_the_log_status_line_shortens_in_order():
    progress = ("▸ Epoch 16/30 6/6 · 3.7 it/s", "▸ Epoch 16/30 6/6")
    note = "match 1/10 for 'Train Loss' (n/N)"
    assert fit_status(note, progress, False, 200) == f"{note}  {progress[0]}  paused (f to follow)"
    assert fit_status(note, progress, False, 75) == f"{note}  {progress[0]}  paused (f)"
    assert fit_status(note, progress, False, 64) == f"{note}  {progress[1]}  paused (f)"
    assert fit_status(note, progress, False, 50) == f"{note}  paused (f)"
    assert fit_status(note, progress, False, 30) == "match 1/10 for 'T…  paused (f)"
    assert fit_status("✖ launch failed:\nno such recipe", None, True, 80) == "✖ launch failed: no such recipe  following"


async def test_the_log_status_line_is_whole_at_160x45_with_a_search_and_a_live_run(workspace):
    """At 160x45 the line under the log was cut at the pane's edge: 'match 1/10 for 'Train Loss'
    (n/N)  ▸ Epoch 16/30 6/6 · 3.7 it/s  paused (f to' — the one part saying the log no longer
    follows was the part lost."""
    with open(workspace / "config.toml", "a") as fh:  # no early stop: the run is live while the line is read
        fh.write('[recipes.cones.params.patience]\ntype = "int"\ndefault = 10\n')
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        run = engine.launch("cones", values={"epochs": 100000, "cones": 8, "patience": 100000})
        try:
            await wait_until(pilot, lambda: (app.state.runs.get(run.id) is not None
                                             and "Train Loss" in "".join(app.state.runs[run.id].log)
                                             and app.state.runs[run.id].progress.get("batch")),
                             shown=lambda: list(app.state.runs.get(run.id).log) if run.id in app.state.runs else None)
            await pilot.press("slash", *"Train Loss", "enter")
            status = app.query_one(LogStatus)
            await wait_until(pilot, lambda: "match 1/" in str(status.render()) and "paused" in str(status.render()),
                             shown=lambda: (str(status.render()), app.state.runs[run.id].progress,
                                            app.state.runs[run.id].record.get("status")))
            assert app.state.runs[run.id].status == "running" and app.state.runs[run.id].progress.get("batch")
            line = str(status.render())
            assert cell_len(line) <= status.content_size.width, (line, status.content_size.width)
            assert line.endswith("paused (f)") or line.endswith("paused (f to follow)"), line
        finally:
            engine.kill(run.id, force=True)
    engine.close()


async def test_a_live_runs_unreadable_log_is_said_while_it_lasts_and_no_longer(workspace):
    """A live run whose output.log became a folder is `log_unreadable` (running-sick); once the log
    is a file again the diagnosis went on being shown: the stored list kept it, and the views fell
    back to the stored list when the fresh one was empty."""
    from urbanrun.tui.diagnoses_pane import run_diagnoses
    from urbanrun.tui.runs_table import _why

    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(100, 30)) as pilot:
        run = engine.launch("long_sleep")
        try:
            log = workspace / "runs" / run.id / "output.log"
            await wait_until(pilot, lambda: run.id in app.state.runs and app.state.runs[run.id].log_lines_total)
            kept = log.read_bytes()
            log.unlink()
            log.mkdir()

            def said() -> list:  # what the runs table and the diagnoses pane show of it
                return [d["kind"] for d in run_diagnoses(app.state.runs[run.id])]

            await wait_until(pilot, lambda: said() == ["log_unreadable"], shown=said)
            assert "its output log" in _why(app.state.runs[run.id]).plain
            log.rmdir()
            log.write_bytes(kept)
            await wait_until(pilot, lambda: said() == [], shown=said)
            assert _why(app.state.runs[run.id]).plain == ""
            stored = engine.store.load(run.id)
            assert stored.diagnoses == [] and not stored.diagnosis, (stored.diagnoses, stored.diagnosis)
            assert engine.summary(run.id)["verdict"] == "running-healthy"
        finally:
            engine.kill(run.id, force=True)
    engine.close()


@settings(max_examples=300, deadline=None)
@given(earliest=st.floats(-1000, 0), width=st.integers(0, 400))
def test_the_gpu_time_axis_has_round_clock_ticks(earliest, width):
    from urbanrun.tui.gpu_pane import time_ticks

    ticks, labels = time_ticks(earliest, width)
    assert ticks == sorted(ticks) and ticks[-1] == 0 and labels[-1] == "now"
    assert all(t >= earliest - 1e-9 for t in ticks) and 1 <= len(ticks) <= max(2, min(8, width // 9))
    assert all("." not in label for label in labels)  # was: -1.3333 (minutes)
    seconds = [round(t * 60, 6) for t in ticks]
    assert all(s == int(s) for s in seconds)  # whole seconds


async def test_the_gpu_charts_time_axis_says_minutes_and_seconds_not_fractions(workspace):
    from urbanrun.engine.session.replay import ReplaySource
    from conftest import ROOT

    app = make_app(ReplaySource(ROOT / "tests/fixtures/sessions/cones_gpu.jsonl", fast=True),
                   scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app._panes_mounted)
        await pilot.press("g")
        chart = app.query_one("#gpu-util")
        await wait_until(pilot, lambda: "now" in chart.plt.build(), shown=lambda: chart.plt.build())
        axis = [line for line in chart.plt.uncolorize(chart.plt.build()).splitlines() if "now" in line][0]
        assert "." not in axis and "-" in axis, axis


async def test_k_and_space_act_on_what_the_shown_tab_shows_or_say_so(workspace):
    """On the GPU and Diagnoses tabs, k (stop) and space (mark) acted on the runs table's selection,
    which those tabs do not show: a run nobody was looking at was asked to be stopped."""
    from urbanrun.engine.gpu.recorded import RecordedGpuSource
    from urbanrun.tui.dialogs import ConfirmKill
    from urbanrun.tui.runs_table import RunsTable
    from conftest import ROOT

    engine = Engine(load_config(workspace / "config.toml"),
                    gpu_source=RecordedGpuSource(ROOT / "tests/fixtures/gpus/rtx3090_1gpu.jsonl"))
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    toasts = []
    app.notify = lambda text, **kw: toasts.append(text)
    async with app.run_test(size=(100, 30)) as pilot:
        failed = engine.launch("exit_after", values={"code": 3, "seconds": 0.1})
        await wait_until(pilot, lambda: failed.id in app.state.runs and app.state.runs[failed.id].diagnoses)
        live = engine.launch("long_sleep")
        try:
            table = app.query_one(RunsTable)
            table.wanted = live.id  # selected when its row appears
            await wait_until(pilot, lambda: table.selected == live.id and app._panes_mounted
                             and app.state.runs[live.id].status == "running")
            await pilot.press("g")
            await wait_until(pilot, lambda: app.query_one("#gpu-view").selected_process() is not None)
            await pilot.press("k")  # the recording's processes are another host's: no run of ours
            await wait_until(pilot, lambda: any("nothing to stop" in t for t in toasts), shown=lambda: toasts)
            assert "is not one of urbanrun's runs" in toasts[-1]
            await pilot.press("space")
            await wait_until(pilot, lambda: any("space (mark) acts on the runs tab" in t for t in toasts),
                             shown=lambda: toasts)
            assert not table.marked
            await pilot.press("d")  # the Diagnoses tab shows the failed run: k is about that one
            await wait_until(pilot, lambda: app.query_one("#diagnoses").selected == failed.id)
            await pilot.press("k")
            await wait_until(pilot, lambda: any(f"{failed.id} already ended" in t for t in toasts),
                             shown=lambda: toasts)
            await pilot.pause(0.3)
            assert not isinstance(app.screen, ConfirmKill)
            assert app.state.runs[live.id].status == "running" and not app.state.runs[live.id].record.get(
                "kill_requested")
            await pilot.press("r", "k")  # on the runs tab: the selected run, asked about
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmKill))
            assert live.id in str(app.screen.query_one("Label").render())
        finally:
            engine.kill(live.id, force=True)
    engine.close()


async def test_the_recorded_gpus_foreign_pids_are_said_in_the_gpu_view_not_toasted_at_every_start(workspace):
    """With the recorded NVML fixture every start toasted a warning about pids on no local process:
    nothing the user can act on. It is an info notice, said in the GPU view beside those processes."""
    from urbanrun.engine.gpu.recorded import RecordedGpuSource
    from conftest import ROOT

    for _ in range(2):  # two starts: no toast either time
        engine = Engine(load_config(workspace / "config.toml"),
                        gpu_source=RecordedGpuSource(ROOT / "tests/fixtures/gpus/a100_8gpu.jsonl"))
        app = make_app(engine, scratchpad_dir=workspace / "pad")
        toasts = []
        app.notify = lambda text, **kw: toasts.append((kw.get("severity"), text))
        async with app.run_test(size=(160, 45)) as pilot:
            await wait_until(pilot, lambda: any(p.get("foreign") for p in app.state.gpu_processes) and app._panes_mounted)
            (notice,) = [n for n in app.state.notices if "exist on no local process" in n.text]
            assert notice.level == "info"
            await pilot.press("g")
            status = app.query_one("#gpu-status")
            await wait_until(pilot, lambda: "not on this host" in str(status.render()), shown=lambda: str(status.render()))
            assert not [t for t in toasts if "NVML" in t[1]], toasts
        engine.close()


async def test_the_queue_memory_field_takes_text_only_while_queue_is_ticked(workspace):
    """Walking the launch form with Tab, 'xy' landed in the queue's GB field while queue was not
    ticked, and Enter launched as if nothing had been typed."""
    from textual.widgets import Checkbox, Input

    from urbanrun.tui.launch_form import LaunchForm

    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LaunchForm))
        form = app.screen
        box, memory = form.query_one("#queue", Checkbox), form.query_one("#queue-mem", Input)
        assert not box.value and memory.disabled and not memory.focusable
        box.value = True
        await wait_until(pilot, lambda: not memory.disabled)
        memory.focus()
        await pilot.press("x", "y")
        await wait_until(pilot, lambda: memory.value == "xy")
        await pilot.press("enter")  # ticked, the field is read: refused with its sentence
        await pilot.pause(0.3)
        assert app.screen is form and not engine.state.runs
    engine.close()


async def test_a_finished_runs_curve_shows_once_its_files_are_read_not_a_plot_period_later(workspace, monkeypatch):
    """Selecting (or marking) a run from history drew the plot before its files were read: the plot
    showed the other runs only (or 'no metrics yet') until the next plot period, though its points
    came with the next poll."""
    import urbanrun.tui.app as app_module
    from urbanrun.tui.loss_pane import LossPane
    from urbanrun.tui.runs_table import RunsTable
    from conftest import cli

    run_id = json.loads(cli("launch", "cones", "--set", "epochs=1", "--set", "cones=8", "--json", cwd=workspace,
                            check=True).stdout)["id"]
    cli("wait", run_id, cwd=workspace, timeout=300, check=True)
    monkeypatch.setattr(app_module, "PLOT_SECONDS", 3600.0)  # only news redraws the plot: the period never comes
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(100, 30)) as pilot:
        loss = app.query_one(LossPane)
        await wait_until(pilot, lambda: app.query_one(RunsTable).selected == run_id
                         and app.state.runs[run_id].metrics)  # read once selected
        await wait_until(pilot, lambda: len(loss._xs) > 0 and run_id not in loss.without_points,
                         shown=lambda: (loss.empty_reason, loss.without_points))
    engine.close()


async def test_scrolling_the_log_up_says_paused_at_once(workspace, monkeypatch):
    """Scrolling the log up pauses following; the line under it said 'following' until the next
    frame redrew it (FRAME_SECONDS), and 'paused' as long after f."""
    import urbanrun.tui.app as app_module
    from urbanrun.tui.log_pane import LogPane

    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(100, 30)) as pilot:
        run = engine.launch("exit_after", values={"code": 0, "seconds": 0.1})
        log, status = app.query_one(LogPane), app.query_one(LogStatus)
        await wait_until(pilot, lambda: run.id in app.state.runs and app.state.runs[run.id].status == "exited"
                         and log.texts and "following" in str(status.render()))
        monkeypatch.setattr(app_module, "FRAME_SECONDS", 3600.0)  # no frame redraws the line from here on
        log.focus()
        await pilot.press("home")  # (↑ moves the runs table from anywhere on the runs view)
        await wait_until(pilot, lambda: not log.following)
        await pilot.pause()
        assert str(status.render()).endswith("paused (f to follow)"), str(status.render())
        await pilot.press("f")
        await wait_until(pilot, lambda: log.following)
        await pilot.pause()
        assert str(status.render()).endswith("following"), str(status.render())
    engine.close()
