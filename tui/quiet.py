"""A Static that changes only when its content does: `Static.update` always refreshes and
relayouts, and the panes are told to show the same text at every poll.

A relayout reflows and repaints the whole screen (tens of ms): it is asked for only when the
new content changes this widget's size. A fixed-size bar (the top bar, the log's status line;
the GPU summary sets its height itself) is repainted alone; an auto-height one (the selected
run's summary) relayouts when its text takes another number of lines at its width."""

from __future__ import annotations

from textual.widgets import Static


class QuietStatic(Static):
    def update(self, content="", *, layout: bool = True) -> None:
        if type(content) is type(self.content) and content == self.content:
            return  # the same text (rich Text compares text and styles): nothing to redraw
        super().update(content, layout=False)
        if layout and self._resized_by_content():
            self.refresh(layout=True)

    def _resized_by_content(self) -> bool:
        height, width = self.styles.height, self.styles.width
        if width is not None and width.is_auto:
            return True
        if height is not None and not height.is_auto:
            return False  # a fixed height (a width that is not auto follows the container)
        shown = self.content_size
        if not shown.width or not self.parent:
            return True  # not laid out yet (or hidden): let the layout decide
        return self.get_content_height(self.parent.size, self.app.size, shown.width) != shown.height
