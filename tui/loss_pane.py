"""Curves like TensorBoard's, in the terminal (plotext through textual-plotext).

The selected run and the marked ones overlaid; train/val pairs (`train_loss`/`val_loss`) on one
plot; one plot (m/M picks it) or a grid of every metric, filtered by name; a cursor (←/→ with the
runs table or the plot focused) that reads every shown curve's value at a step; TensorBoard's debiased EMA taken
over the whole series (`Series.smoothed`), so its strength never depends on the terminal's width;
log-y; x by step or wall time; a y range per curve that ignores outliers. Curves are plotted from
downsampled series, never from every raw point. Legend and readout are our own lines under the
plot (plotext's legend code raised IndexError on out-of-range series); anything plotext still
raises is shown in the pane by the app's containment (contained.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual.binding import Binding
from textual_plotext import PlotextPlot

from urbanrun.engine.core.state import State, loss_name

if TYPE_CHECKING:  # numpy and the series come with the first curve, not with the first frame (an empty pane)
    import numpy as np

    from urbanrun.engine.core.series import Series

from .curve_groups import group_key, groups
from .plot_frame import PlotFrame
from .formatting import cut

COLOURS = ["cyan", "orange", "green", "magenta", "yellow", "blue", "red", "white"]  # plotext's names
RICH_COLOURS = {"orange": "dark_orange"}  # the legend's names where rich spells one differently
CELL_WIDTH, CELL_HEIGHT = 44, 9  # the smallest grid cell worth drawing
FOOTER_LINES = 3  # at most: legend, cursor readout (the plot keeps the rest)


@dataclass
class Curve:
    label: str
    colour: str
    series: Series
    start: float  # the run's start (the time axis shows minutes since)


PLOTTABLE = 1e300  # plotext's own arithmetic (ranges, ticks) overflows to inf or nan near float's max (1.8e308)
NEGLIGIBLE = 1e-300  # and its tick labels overflow on subnormal values (2.2e-309: OverflowError)


def _finite(x: np.ndarray, y: np.ndarray, log_y: bool) -> tuple[np.ndarray, np.ndarray]:
    """The points a plot can show; with log y, their log10 (plotext's own log scale overflows on
    huge values, so we plot decades on a linear axis and label the ticks). On a linear axis a value
    beyond ±PLOTTABLE is left out, as inf is (the runs table still gives it); one within ±NEGLIGIBLE
    of 0 is drawn at 0, where no terminal's rows can tell it from 0."""
    import numpy as np

    keep = np.isfinite(x) & np.isfinite(y)
    if log_y:
        keep &= y > 0
        return x[keep], np.log10(y[keep])
    keep &= np.abs(y) <= PLOTTABLE
    y = y[keep]
    return x[keep], np.where(np.abs(y) < NEGLIGIBLE, 0.0, y)


class _Recording:
    """plotext's pyplot (or one of its subplots), each call also noted: the calls a draw makes are
    what the frame shows, so equal calls draw an equal frame (see LossPane.draw)."""

    def __init__(self, target, calls: list):
        self._target, self._calls = target, calls

    def __getattr__(self, name: str):
        real = getattr(self._target, name)

        def call(*args, **kwargs):
            self._calls.append((name, args, kwargs))
            result = real(*args, **kwargs)
            return _Recording(result, self._calls) if name == "subplot" else result

        return call


def _num(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else str(v)


class LossPane(PlotextPlot):
    can_focus = True
    BINDINGS = [
        # ←/→ are the app's (they move this cursor from the runs table too); these need the plot focused
        Binding("home", "cursor_edge(-1)", "cursor to start", show=False, tooltip="cursor to the first step"),
        Binding("end", "cursor_edge(1)", "cursor to end", show=False, tooltip="cursor to the last step"),
        Binding("escape", "cursor_off", "hide cursor", show=False, tooltip="hide the cursor"),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.metric: str | None = None  # the plot shown alone (a group's name); None: the run's loss
        self.grid = False  # every plot the filter keeps, side by side
        self.filter = ""
        self.smoothing = 0.6
        self.log_y = False
        self.axis = "step"
        self.cursor: float | None = None  # x of the cursor, in the plot's units
        self.empty_reason = "no run selected"
        self.footer: list[Text] = []
        self.without_points: set[str] = set()
        self._panels: list[tuple[str, list[Curve]]] = []
        self._xs: np.ndarray | tuple = ()  # every shown x (plot units), sorted: where the cursor can stop
        self._source: tuple[State, list[str]] | None = None
        self._size_hint: tuple[int, int] | None = None
        self._one_title = None
        self._picture: tuple | None = None  # what the last draw asked plotext for (see draw)

    # -- choices -----------------------------------------------------------------------------------
    def cycle_metric(self, state: State, run_id: str | None, step: int = 1) -> str | None:
        run = state.runs.get(run_id or "")
        if not run or not run.metrics:
            return None
        keys = list(groups(run.metrics, self.filter)) or list(groups(run.metrics))
        current = self.metric or group_key(loss_name(run) or "")
        i = keys.index(current) if current in keys else -1
        self.metric = keys[(i + step) % len(keys)]
        return self.metric

    def change_smoothing(self, direction: int) -> float:
        from urbanrun.engine.core.series import EMA_WEIGHTS

        steps = [0.0, *EMA_WEIGHTS]
        i = min(range(len(steps)), key=lambda k: abs(steps[k] - self.smoothing))
        self.smoothing = steps[max(0, min(len(steps) - 1, i + direction))]
        return self.smoothing

    # -- drawing -----------------------------------------------------------------------------------
    def draw(self, state: State, run_ids: list[str], size: tuple[int, int] | None = None) -> None:
        """Rebuild the plot from the state (call it while the state is not being written).
        `size`: the pane's (width, height) when it is not mounted (tests, benches)."""
        self._source = (state, list(run_ids))
        self._size_hint = size
        # runs drawn before any point of theirs was read (a finished run's files are read once it is
        # selected): their first points redraw at once, not a PLOT_SECONDS later (see app._show_events)
        self.without_points = {i for i in run_ids if i in state.runs and not state.runs[i].metrics}
        calls: list = []
        plt = _Recording(self.plt, calls)
        plt.clear_data()
        plt.clear_figure()
        self._panels = self._choose_panels(state, run_ids)
        self._one_title = None  # the one plot's title (or why it is empty), fitted to the width at render
        width, height = size or (self.size.width, self.size.height)
        width, height = max(20, width), max(6, height)
        shown = self._panels
        cols = rows = 1
        if len(shown) > 1:
            cols = max(1, min(len(shown), width // CELL_WIDTH))
            rows = max(1, min(math.ceil(len(shown) / cols), (height - FOOTER_LINES) // CELL_HEIGHT))
            shown = shown[:rows * cols]
            if rows * cols > 1:
                plt.subplots(rows, cols)
        xs, drawn = [], 0
        for i, (key, curves) in enumerate(shown):
            target = plt.subplot(i // cols + 1, i % cols + 1) if rows * cols > 1 else plt
            drawn += self._draw_panel(target, key, curves, max(20, width // cols), xs)
        if xs:
            import numpy as np

            self._xs = np.unique(np.concatenate(xs))
        else:
            self._xs = ()
        if self.cursor is not None and len(self._xs):
            self.cursor = float(min(max(self.cursor, self._xs[0]), self._xs[-1]))
        if not drawn:
            self.empty_reason = self._why_empty(state, run_ids)
            self._one_title = lambda width: cut(self.empty_reason, width - 2)
        self.footer = self._footer(shown, len(self._panels) - len(shown), width)
        # a plotext frame costs tens of ms: built again only when the plot is asked for anything
        # else than last time (a live run's new points, another run, a key), not at every draw
        picture = (calls, self._one_title(1000) if self._one_title else None, self.footer, (width, height))
        if picture != self._picture:
            self._picture = picture
            self.refresh()

    def _choose_panels(self, state: State, run_ids: list[str]) -> list[tuple[str, list[Curve]]]:
        runs = [state.runs[r] for r in run_ids if r in state.runs]
        names: dict[str, None] = {}
        for run in runs:
            names.update(dict.fromkeys(run.metrics))
        plots = groups(names, self.filter)
        if not self.grid and plots:
            first = loss_name(runs[0]) if runs else None
            key = self.metric if self.metric in plots else group_key(first) if first and group_key(first) in plots \
                else next(iter(plots))
            plots = {key: plots[key]}
        panels = []
        for key, metrics in plots.items():
            curves = []
            for r, run in enumerate(runs):
                for m, metric in enumerate(metrics):
                    series = run.metrics.get(metric)
                    if series is None or series.count == 0:
                        continue
                    one_run = len(runs) == 1
                    tag = run.id.split("-", 2)[-1]
                    label = metric if one_run else (tag if len(metrics) == 1 else f"{tag} {metric}")
                    colour = COLOURS[(r * len(metrics) + m) % len(COLOURS)]
                    curves.append(Curve(label, colour, series, run.record.get("started") or 0.0))
            if curves:
                panels.append((key, curves))
        return panels

    def _x(self, x: np.ndarray, curve: Curve) -> np.ndarray:
        return (x - (curve.start or (x[0] if len(x) else 0.0))) / 60.0 if self.axis == "time" else x

    def _draw_panel(self, plt, key: str, curves: list[Curve], width: int, xs: list) -> int:
        """One plot's curves; returns how many had something to draw."""
        import numpy as np

        from urbanrun.engine.core.series import downsample, robust_range

        from . import plotext_fast

        plotext_fast.install()  # here, with the first curve: the first frame loads no numpy
        points = max(40, width * 2)  # braille: two dots a column
        spans, drawn, x_lo, x_hi = [], 0, math.inf, -math.inf
        for curve in curves:
            x, y = _finite(*curve.series.view(points, self.axis), self.log_y)
            if len(y) == 0:
                continue
            x = self._x(x, curve)
            xs.append(x)
            x_lo, x_hi = min(x_lo, float(x[0]), float(x.min())), max(x_hi, float(x.max()))
            drawn += 1
            span = robust_range(y)
            if self.smoothing > 0 and curve.series.count > 2:
                plt.plot(x.tolist(), y.tolist(), color="gray", marker="braille")
                sx, sy = _finite(*downsample(*curve.series.smoothed(self.smoothing, self.axis), points), self.log_y)
                if len(sy):
                    plt.plot(self._x(sx, curve).tolist(), sy.tolist(), color=curve.colour, marker="braille")
            else:
                plt.plot(x.tolist(), y.tolist(), color=curve.colour, marker="braille")
            if span and all(math.isfinite(v) for v in span):
                spans.append(span)
        if self._panels and len(self._panels) > 1:
            plt.title(key)
        else:
            self._one_title = lambda width: self._title(key, width)
        plt.xlabel("minutes" if self.axis == "time" else "step")
        if spans:  # every curve's bulk stays in view; only its own outliers may leave it
            lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
            if math.isfinite(hi - lo) and hi > lo:
                plt.ylim(lo, hi)
                if self.log_y:
                    decades = list(range(math.ceil(lo), math.floor(hi) + 1))
                    if len(decades) >= 2:
                        plt.yticks(decades, [f"1e{k}" for k in decades])
                    else:
                        ticks = np.linspace(lo, hi, 4)
                        plt.yticks(ticks.tolist(), [f"{10 ** t:.3g}" for t in ticks])
        if self.cursor is not None and drawn and x_lo <= self.cursor <= x_hi:
            plt.vline(self.cursor, "white")
        return drawn

    def _title(self, key: str, width: int = 1000) -> str:
        """The plot's title, shortened to fit: plotext drops a title wider than the plot, and with
        it the only sign of the filter, log y and the smoothing (seen at 80 columns)."""
        long = [key, f"smoothing {self.smoothing:g}", "log y" if self.log_y else "", f"x: {self.axis}",
                f"filter '{self.filter}'" if self.filter else ""]
        short = [key, f"ema {self.smoothing:g}", "log y" if self.log_y else "",
                 "x: time" if self.axis == "time" else "", f"'{self.filter}'" if self.filter else ""]
        room = max(8, width - 8)
        for bits in (long, short):
            title = " · ".join(b for b in bits if b)
            if len(title) <= room:
                return title
        return title[:room - 1] + "…"

    def _why_empty(self, state: State, run_ids: list[str]) -> str:
        if not run_ids:
            return "no run selected"
        if self.filter and any(state.runs.get(r) and state.runs[r].metrics for r in run_ids):
            return f"no metric matches the filter '{self.filter}' (F changes it)"
        if any(state.runs.get(r) and state.runs[r].metrics for r in run_ids):
            return "no finite values to plot yet" + (" (log y hides values ≤ 0)" if self.log_y else "")
        return ("no metrics yet: the run writes none so far (metrics.jsonl, CSV, TensorBoard, "
                "W&B or loss lines in its log)")

    def _footer(self, shown, hidden: int, width: int) -> list[Text]:
        lines = []
        entries = []
        seen = set()
        for _, curves in shown:
            for c in curves:
                if c.label not in seen:
                    seen.add(c.label)
                    entries.append(Text.assemble(("━━ ", RICH_COLOURS.get(c.colour, c.colour)), c.label + "  "))
        if len(shown) > 1 or hidden:  # first: the only sign of the grid and of the plots it could not show
            entries.insert(0, Text(f"{len(shown)} plot{'s' if len(shown) > 1 else ''}" +
                                   (f", {hidden} more (F filters)" if hidden else "") +
                                   (f" · filter '{self.filter}'" if self.filter else "") +
                                   f" · smoothing {self.smoothing:g}  ", style="dim"))
        rows: list[list[Text]] = [[]]
        for entry in entries:  # the legend wraps between entries, on at most two lines
            if rows[-1] and sum(e.cell_len for e in rows[-1]) + entry.cell_len > width:
                rows.append([])
            rows[-1].append(entry)
        keep = FOOTER_LINES - 1
        if len(rows) > keep:  # say how many entries did not fit rather than drop them silently
            dropped, last = sum(map(len, rows[keep:])), rows[keep - 1]
            while last and sum(e.cell_len for e in last) + len(f"+{dropped} more") > width:
                last.pop()
                dropped += 1
            last.append(Text(f"+{dropped} more", style="dim"))
        lines = [Text.assemble(*row) for row in rows[:keep] if row]
        if self.cursor is not None and shown:
            lines.append(self._readout(shown))
        for line in lines:
            line.truncate(width, overflow="ellipsis")
        return lines

    def _readout(self, shown) -> Text:
        unit = "min" if self.axis == "time" else "step"
        text = Text(f"{unit} {_num(self.cursor)}: ", style="bold")
        for _, curves in shown:
            for c in curves:
                at = self.cursor * 60 + c.start if self.axis == "time" else self.cursor
                point = c.series.at(at, self.axis)
                if point is None:
                    continue
                text.append(c.label + " ", style=RICH_COLOURS.get(c.colour, c.colour))
                if point["exact"]:
                    text.append(_num(point["value"]))
                else:  # a folded stretch of the run: its mean and range
                    text.append(f"≈{_num(point['value'])} [{_num(point['min'])}…{_num(point['max'])}]")
                text.append("  ")
        return text

    # -- the cursor --------------------------------------------------------------------------------
    def action_cursor(self, columns: int) -> None:
        if not len(self._xs):
            return
        lo, hi = self._xs[0], self._xs[-1]
        if self.cursor is None:
            self.cursor = float(hi)
        else:
            col = (hi - lo) / max(1, self.size.width - 8)
            target = self.cursor + columns * col
            ahead = self._xs[self._xs > self.cursor] if columns > 0 else self._xs[self._xs < self.cursor]
            if len(ahead):  # the nearest real point at or past one column's move
                past = ahead[ahead >= target] if columns > 0 else ahead[ahead <= target]
                self.cursor = float((past[0] if columns > 0 else past[-1]) if len(past) else
                                    (ahead[-1] if columns > 0 else ahead[0]))
        self._redraw()

    def action_cursor_edge(self, direction: int) -> None:
        if len(self._xs):
            self.cursor = float(self._xs[-1] if direction > 0 else self._xs[0])
            self._redraw()

    def action_cursor_off(self) -> None:
        if self.cursor is not None:
            self.cursor = None
            self._redraw()

    def _redraw(self) -> None:
        """Draw again from the last state, when the app lets the state be read."""
        if self._source is None:
            return
        with_state = getattr(self.app, "with_state", None)
        if with_state is not None:
            with_state(lambda: self.draw(*self._source))
        else:
            self.draw(*self._source)

    # -- rendering ---------------------------------------------------------------------------------
    def render(self):
        self._plot.theme(self._get_plotext_theme_name(self.app.theme))
        return self.plot_frame(self.size.width, self.size.height, self.app.ansi_theme)

    def frame(self, width: int, height: int) -> Text:
        """The plot and its legend/readout lines at a size, as rich Text."""
        return self.plot_frame(width, height).as_text()

    def plot_frame(self, width: int, height: int, ansi_theme=None) -> PlotFrame:
        """The plot and its legend/readout lines at a size. A plotext failure propagates: the
        app's containment (contained.py) shows it in this pane and keeps its traceback."""
        footer = self.footer[:max(0, height - 4)] if height > 4 else []
        plot_height = max(1, height - len(footer))
        self._plot.plotsize(width, plot_height)
        self._plot._set_size(width, plot_height)  # as textual-plotext's own render does
        if self._one_title is not None:  # plotext drops a title wider than the plot: fit it here
            self._plot.title(self._one_title(width))
        # plotext ends its last line with a newline; the frame's lines become strips in plot_frame.py
        return PlotFrame(self._plot.build().rstrip("\n"), footer, ansi_theme)
