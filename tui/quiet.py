"""A Static that changes only when its content does: `Static.update` always refreshes and
relayouts, and the panes are told to show the same text at every poll.

A relayout reflows and repaints the whole screen (tens of ms); it is asked for only when the
new content can change this widget's size (an auto width or height). A fixed-size bar (the top
bar, the log's status line; the GPU summary sets its height itself) is repainted alone."""

from __future__ import annotations

from textual.widgets import Static


class QuietStatic(Static):
    def update(self, content="", *, layout: bool = True) -> None:
        if type(content) is type(self.content) and content == self.content:
            return  # the same text (rich Text compares text and styles): nothing to redraw
        super().update(content, layout=layout and self.sized_by_content)

    @property
    def sized_by_content(self) -> bool:
        height, width = self.styles.height, self.styles.width
        return height is None or height.is_auto or (width is not None and width.is_auto)
