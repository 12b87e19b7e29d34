"""The curves pane never crashes on data (generated series: empty, one point, NaN/±inf, constant,
huge ranges, points outside the clipped range, 1-8 overlaid runs, 60x15 to 250x70), pairs
train/val on one plot, filters by name, shows a grid, and its cursor reads exact values; driven
in the real app with the reported crash (baselines 0.2 -> 0.01 and a new run at 0.5)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from rich.style import Style

from urbanrun.engine.core.series import Series
from urbanrun.engine.core.state import RunState, State
from urbanrun.engine.session.replay import ReplaySource
from urbanrun.tui.app import make_app
from urbanrun.tui.curve_groups import group_key, groups
from urbanrun.tui.loss_pane import LossPane

from conftest import ROOT
from test_tui import wait_until

SESSIONS = ROOT / "tests" / "fixtures" / "sessions"

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e300, 1e300),
    st.floats(-1e-300, 1e-300),
    st.floats(0.0, 1.0),
)
shapes = st.one_of(
    st.lists(values, max_size=0),
    st.lists(values, min_size=1, max_size=1),
    st.lists(values, max_size=120),
    st.builds(lambda v, n: [v] * n, values, st.integers(1, 120)),  # constant
    st.builds(lambda a, b, n: list(np.linspace(a, b, n)), st.floats(-1e6, 1e6), st.floats(-1e6, 1e6),
              st.integers(2, 600)),
)


def _state(runs: list[dict[str, list[float]]], started=1_700_000_000.0) -> tuple[State, list[str]]:
    state = State()
    ids = []
    for r, metrics in enumerate(runs):
        run_id = f"20260101-0000{r:02d}-cones-{r:04x}"
        run = state.runs[run_id] = RunState(record={"id": run_id, "status": "running", "started": started})
        for name, ys in metrics.items():
            s = run.metrics[name] = Series(cap=256)  # small: long lists exercise the folded buckets
            steps = np.arange(len(ys), dtype=float) * (r + 1)
            s.extend(steps, started + steps, ys)
        ids.append(run_id)
    return state, ids


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=st.lists(st.dictionaries(st.sampled_from(["train_loss", "val_loss", "loss", "acc"]), shapes,
                                     max_size=3), min_size=1, max_size=8),
       size=st.tuples(st.integers(60, 250), st.integers(15, 70)),
       smoothing=st.sampled_from([0.0, 0.6, 0.99]), log_y=st.booleans(), axis=st.sampled_from(["step", "time"]),
       grid=st.booleans(), cursor=st.one_of(st.none(), st.floats(-10, 1e4)))
@example(runs=[{"train_loss": [3.2e205]}], size=(60, 15), smoothing=0.0, log_y=True, axis="step", grid=False,
         cursor=None)  # plotext's log scale overflowed
@example(runs=[{"train_loss": [0.0]}], size=(60, 15), smoothing=0.0, log_y=True, axis="step", grid=False,
         cursor=None)  # nothing left to plot on a log scale
@example(runs=[{"loss": [1e300, -1e300, 0.0]}, {"loss": [float("nan")] * 3}], size=(250, 70), smoothing=0.99,
         log_y=False, axis="time", grid=True, cursor=1.0)
@example(runs=[{"loss": [0.5, 0.5, 0.49]}, {"loss": list(np.linspace(0.2, 0.01, 400))},
               {"loss": list(np.linspace(0.2, 0.01, 400))}], size=(100, 30), smoothing=0.6, log_y=False,
         axis="step", grid=False, cursor=None)  # the reported IndexError in plotext's legend code
@example(runs=[{"train_loss": [0.0], "val_loss": [5.136266099606617e+306]}], size=(60, 15), smoothing=0.0,
         log_y=False, axis="step", grid=False, cursor=None)  # plotext's range overflowed: OverflowError
@example(runs=[{"train_loss": [1.7976931013776717e+308]}], size=(60, 15), smoothing=0.0, log_y=False, axis="step",
         grid=False, cursor=None)  # ValueError (nan) in plotext
@example(runs=[{"train_loss": [2.2e-309]}], size=(60, 15), smoothing=0.0, log_y=False, axis="step", grid=False,
         cursor=None)  # a subnormal value: OverflowError in plotext's tick labels
@example(runs=[{"train_loss": [0.0, 1e-320]}], size=(60, 15), smoothing=0.0, log_y=False, axis="step", grid=False,
         cursor=None)
def test_the_pane_draws_any_series_at_any_size(runs, size, smoothing, log_y, axis, grid, cursor):
    state, ids = _state(runs)
    pane = LossPane()
    pane.smoothing, pane.log_y, pane.axis, pane.grid, pane.cursor = smoothing, log_y, axis, grid, cursor
    pane.draw(state, ids, size=size)
    frame = pane.frame(*size)  # raises if plotext cannot draw it: the safety net is not the test
    for span in frame.spans:  # every style is one rich (and so Textual) can parse
        Style.parse(span.style) if isinstance(span.style, str) else None
    assert len(frame.plain.splitlines()) <= size[1]


def test_the_reported_crash_draws_the_new_run_inside_the_range():
    # two marked runs going 0.2 -> 0.01, the new selected run at 0.5 with three points
    state, ids = _state([{"loss": [0.5, 0.5, 0.49]}, {"loss": list(np.linspace(0.2, 0.01, 400))},
                         {"loss": list(np.linspace(0.2, 0.01, 400))}])
    pane = LossPane()
    pane.draw(state, ids, size=(100, 30))
    text = pane.frame(100, 30).plain
    assert "0.5" in text or "0.49" in text  # the y axis reaches the new run's values
    assert "cones-0000" in text and "cones-0001" in text  # our own legend, one entry a run


def test_train_and_val_share_a_plot_and_the_filter_picks_plots():
    assert group_key("train_loss") == group_key("val_loss") == group_key("loss") == "loss"
    assert group_key("train/acc") == group_key("val/acc") == "acc"
    assert group_key("train_loss_epoch") == "loss"
    assert groups(["val_loss", "lr", "train_loss", "val_acc"]) == {"loss": ["train_loss", "val_loss"],
                                                                    "acc": ["val_acc"], "lr": ["lr"]}
    assert groups(["val_loss", "lr", "train_loss", "val_acc"], "acc lr") == {"acc": ["val_acc"], "lr": ["lr"]}
    state, ids = _state([{"train_loss": [1.0, 0.5, 0.25], "val_loss": [1.2, 0.7, 0.4], "lr": [0.1, 0.1, 0.1]}])
    pane = LossPane()
    pane.draw(state, ids, size=(120, 30))
    text = pane.frame(120, 30).plain
    assert "train_loss" in text and "val_loss" in text and "lr" not in text.split("\n")[-1]
    pane.grid = True
    pane.draw(state, ids, size=(120, 30))
    text = pane.frame(120, 30).plain
    assert "2 plots" in text and " lr " in text
    pane.filter = "lr"
    pane.draw(state, ids, size=(120, 30))
    assert "train_loss" not in pane.frame(120, 30).plain
    pane.filter = "nothing-like-this"
    pane.draw(state, ids, size=(120, 30))
    assert "no metric matches the filter 'nothing-like-this'" in pane.frame(120, 30).plain


def test_cursor_reads_every_shown_run_exactly():
    state, ids = _state([{"loss": [1.0, 0.5, 0.25, 0.125]}, {"loss": [2.0, 1.0, 0.5, 0.3]}])
    pane = LossPane()
    pane.smoothing = 0.9  # the readout gives the values, not the smoothed curve
    pane.draw(state, ids, size=(100, 30))
    pane.cursor = 2.0  # run 0 logs steps 0,1,2,3; run 1 logs 0,2,4,6
    pane.draw(state, ids, size=(100, 30))
    readout = pane.footer[-1].plain
    assert readout.startswith("step 2:") and "cones-0000 0.25" in readout and "cones-0001 1" in readout


async def test_curves_keys_in_the_app_never_crash_it(workspace):
    app = make_app(ReplaySource(SESSIONS / "cones_cpu.jsonl", fast=True), scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(LossPane)
        await wait_until(pilot, lambda: len(pane._xs))  # until the replay's points are plotted
        pane.focus()
        await pilot.pause(0.2)
        await pilot.press("right", "left", "left", "shift+left", "home", "end")
        await pilot.pause(0.3)
        assert pane.cursor is not None and app.focused is pane
        await wait_until(pilot, lambda: "step" in pane.footer[-1].plain)  # drawn between polls
        for key in ("v", "e", "E", "y", "x", "v"):
            await pilot.press(key)
            await pilot.pause(0.1)
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert pane.cursor is None
        await pilot.press("F")
        await pilot.pause(0.2)
        await pilot.press(*"acc", "enter")
        await pilot.pause(0.3)
        assert pane.filter == "acc"
        assert app.is_running


def test_the_title_fits_the_width_the_plot_is_drawn_at():
    # plotext drops a title wider than the plot: at 80 columns the filter and log y vanished with
    # it; and a plot drawn before its pane had a size (the compare screen) kept a title for 20 columns
    state, ids = _state([{"train_loss": list(np.linspace(1.0, 0.1, 50)), "val_loss": list(np.linspace(1.1, 0.2, 50))}])
    pane = LossPane()
    pane.filter, pane.log_y = "val", True
    pane.draw(state, ids, size=(48, 20))
    assert pane.frame(48, 20).plain.split("\n")[0].strip() == "loss · ema 0.6 · log y · 'val'"
    pane.draw(state, ids, size=(20, 10))
    assert pane.frame(120, 30).plain.split("\n")[0].strip() == "loss · smoothing 0.6 · log y · x: step · filter 'val'"
    empty, none = _state([{}])
    pane.draw(empty, none, size=(48, 20))
    assert pane.frame(48, 20).plain.split("\n")[0].strip().startswith("no metrics yet")  # why it is empty, cut, not gone


def test_a_legend_too_long_for_two_lines_says_how_many_entries_it_left_out():
    # 8 overlaid runs with train and val: 16 entries cannot fit two 80-column lines
    state, ids = _state([{"train_loss": [1.0, 0.5], "val_loss": [1.1, 0.6]} for _ in range(8)])
    pane = LossPane()
    pane.draw(state, ids, size=(80, 24))
    legend = [line.plain for line in pane.footer]
    assert len(legend) == 2 and all(len(line) <= 80 for line in legend)
    shown = sum(line.count("━━") for line in legend)
    more = int(legend[-1].rsplit("+", 1)[1].split()[0])
    assert legend[-1].endswith("more") and shown + more == 16, legend


dots = st.lists(st.tuples(st.integers(-300, 300), st.integers(-300, 300), st.sampled_from(["cyan", "gray"])),
                min_size=1, max_size=80)


@settings(max_examples=300, deadline=None)
@given(points=dots, same_colour=st.booleans(), fx=st.sampled_from([1, 2]), fy=st.sampled_from([1, 2, 3, 4]))
@example(points=[(0, 0, "gray")], same_colour=True, fx=2, fy=4)  # one point: no segment
@example(points=[(5, 5, "gray"), (5, 5, "cyan"), (5, 5, "gray")], same_colour=False, fx=2, fy=4)  # no move
def test_plotexts_dot_loops_done_by_numpy_give_plotexts_dots(points, same_colour, fx, fy):
    """The loss pane's frames use numpy for plotext's two dot loops (tui/plotext_fast.py): they
    give plotext's own answer, dot for dot, in the same order (negative and repeated places too)."""
    from urbanrun.tui import plotext_fast

    x, y = [p[0] for p in points], [p[1] for p in points]
    colours = ["gray"] * len(points) if same_colour else [p[2] for p in points]
    other = (["braille"] * len(points), colours, ["default"] * len(points))
    lines = plotext_fast._plotext_get_lines(x, y, *other)
    assert plotext_fast.get_lines(x, y, *other) == lines
    factors = [fx] * len(lines[0]), [fy] * len(lines[0])
    assert list(plotext_fast.hd_group(lines[0], lines[1], *factors)) == \
        list(plotext_fast._plotext_hd_group(lines[0], lines[1], *factors))
    # anything else than whole-number dots is plotext's own business
    assert plotext_fast.get_lines([0.5, 2.0], [1, 3], ["braille"] * 2) == \
        plotext_fast._plotext_get_lines([0.5, 2.0], [1, 3], ["braille"] * 2)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=st.lists(st.dictionaries(st.sampled_from(["train_loss", "val_loss", "loss"]), shapes, max_size=2),
                     min_size=1, max_size=4),
       size=st.tuples(st.integers(60, 200), st.integers(15, 50)), smoothing=st.sampled_from([0.0, 0.6]),
       log_y=st.booleans(), grid=st.booleans())
@example(runs=[{"train_loss": [1.1125369292536007e-308]}], size=(60, 15), smoothing=0.0, log_y=False, grid=False)
def test_a_frame_drawn_with_the_numpy_loops_is_plotexts_frame(runs, size, smoothing, log_y, grid):
    import plotext._utility as ut

    from urbanrun.tui import plotext_fast

    state, ids = _state(runs)
    frames = []
    for fast in (True, False):
        pane = LossPane()
        pane.smoothing, pane.log_y, pane.grid = smoothing, log_y, grid
        pane.draw(state, ids, size=size)  # installs the numpy loops
        if not fast:
            ut.get_lines, ut.hd_group = plotext_fast._plotext_get_lines, plotext_fast._plotext_hd_group
        try:
            frame = pane.frame(*size)
            frames.append((frame.plain, frame.spans))
        except (OverflowError, ValueError) as exc:  # plotext's tick labels on some data (1e-308): both ways
            frames.append(type(exc))
        finally:
            plotext_fast.install()
    assert frames[0] == frames[1]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=st.lists(st.dictionaries(st.sampled_from(["train_loss", "val_loss", "loss"]), shapes, max_size=2),
                     min_size=1, max_size=4),
       size=st.tuples(st.integers(60, 200), st.integers(15, 50)), log_y=st.booleans(), grid=st.booleans(),
       cursor=st.one_of(st.none(), st.floats(0, 300)))
@example(runs=[{"loss": [0.5, 0.25, 0.3]}], size=(80, 20), log_y=False, grid=False, cursor=1.0)
def test_a_frame_is_drawn_as_textual_draws_it_from_rich_text(runs, size, log_y, grid, cursor):
    """The pane's frames skip rich's ANSI decoder and Textual's wrapping (tui/plot_frame.py): every
    line gives the segments, styles and text offsets Textual makes of the same frame as rich Text."""
    from textual.content import Content
    from textual.style import Style as TextualStyle
    from textual.visual import RenderOptions

    state, ids = _state(runs)
    pane = LossPane()
    pane.log_y, pane.grid, pane.cursor = log_y, grid, cursor
    pane.draw(state, ids, size=size)
    try:
        frame = pane.plot_frame(*size)
    except (OverflowError, ValueError):  # plotext's tick labels on some data (1e-308): not this test's
        assume(False)
    base = TextualStyle.parse("#e0e0e0 on #1e1e1e")
    options = RenderOptions(TextualStyle.parse, {})
    ours = frame.render_strips(size[0], size[1], base, options)
    textual = Content.from_rich_text(frame.as_text()).render_strips(size[0], size[1], base, options)
    assert [strip._segments for strip in ours] == [strip._segments for strip in textual]
    assert ours and any(strip.text.strip() for strip in ours)
