"""What the app redraws, and when (the TUI's CPU while it watches runs): a run's news (its status,
a diagnosis, a mark) is drawn at once; what moves by itself (numbers, log lines, curves) waits for
the frame tick and is then drawn right; a fixed-size bar never relayouts the screen.

The events go through the engine's real reducer, under its guard, as a poll's would; the tick is
moved by the module's FRAME_SECONDS, never by waiting."""

from __future__ import annotations

import time

from rich.text import Text

import urbanrun.tui.app as app_module
from urbanrun.engine.core.config import load_config
from urbanrun.engine.core.events import LogLines, MetricPoints, RunChanged
from urbanrun.engine.session.loop import Engine
from urbanrun.tui.app import make_app
from urbanrun.tui.log_pane import LogPane
from urbanrun.tui.quiet import QuietStatic
from urbanrun.tui.run_summary import RunSummary
from urbanrun.tui.runs_table import RunsTable

from test_tui import wait_until

RUN = "20261130-000000-cones-0001"


def _engine(workspace) -> Engine:
    return Engine(load_config(workspace / "config.toml"), workspace / "runs", record_session=False, gpu_source=None,
                  host=False, autolog=None)


def _reduce(engine: Engine, *events) -> None:
    with engine.state.guard:  # as a poll reduces: through the reducer, holding the guard
        engine.state.apply_all(list(events))


def _record(status: str, t0: float) -> dict:
    run = {"id": RUN, "recipe": "cones", "status": status, "started": t0}
    return run if status == "running" else {**run, "ended": t0 + 5, "exit_code": 1}


def _loss(t0: float, step: int, value: float) -> MetricPoints:
    return MetricPoints(ts=t0 + step, run_id=RUN, points=({"step": step, "time": t0 + step, "loss": value},))


async def _without_polls(pilot, app) -> None:
    """The app's own polls stopped, the one in flight let finish: a redraw while a poll holds the
    state waits for the poll's message, so a poll in flight (long on a busy machine) would put off
    the redraw a test then looks at. The test's events are reduced by hand, as a poll's are."""
    app._poll_timer.pause()
    await wait_until(pilot, lambda: not app._polling)


def _cells(table: RunsTable) -> dict[str, str]:
    return {key: str(table.get_cell(RUN, key)) for key in table.layout_keys}


async def test_news_at_once_numbers_and_log_on_the_tick(workspace, monkeypatch):
    engine = _engine(workspace)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    t0 = time.time() - 60
    async with app.run_test(size=(160, 45)) as pilot:
        await _without_polls(pilot, app)
        _reduce(engine, RunChanged(ts=t0, run=_record("running", t0)), _loss(t0, 1, 0.5))
        app.redraw()  # a key or a resize: everything now
        await pilot.pause(0.2)
        table, log = app.query_one(RunsTable), app.query_one(LogPane)
        assert _cells(table)["loss"] == "0.5" and "▶" in _cells(table)["status"]

        monkeypatch.setattr(app_module, "FRAME_SECONDS", 1e9)  # no tick comes
        _reduce(engine, _loss(t0, 2, 0.25), LogLines(ts=t0 + 2, run_id=RUN, lines=("epoch 2 loss=0.25",)))
        app.redraw(force_plot=False)  # as after a poll
        assert _cells(table)["loss"] == "0.5"  # a number waits for the tick
        assert "epoch 2" not in "\n".join(log.texts)  # so does a log line (each one relayouts the screen)

        monkeypatch.setattr(app_module, "FRAME_SECONDS", 0.0)  # the tick
        app.redraw(force_plot=False)
        assert _cells(table)["loss"] == "0.25" and _cells(table)["best"] == "0.25"
        assert log.texts[-1] == "epoch 2 loss=0.25"

        monkeypatch.setattr(app_module, "FRAME_SECONDS", 1e9)
        _reduce(engine, _loss(t0, 3, 0.125))
        app.redraw(force_plot=False)
        assert _cells(table)["loss"] == "0.25"
        _reduce(engine, RunChanged(ts=t0 + 5, run=_record("failed", t0)))
        app.redraw(force_plot=False)  # news: drawn at once, with the numbers that waited
        cells = _cells(table)
        assert "✖" in cells["status"] and cells["loss"] == "0.125" and cells["time"] == "0:05"
        assert "✖ 1 failed" in app.query_one("#top-bar", QuietStatic).content.plain  # the top bar's counts too
        await pilot.press("q")
    engine.close()


async def test_marking_a_run_is_drawn_at_once(workspace, monkeypatch):
    engine = _engine(workspace)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    t0 = time.time() - 60
    async with app.run_test(size=(160, 45)) as pilot:
        await _without_polls(pilot, app)
        _reduce(engine, RunChanged(ts=t0, run=_record("running", t0)), _loss(t0, 1, 0.5))
        app.redraw()
        await pilot.pause(0.2)
        monkeypatch.setattr(app_module, "FRAME_SECONDS", 1e9)
        table = app.query_one(RunsTable)
        table.toggle_mark()
        app.redraw(force_plot=False)
        assert "●" in _cells(table)["status"]
        await pilot.press("q")
    engine.close()


def _layouts_asked(widget: QuietStatic, text: str) -> list[bool]:
    """The `layout` of each refresh that updating the widget's text asks for."""
    asked, real = [], widget.refresh
    widget.refresh = lambda *a, **k: (asked.append(bool(k.get("layout"))), real(*a, **k))[1]
    try:
        widget.update(Text(text))
    finally:
        del widget.refresh
    return asked


async def test_a_bar_relayouts_the_screen_only_when_its_size_changes(workspace):
    engine = _engine(workspace)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        bar = app.query_one("#log-status", QuietStatic)  # height 1 (app.tcss)
        assert _layouts_asked(bar, "new status") == [False]
        assert _layouts_asked(bar, "new status") == []  # the same text: nothing at all
        probe = QuietStatic()  # height auto (Static's), as the run summary's: its lines set its height
        await app.screen.mount(probe, before=0)
        await pilot.pause(0.2)
        assert _layouts_asked(probe, "step 1 · time 0:01\nloss 0.5") == [False, True]
        await wait_until(pilot, lambda: probe.size.height == 2)
        # other text in as many lines: repainted alone; a line more: the screen relayouts
        assert _layouts_asked(probe, "step 2 · time 0:03\nloss 0.25") == [False]
        assert _layouts_asked(probe, "step 3 · time 0:05\nloss 0.125\nrunning-healthy") == [False, True]
        await wait_until(pilot, lambda: probe.size.height == 3)
        await pilot.press("q")
    engine.close()


async def test_a_batch_of_log_lines_shows_as_its_lines(workspace):
    engine = _engine(workspace)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    t0 = time.time() - 60
    lines = tuple(f"epoch {i} Traceback (most recent call last)" if i == 2 else f"epoch {i} loss={1 / i:.3f}"
                  for i in range(1, 2001))
    async with app.run_test(size=(160, 45)) as pilot:
        await _without_polls(pilot, app)
        _reduce(engine, RunChanged(ts=t0, run=_record("running", t0)), LogLines(ts=t0 + 1, run_id=RUN, lines=lines))
        app.redraw()
        await pilot.pause(0.2)
        log = app.query_one(LogPane)
        shown = [strip.text.rstrip() for strip in log.lines]  # written in one go, drawn a row a line
        assert shown == list(lines) and log.texts == list(lines)
        assert log.lines[1].text.startswith("epoch 2") and any(s.style and s.style.color and
                                                              s.style.color.name == "red" for s in log.lines[1])
        await pilot.press("q")
    engine.close()


async def test_log_lines_repaint_the_log_without_a_screen_relayout(workspace):
    """RichLog declares its growing virtual size a layout change: every write reflowed and repainted
    the whole screen. The log's size comes from the layout, so a write asks for no layout: it moves
    only its scrollbar (whose arrival relayouts, by the scrollbar's own display) and its view."""
    engine = _engine(workspace)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    t0 = time.time() - 60
    async with app.run_test(size=(160, 45)) as pilot:
        _reduce(engine, RunChanged(ts=t0, run=_record("running", t0)),
                LogLines(ts=t0 + 1, run_id=RUN, lines=("epoch 1 loss=1.0",)))
        app.redraw()
        await wait_until(pilot, lambda: app.query_one(LogPane).lines)
        log = app.query_one(LogPane)
        layouts = []
        real = log.refresh
        log.refresh = lambda *a, **k: (layouts.append(bool(k.get("layout"))), real(*a, **k))[1]
        last = 1 + 2 * log.size.height
        for step in range(2, last + 1):  # a screenful of lines and more, a line a poll
            _reduce(engine, LogLines(ts=t0 + step, run_id=RUN, lines=(f"epoch {step} loss={1 / step:.3f}",)))
            app.redraw()
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        del log.refresh
        assert layouts and not any(layouts)  # repainted at every write; never a layout
        assert log.show_vertical_scrollbar and log.vertical_scrollbar.display
        assert log.following and log.scroll_y == log.max_scroll_y > 0  # the newest line in view
        assert log.vertical_scrollbar.window_virtual_size == len(log.lines)
        assert f"epoch {last} " in log.render_line(log.size.height - 1).text
        await pilot.press("q")
    engine.close()


def _row_text(table: RunsTable, run_id: str) -> str:
    y = list(table.rows).index(run_id) + 1  # under the header
    return table.render_line(y).text


async def test_a_tick_renders_again_only_the_cells_that_changed(workspace, monkeypatch):
    """DataTable keys its cell renders by one update counter: one clock moving rendered every visible
    cell again (the header, every finished run). Only changed cells are rendered again; a new
    theme renders every cell again in its colours."""
    from textual.widgets import DataTable

    engine = _engine(workspace)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    t0 = time.time() - 60
    async with app.run_test(size=(160, 45)) as pilot:
        table, done = await _five_ended_and_one_running(pilot, app, engine, t0)
        rendered = []
        real = DataTable._render_cell
        monkeypatch.setattr(DataTable, "_render_cell", lambda self, row, column, *a, **k: (
            rendered.append((row, column)), real(self, row, column, *a, **k))[1])
        monkeypatch.setattr(app_module, "FRAME_SECONDS", 0.0)  # every redraw is a tick
        _reduce(engine, _loss(t0, 2, 0.25))
        app.redraw(force_plot=False)
        await pilot.pause(0.3)
        row = list(table.rows).index(RUN)
        assert rendered and {r for r, _ in rendered} == {row}  # the running run's row alone
        assert len(rendered) <= 4  # its loss, best, time (and progress/ETA if they moved)
        assert "0.25" in _row_text(table, RUN)  # and what is drawn is the new value
        rendered.clear()
        app.theme = "textual-light" if app.theme != "textual-light" else "textual-dark"
        await wait_until(pilot, lambda: {r for r, _ in rendered} >= {-1, *range(len(done) + 1)})  # the header and every row, in the theme's colours
        await pilot.press("q")
    engine.close()


async def _five_ended_and_one_running(pilot, app, engine, t0: float):
    """Five ended runs and the running one with a loss, in the table, its columns settled: (table, ended)."""
    done = [{"id": f"20261129-00000{i}-cones-000{i}", "recipe": "cones", "status": "exited", "exit_code": 0,
             "started": t0 - 900, "ended": t0 - 600} for i in range(5)]
    _reduce(engine, *(RunChanged(ts=t0, run=r) for r in done), RunChanged(ts=t0, run=_record("running", t0)),
            _loss(t0, 1, 0.5))
    app.redraw()
    table = app.query_one(RunsTable)
    await wait_until(pilot, lambda: table.row_count == len(done) + 1 and "0.5" in _row_text(table, RUN))
    await pilot.pause(0.3)  # its columns' widths settled, and drawn at them
    return table, done


async def test_a_tick_repaints_only_the_lines_of_the_rows_that_changed(workspace, monkeypatch):
    """DataTable.update_cell repaints every line of the table (the header, every finished run, the
    blank lines under them), each through its row styles: one clock moving repainted them all at
    every tick. Only the changed run's line is painted again; a column that must grow repaints all."""
    engine = _engine(workspace)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    t0 = time.time() - 60
    async with app.run_test(size=(160, 45)) as pilot:
        await _without_polls(pilot, app)
        table, done = await _five_ended_and_one_running(pilot, app, engine, t0)
        painted = []
        real = RunsTable.render_line
        monkeypatch.setattr(RunsTable, "render_line", lambda self, y: (painted.append(y), real(self, y))[1])
        monkeypatch.setattr(app_module, "FRAME_SECONDS", 0.0)  # every redraw is a tick
        _reduce(engine, _loss(t0, 2, 0.25))
        app.redraw(force_plot=False)
        await pilot.pause(0.3)
        line = list(table.rows).index(RUN) + 1  # under the header
        assert painted and set(painted) == {line}
        assert "0.25" in app.screen._compositor.render_strips()[table.region.y + line].text  # what the screen shows
        painted.clear()
        _reduce(engine, _loss(t0, 3, 123456789.0))  # wider than its column: measured, every line repainted
        app.redraw(force_plot=False)
        await wait_until(pilot, lambda: len(set(painted)) > 1)
        assert {0, line} <= set(painted)
        await pilot.press("q")
    engine.close()


async def test_between_ticks_a_live_run_costs_no_progress_summary(workspace, monkeypatch):
    """A live run's state changes at every poll; between ticks only its news cells are looked at
    (the progress cell's summary is computed on the tick), and news still shows at once."""
    import urbanrun.tui.runs_table as table_module

    engine = _engine(workspace)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    t0 = time.time() - 60
    async with app.run_test(size=(160, 45)) as pilot:
        _reduce(engine, RunChanged(ts=t0, run=_record("running", t0)), _loss(t0, 1, 0.5))
        app.redraw()
        await pilot.pause(0.2)
        table = app.query_one(RunsTable)
        summaries = []
        real = table_module._summary_progress
        monkeypatch.setattr(table_module, "_summary_progress", lambda *a: (summaries.append(a), real(*a))[1])
        monkeypatch.setattr(app_module, "FRAME_SECONDS", 1e9)  # no tick comes
        for step in range(2, 6):
            _reduce(engine, _loss(t0, step, 1 / step))
            app.redraw(force_plot=False)
        assert summaries == [] and _cells(table)["loss"] == "0.5"
        _reduce(engine, RunChanged(ts=t0 + 5, run=_record("failed", t0)))
        app.redraw(force_plot=False)
        assert len(summaries) == 1 and "✖" in _cells(table)["status"] and _cells(table)["loss"] == "0.2"
        await pilot.press("q")
    engine.close()


def _table_alone():
    """An app holding a runs table and nothing else."""
    from textual.app import App

    class One(App):
        def compose(self):
            yield RunsTable()

    return One()


async def test_rows_drawn_before_the_table_measures_them_are_drawn_again_at_their_width():
    """DataTable measures new rows when it is next idle, but keys the lines it drew by its update
    counter only. When the columns are made again (a new width's layout) and the same rows come back,
    the measure gives the table its old size: nothing else invalidates those lines, and a frame drawn
    before the measure (a loaded machine) kept every column at its header's width ('182' for the run
    id, seen in snapshots at 80x24) until some cell changed again, which for finished runs is never."""
    async with _table_alone().run_test(size=(160, 20)) as pilot:
        table = pilot.app.query_one(RunsTable)
        cells = [Text(f"{key}-{'x' * 20}") for key in table.layout_keys]
        wide = f"{table.layout_keys[0]}-{'x' * 20}"
        table.add_row(*cells, key=RUN)
        await wait_until(pilot, lambda: wide in "".join(s.text for s in table.render_line(1)))
        table.clear(columns=True)  # the columns made again, the same row back (_apply_layout's way)
        table._add_columns()
        table.add_row(*cells, key=RUN)
        first = "".join(s.text for s in table.render_line(1))  # a frame before the idle measure
        assert wide not in first  # the race is set: drawn at the headers' widths
        await wait_until(pilot, lambda: table.ordered_columns[0].content_width > 20)
        await wait_until(pilot, lambda: wide in "".join(s.text for s in table.render_line(1)))


async def test_the_plot_fits_its_pane_after_the_first_poll_and_after_a_resize(tmp_path, monkeypatch):
    """The curves pane and the column on its right (GPU summary over the log) split the width
    without overlap, every cell of the pane is the pane's own (nothing drawn over it), and the plot
    drawn there is whole: its box closes inside the pane, the last x tick and the legend's last
    entry are there. At the README's 80x24 and the other sizes, after the first poll, and the same
    again after a resize round trip (100x30 and back), as a user checks it in tmux."""
    import datetime as dt
    import shutil
    from pathlib import Path

    from textual.geometry import Region

    from urbanrun.engine.session.replay import ReplaySource
    from urbanrun.tui.loss_pane import LossPane

    fixtures = Path(__file__).parent / "fixtures"
    shutil.copytree(fixtures / "sessions", tmp_path / "sessions")
    monkeypatch.chdir(tmp_path)

    def drawn(app) -> list[str]:
        loss, right = app.query_one(LossPane), app.query_one("#right")
        assert loss.region.right == right.region.x and not loss.region.overlaps(right.region)
        assert loss.region.right + right.region.width == app.size.width
        app.clear_notifications()  # a toast is a toast; here: is anything else drawn over the plot?
        for y in range(loss.region.y, loss.region.bottom):
            for x in (loss.region.x, loss.region.right - 1):
                widget, _ = app.screen.get_widget_at(x, y)
                assert widget is loss, (x, y, widget)
        lines = [strip.text for strip in loss.render_lines(Region(0, 0, *loss.size))]
        assert all(len(line) == loss.size.width for line in lines)
        box = [line for line in lines if "┌" in line]
        axis = [line for line in lines if "└" in line]
        assert box and box[0].rstrip().endswith("┐") and axis and axis[0].rstrip().endswith("┘"), lines
        ticks = lines[lines.index(axis[0]) + 1]
        assert ticks.rstrip().endswith(("135", "135.0")), lines  # the last x tick: the run's last step
        assert any("val_loss" in line for line in lines), lines
        return lines

    for size in ((80, 24), (100, 30), (160, 45)):
        app = make_app(ReplaySource(Path("sessions") / "cones_gpu.jsonl", fast=True),
                       scratchpad_dir=tmp_path / "pad", today=dt.date(2026, 1, 15))
        async with app.run_test(size=size) as pilot:
            await wait_until(pilot, lambda: app.query_one(LossPane).footer)  # the first poll's curves
            await wait_until(pilot, lambda: app.query_one(RunSummary).summary is not None)  # its height too
            await _without_polls(pilot, app)
            await pilot.pause(0.3)
            first = drawn(app)
            await pilot.resize_terminal(100, 30)
            await pilot.pause(0.5)
            drawn(app)
            await pilot.resize_terminal(*size)
            await wait_until(pilot, lambda: app.query_one(LossPane).size.width == len(first[0]))
            await wait_until(pilot, lambda: drawn(app) == first, shown=lambda: size)


async def test_an_ended_runs_progress_shows_before_its_files_are_read(workspace):
    """A run that ended before this session (killed at epoch 5 of 7) is listed with the progress
    its record keeps, as `urbanrun ls` shows it: its files are read only once it is selected, and
    until then its progress cell was blank (killed, failed) or 'done' (exited)."""
    from conftest import cli_json, wait_for

    from urbanrun.engine.core.config import load_config as load

    first = Engine(load(workspace / "config.toml"), gpu_source=None, host=False)
    killed = first.launch("diverge")
    wait_for(lambda: first.poll() is not None and first.state.runs[killed.id].epoch == 5, what="epoch 5 of 7")
    first.kill(killed.id, grace=1)
    newer = first.launch("exit_after", values={"code": 0, "seconds": 0.1})
    wait_for(lambda: first.poll() is not None and first.state.runs[newer.id].status == "exited", what="the newer run's end")
    first.close()
    listed = {r["id"]: r for r in cli_json("ls", cwd=workspace)["runs"]}
    assert listed[killed.id]["status"] == "killed"

    engine = _engine(workspace)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.query_one(RunsTable)
        await wait_until(pilot, lambda: table.row_count == 2 and table.selected == newer.id)
        await _without_polls(pilot, app)
        app.redraw()
        assert killed.id not in engine._sources  # its files are not read: the record's figures show
        assert str(table.get_cell(killed.id, "progress")).endswith(" 5/7")
    engine.close()


async def test_the_plot_is_built_again_only_when_what_it_shows_changed(workspace, monkeypatch):
    """A plotext frame costs tens of ms: a draw that asks plotext for the same plot as the last one
    (a status change of the shown run, a forced redraw) builds none; new points, a key or another
    run build one, and what is drawn is the new plot."""
    from urbanrun.tui.loss_pane import LossPane

    engine = _engine(workspace)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    t0 = time.time() - 60
    async with app.run_test(size=(160, 45)) as pilot:
        await _without_polls(pilot, app)
        _reduce(engine, RunChanged(ts=t0, run=_record("running", t0)), *(_loss(t0, s, 1 / s) for s in range(1, 30)))
        app.redraw()
        pane = app.query_one(LossPane)
        await wait_until(pilot, lambda: "loss" in pane.render().plain)
        builds = []
        real = pane._plot.build
        monkeypatch.setattr(pane._plot, "build", lambda: (builds.append(1), real())[1])

        async def drawn(then) -> int:
            builds.clear()
            then()
            await pilot.pause(0.3)
            return len(builds)

        assert await drawn(app.redraw) == 0  # the same plot: nothing built
        _reduce(engine, RunChanged(ts=t0 + 40, run={**_record("running", t0), "pid": 123}))
        assert await drawn(app.redraw) == 0  # the record changed, not the plot
        before = pane.render().plain
        _reduce(engine, _loss(t0, 30, 5.0))  # a spike at the end
        assert await drawn(app.redraw) == 1
        assert pane.render().plain != before
        assert await drawn(app.action_log_y) == 1  # a key that changes the plot
        assert await drawn(app.redraw) == 0
        await pilot.press("q")
    engine.close()


async def test_a_long_diagnosis_is_cut_with_a_sign_not_scrolled_sideways(workspace):
    """At 80x24 with more runs than rows, a diagnosis ('✖ CUDA out of memory on GPU 0: …') wider
    than the room left made the table wider than the screen: a horizontal scrollbar took one of
    its four rows, and the diagnosis' end was off to the right. The diagnosis column keeps to the
    room and a longer one ends in '…'; at 160 columns the headline is whole."""
    engine = _engine(workspace)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    t0 = time.time() - 600
    oom = "CUDA out of memory on GPU 0: tried to allocate 9.22 GiB with 312.00 MiB free"
    async with app.run_test(size=(80, 24)) as pilot:
        await _without_polls(pilot, app)
        records = []
        for i in range(7):
            run_id = f"20261130-00000{i}-cones-000{i}"
            records.append(RunChanged(ts=t0 + i, run={"id": run_id, "recipe": "cones", "status": "failed",
                                                       "started": t0 + i, "ended": t0 + i + 5, "exit_code": 1,
                                                       "diagnoses": [{"severity": "error", "summary": oom}]}))
        _reduce(engine, *records)
        app.redraw()
        table = app.query_one(RunsTable)
        await wait_until(pilot, lambda: table.row_count == 7 and table.show_vertical_scrollbar)
        await wait_until(pilot, lambda: table.virtual_size.width <= table.scrollable_content_region.width, shown=lambda: (table.virtual_size, table.size))
        assert not table.show_horizontal_scrollbar
        shown = "".join(s.text for s in table.render_line(1))  # the first run's row
        assert "✖ CUDA out of memory" in shown and shown.rstrip().endswith("…"), shown
        await pilot.resize_terminal(160, 45)
        await pilot.pause(0.5)
        app.redraw()
        await wait_until(pilot, lambda: f"✖ {oom[:60]}…" in "".join(s.text for s in table.render_line(1)))  # as long as a headline gets
    engine.close()


async def test_a_toast_covers_the_log_column_not_the_plot(tmp_path, monkeypatch):
    """The reported first frame of `urbanrun --demo` at 80x24 (the plot's last x tick and the
    legend's val_loss cut, fine again after a resize): the 'launched …' toast, half the screen
    wide, lay over the plot's right edge for its five seconds. Toasts stay within the GPU/log
    column at every size."""
    import datetime as dt
    import shutil
    from pathlib import Path

    from textual.widgets._toast import Toast

    from urbanrun.engine.session.replay import ReplaySource
    from urbanrun.tui.loss_pane import LossPane

    shutil.copytree(Path(__file__).parent / "fixtures" / "sessions", tmp_path / "sessions")
    monkeypatch.chdir(tmp_path)
    app = make_app(ReplaySource(Path("sessions") / "cones_gpu.jsonl", fast=True), scratchpad_dir=tmp_path / "pad",
                   today=dt.date(2026, 1, 15))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await wait_until(pilot, lambda: app.query_one(LossPane).footer)
        for size in ((80, 24), (100, 30), (160, 45), (220, 60)):
            await pilot.resize_terminal(*size)
            await pilot.pause(0.3)
            app.notify("launched 20261130-182807-cones-5168 (pid 19860): python3 -m urbanrun.trainers.cones_unet",
                       timeout=30)
            await wait_until(pilot, lambda: app.screen.query(Toast))
            await pilot.pause(0.3)
            loss = app.query_one(LossPane)
            for toast in app.screen.query(Toast):
                assert not toast.region.overlaps(loss.region), (size, toast.region, loss.region)
            app.clear_notifications()
            await pilot.pause(0.2)


async def test_the_runs_table_lists_runs_made_in_one_second_in_the_order_ls_does():
    """Newest first by creation time, as `ls` and `last` (a444102): the table sorted by id, so three
    runs made in one second stood in the order of their ids' random tails, not of their making."""
    from urbanrun.engine.core.events import RunChanged
    from urbanrun.engine.core.state import State

    state = State()
    made = [("20260101-000000-cones-ffff", 100.1), ("20260101-000000-cones-0000", 100.5),
            ("20260101-000000-cones-8888", 100.9)]  # in the order they were made
    state.apply_all([RunChanged(ts=created, run={"id": run_id, "recipe": "cones", "status": "exited",
                                                 "exit_code": 0, "created": created}) for run_id, created in made])
    newest = [run_id for run_id, _ in reversed(made)]
    assert state.newest_first() == newest

    async with _table_alone().run_test(size=(160, 20)) as pilot:
        table = pilot.app.query_one(RunsTable)
        table.refresh_rows(state, 101.0)
        await pilot.pause()
        assert [str(key.value) for key in table.rows] == newest
