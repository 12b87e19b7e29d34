"""Found using the app at 80x24 in tmux as a person would (issue #13): the launch form's fields
were one line tall (the typed value unseen), the no-GPU reason was cut mid-sentence, and a plot
title too wide for the plot (a filter, log y) vanished with the only sign of the filter."""

from __future__ import annotations

import tomllib
from pathlib import Path

from textual.geometry import Region

from urbanrun.engine.core.config import _build
from urbanrun.engine.session.replay import ReplaySource
from urbanrun.tui.app import make_app
from urbanrun.tui.gpu_pane import GpuSummary
from urbanrun.tui.launch_form import LaunchForm
from urbanrun.tui.loss_pane import LossPane

from conftest import ROOT
from test_snapshots import FORM_CONFIG
from test_tui_keys import wait_until

CPU_SESSION = ROOT / "tests" / "fixtures" / "sessions" / "cones_cpu.jsonl"


def shown_text(widget) -> str:
    lines = widget.render_lines(Region(0, 0, widget.outer_size.width, widget.outer_size.height))
    return "\n".join(line.text for line in lines)


def replay(workspace):
    return make_app(ReplaySource(CPU_SESSION, fast=True), scratchpad_dir=workspace / "pad")


async def test_every_launch_field_is_seen_whole_at_80x24(workspace):
    config = _build(Path("config.toml"), FORM_CONFIG, tomllib.loads(FORM_CONFIG))
    app = replay(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        form = LaunchForm(config, "unet")
        app.push_screen(form)
        await pilot.pause(0.8)
        fields = form.query_one("#fields")
        for name in ("batch_size", "amp", "device", "lr"):
            widget = form.query_one(f"#f-{name}")
            assert widget.region.height >= 1 and fields.region.contains_region(widget.region), name
        form.query_one("#f-lr").focus()
        form.query_one("#f-lr").value = ""
        await pilot.press("2", "e", "-", "4")  # typed where it is seen
        await wait_until(pilot, lambda: form.query_one("#f-lr").value == "2e-4")
        await pilot.press("x")  # a wrong value: named and highlighted, and still seen as typed
        await pilot.pause(0.2)
        lr = form.query_one("#f-lr")
        assert lr.has_class("invalid") and lr.region.height == 1 and fields.region.contains_region(lr.region)
        assert "2e-4x" in shown_text(lr) and "fix lr:" in str(form.query_one("#command").render())
        await pilot.press("backspace")
        assert "--lr 0.0002" in str(form.query_one("#command").render())
        await pilot.resize_terminal(160, 45)  # room again: the bordered fields come back
        await wait_until(pilot, lambda: not form.has_class("-short") and not form.query_one("#f-lr").compact)


async def test_the_no_gpu_reason_and_a_filtered_plot_title_are_whole_at_80x24(workspace):
    app = replay(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        summary = app.query_one(GpuSummary)
        await wait_until(pilot, lambda: "not installed" in str(summary.content))
        await pilot.pause(0.5)
        text = " ".join(shown_text(summary).split())
        assert "libnvidia-ml is not installed)" in text and "work as usual" in text
        await pilot.press("F", "v", "a", "l", "enter")
        await pilot.pause(0.3)
        app.redraw(force_plot=True)  # while a poll holds the state: when its message comes (late when loaded)
        title = lambda: shown_text(app.query_one(LossPane)).split("\n")[0]  # noqa: E731
        await wait_until(pilot, lambda: "'val'" in title())  # the title keeps the filter


async def test_the_quit_summary_fits_80x24_and_says_what_esc_does(workspace):
    from urbanrun.tui.dialogs import SummaryScreen

    app = replay(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        app.push_screen(SummaryScreen("Training: 1 run(s) launched today (1 exited)."))
        await pilot.pause(0.5)
        dialog = app.screen.query_one("#summary-dialog")
        assert app.screen.region.contains_region(dialog.region)  # it was 100 columns wide on an 80-column screen
        title = " ".join(shown_text(app.screen.query_one("#summary-title")).split())
        assert title.endswith("esc quits without writing it")


async def test_the_scratchpads_titles_wrap_in_their_own_panes_at_80x24(workspace):
    # today's path was cut at the pane's edge and the next pane's title drawn over its date
    from textual.widgets import Label

    app = replay(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("s")
        await wait_until(pilot, lambda: app.query("#pad-title"))
        await pilot.pause(0.3)
        title = app.query_one("#pad-title", Label)
        pane = app.query_one("#pad-today")
        assert title.region.right <= pane.region.right
        shown = "".join(shown_text(title).split())
        assert app.query_one("ScratchpadPane").path.name in shown and "(ctrl+ssaves)" in shown


async def test_the_gpu_summary_breaks_between_readings_at_80x24(workspace):
    """At 80x24 a GPU's line takes three: while its sparkline was short (the first minutes of a
    session) the words wrapped wherever they fell, 'mem' left at the end of one line and its bar
    at the start of the next, and every new sample moved the break. Now the line breaks only
    between readings: the sparkline, memory with its bar, temperature, power."""
    from collections import deque

    from urbanrun.engine.core.state import State

    app = replay(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.state.runs)
        app._poll_timer.pause()
        await wait_until(pilot, lambda: not app._polling)
        pane = app.query_one(GpuSummary)
        state = State()
        state.gpu_status = {"available": True}
        state.gpus = [{"index": 0, "util_gpu": 86, "mem_used": 10.5 * 2**30, "mem_total": 24 * 2**30, "temp": 50,
                       "power_w": 290.0}]
        state.host = {"cpu": [100.0], "mem_used": 2.2 * 2**30, "mem_total": 24 * 2**30}
        for samples in (1, 3, 8, 20, 40):
            state.gpu_history = {0: deque((t, 80.0) for t in range(samples))}
            pane.show(state)
            await pilot.pause(0.1)
            lines = [line.rstrip() for line in shown_text(pane).split("\n") if line.strip()]
            assert any(line.lstrip().startswith("mem █") for line in lines), (samples, lines)
            assert not any(line.endswith("mem") for line in lines), (samples, lines)
            assert any("50°C" in line for line in lines) and any("290W" in line for line in lines), lines
        await pilot.resize_terminal(200, 40)  # room for all of it: one line again
        await pilot.pause(0.5)
        pane.show(state)  # (the resize drew the replay's own state: no GPU)
        await wait_until(pilot, lambda: any("mem █" in line and "290W" in line for line in shown_text(pane).split("\n")), shown=lambda: shown_text(pane))


async def test_a_long_parameter_help_is_never_cut_mid_word_without_a_sign(workspace):
    """The launch form's help line of a parameter ('Cones per batch (GPU memory grows with it, abo')
    was cut at the dialog's edge with nothing to say so. A short form (24 rows) keeps one line a
    parameter and ends a cut one with '…'; a tall one wraps it, whole."""
    from urbanrun.engine.core.config import load_config
    from urbanrun.engine.session.loop import Engine

    engine = Engine(load_config(ROOT / "config.toml"), workspace / "runs", gpu_source=None, record_session=False)
    for size, whole in (((80, 24), False), ((160, 45), True)):
        app = make_app(engine, scratchpad_dir=workspace / "pad")
        async with app.run_test(size=size) as pilot:
            await pilot.press("l")
            await wait_until(pilot, lambda: isinstance(app.screen, LaunchForm) and app.screen.query(".field-hint"))
            await pilot.pause(0.3)
            cut = 0
            for hint in app.screen.query(".field-hint"):
                assert hint.region.right <= hint.parent.region.right, (hint.region, hint.parent.region)  # not under the edge
                full = str(hint.render()).strip()
                shown = " ".join(shown_text(hint).split())
                if whole:
                    assert shown == " ".join(full.split()), (shown, full)
                elif shown != " ".join(full.split()):
                    cut += 1
                    assert shown.endswith("…") and hint.size.height == 1, (shown, full)
            assert whole or cut  # the demo recipe's batch_size help is longer than 70 columns
            await pilot.press("escape")
    engine.close()


async def test_every_small_dialog_fits_the_screen_and_shows_its_whole_question(workspace):
    """The observation prompt (o) was 100 columns wide on an 80-column screen, its right edge
    and the end of its question ('run ids in it are linked') off the screen, and its question cut
    at 160 columns too. Each small dialog now fits the screen and wraps its question inside."""
    from urbanrun.engine.core.config import load_config
    from urbanrun.engine.session.loop import Engine
    from urbanrun.tui.dialogs import ConfirmKill, PromptScreen

    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    for size in ((80, 24), (160, 45)):
        app = make_app(engine, scratchpad_dir=workspace / "pad")
        async with app.run_test(size=size) as pilot:
            for open_it in (lambda: pilot.press("o"), lambda: pilot.press("i"),
                            lambda: app.push_screen(ConfirmKill("20261130-185924-cones-60df", 10))):
                await open_it()
                await wait_until(pilot, lambda: isinstance(app.screen, (PromptScreen, ConfirmKill)))
                await pilot.pause(0.3)
                dialog = app.screen.query_one("#confirm-dialog")
                assert app.screen.region.contains_region(dialog.region), (size, dialog.region)
                for child in dialog.children:
                    assert dialog.region.contains_region(child.region), (size, child, child.region, dialog.region)
                question = dialog.children[0]
                shown = " ".join(shown_text(question).split())
                assert shown == " ".join(str(question.render()).split()), (size, shown)
                await pilot.press("escape")
                await wait_until(pilot, lambda: app.screen is app.screen_stack[0])
    engine.close()
