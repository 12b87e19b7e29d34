"""A loss-pane frame as Textual draws it, without the detour through rich's ANSI decoder and
Textual's line wrapping.

plotext gives its plot as ANSI text, every line already the pane's width. Handed to Textual as
rich Text (`Text.from_ansi`), each frame was decoded by rich (an ANSI parser in Python), made into
Content, then split, measured and wrapped line by line: together as much CPU as plotext's own
build. Here the ANSI is split by one regular expression (plotext writes each coloured run as its
codes, its characters, a reset), each distinct code string is decoded once by rich and kept, and
every line is drawn as Content draws a line that needs no wrapping: the same segments, the same
styles and text offsets. With a text selection in the pane (rare), or lines wider than the pane,
the frame is drawn the general way (`as_text`).
"""

from __future__ import annotations

import re

from rich.segment import Segment
from rich.text import Text
from textual.content import Content, Span
from textual.strip import Strip
from textual.style import Style
from textual.visual import RenderOptions, Visual

SGR = re.compile(r"(\x1b\[[0-9;]*m)")
RESET = "\x1b[0m"

_styles: dict[tuple[str, object], Style] = {}  # (codes, ANSI theme) -> the style rich and Textual make of them


def _style_of(codes: str, theme) -> Style:
    key = (codes, theme)
    style = _styles.get(key)
    if style is None:
        rich_style = Text.from_ansi(codes + "x").spans[0].style  # rich's own reading of the codes
        style = _styles[key] = Style.from_rich_style(rich_style, theme)
    return style


def _content(line: str, theme) -> Content:
    """One plotext line as Content: its coloured runs become spans."""
    parts = SGR.split(line)
    if len(parts) == 1:
        return Content(line)
    text, spans, codes, at = [], [], "", 0
    for i, part in enumerate(parts):
        if i % 2:  # a code
            codes = "" if part == RESET else codes + part
        elif part:
            if codes:
                spans.append(Span(at, at + len(part), _style_of(codes, theme)))
            text.append(part)
            at += len(part)
    return Content("".join(text), spans)


class PlotFrame(Visual):
    """plotext's ANSI lines, then our own lines (the legend, the cursor readout) as rich Text."""

    def __init__(self, plot: str, footer: list[Text], theme=None):
        self.plot_lines = plot.split("\n") if plot else []
        self.footer = footer
        self.theme = theme
        self._lines: list[Content] | None = None

    @property
    def plain(self) -> str:
        return self.as_text().plain

    def as_text(self) -> Text:
        """The frame as rich Text (what Textual was handed before)."""
        text = Text.from_ansi("\n".join(self.plot_lines))
        for line in self.footer:
            text.append("\n")
            text.append_text(line)
        return text

    def lines(self) -> list[Content]:
        if self._lines is None:
            self._lines = [_content(line, self.theme) for line in self.plot_lines] + \
                          [Content.from_rich_text(line) for line in self.footer]
        return self._lines

    def render_strips(self, width: int, height: int | None, style: Style, options: RenderOptions) -> list[Strip]:
        lines = self.lines()
        if options.selection is not None or options.post_style is not None or any(
                line.cell_length > width or "\t" in line.plain for line in lines):
            return Content.from_rich_text(self.as_text()).render_strips(width, height, style, options)
        if height is not None:
            lines = lines[:height]
        strips = []
        for y, line in enumerate(lines):  # as Content's _FormattedLine.to_strip draws a left-aligned line
            segments, x = [], 0
            for text, text_style in line.render(style, end="", parse_style=options.get_style):
                segments.append(Segment(text, (style + text_style).rich_style_with_offset(x, y)))
                x += len(text)
            strips.append(Strip(segments, line.cell_length))
        return strips

    def get_optimal_width(self, rules, container_width: int) -> int:
        return max((line.cell_length for line in self.lines()), default=0)

    def get_height(self, rules, width: int) -> int:
        return len(self.lines())

