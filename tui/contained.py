"""Render errors stay inside their pane.

Textual ends the whole app when a widget raises while rendering (plotext's legend code raises
IndexError on some data). A pane class wrapped by `contained()` instead shows one line naming
the error and keeps retrying on the next refresh; the app, its runs and the keys pressed
meanwhile survive. Errors raised while feeding a pane data (`show`, `draw`) are contained the
same way by `feed()`. Every first occurrence of an error is reported to the app, which keeps
its traceback in the session's folder.
"""

from __future__ import annotations

from typing import Callable

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip

ERROR_STYLE = Style.parse("bold red")
HINT_STYLE = Style.parse("dim")


class Contained:
    """Mixin: render errors become a one-line message in this pane instead of ending the app."""

    pane_error: str | None = None  # set while the last feed failed; cleared by the next good one

    def pane_name(self) -> str:
        return self.id or type(self).__name__

    def error_lines(self) -> tuple[str, str]:
        return (f"⚠ the {self.pane_name()} pane could not be drawn: {self.pane_error}",
                "the app keeps running; the traceback is in the session's folder (runs/sessions/)")

    def render(self):
        if self.pane_error:
            return Text("\n".join(self.error_lines()), style=ERROR_STYLE)
        try:
            return super().render()
        except Exception as exc:
            self._reported(exc)
            return Text("\n".join(self.error_lines_for(exc)), style=ERROR_STYLE)

    def render_lines(self, crop: Region) -> list[Strip]:
        try:
            if not self.pane_error:
                return super().render_lines(crop)
            lines = self.error_lines()
        except Exception as exc:
            self._reported(exc)
            lines = self.error_lines_for(exc)
        return [_line(lines, crop.y + i, crop.x, crop.width) for i in range(crop.height)]

    def error_lines_for(self, exc: Exception) -> tuple[str, str]:
        before, self.pane_error = self.pane_error, describe(exc)
        try:
            return self.error_lines()
        finally:
            self.pane_error = before

    def _reported(self, exc: Exception) -> None:
        report = getattr(self.app, "report_pane_error", None)
        if report is not None:
            report(self, exc)


def describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:200]


def _line(lines: tuple[str, str], y: int, x: int, width: int) -> Strip:
    if y >= len(lines):
        return Strip.blank(width)
    style = ERROR_STYLE if y == 0 else HINT_STYLE
    return Strip([Segment(lines[y], style)]).crop(x, x + width).adjust_cell_length(width)


_classes: dict[type, type] = {}


def contained(widget_class: type) -> type:
    """The same widget class, its render errors contained (isinstance and CSS type names still match)."""
    if issubclass(widget_class, Contained):
        return widget_class
    if widget_class not in _classes:
        _classes[widget_class] = type(widget_class.__name__, (Contained, widget_class),
                                      {"__module__": widget_class.__module__})
    return _classes[widget_class]


def contain_panes(root) -> None:
    """Contain the render errors of every pane under root: urbanrun's own widgets and every
    plotext chart (plotext raises on some data), however the panes are composed."""
    from textual_plotext import PlotextPlot

    for widget in root.query("*"):
        cls = type(widget)
        if not isinstance(widget, Contained) and (isinstance(widget, PlotextPlot)
                                                  or cls.__module__.startswith("urbanrun.tui.")):
            widget.__class__ = contained(cls)  # the same class plus the mixin: nothing else changes


def feed(widget, fn: Callable[[], object]) -> None:
    """Call fn (which gives the widget new data); a failure shows in that widget, not as a crash."""
    try:
        fn()
    except Exception as exc:
        if not isinstance(widget, Contained):
            raise
        widget.pane_error = describe(exc)
        widget.add_class("-pane-error")  # a container hides its children to show the error (app.tcss)
        widget._reported(exc)
        widget.refresh()
        return
    if isinstance(widget, Contained) and widget.pane_error:
        widget.pane_error = None
        widget.remove_class("-pane-error")
        widget.refresh()
