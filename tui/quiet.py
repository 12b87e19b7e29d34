"""A Static that changes only when its content does: `Static.update` always refreshes and
relayouts, and the panes are told to show the same text at every poll."""

from __future__ import annotations

from textual.widgets import Static


class QuietStatic(Static):
    def update(self, content="", *, layout: bool = True) -> None:
        if type(content) is type(self.content) and content == self.content:
            return  # the same text (rich Text compares text and styles): nothing to redraw
        super().update(content, layout=layout)
