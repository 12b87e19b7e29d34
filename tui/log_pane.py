"""The selected run's log: follows new lines (off when you scroll up, on again at the bottom),
search with / and n/N, tqdm carriage-return lines shown as their last frame, tracebacks in red."""

from __future__ import annotations

import re

from rich.text import Text
from textual.geometry import Size
from textual.message import Message
from textual.reactive import Reactive
from textual.widgets import RichLog

from urbanrun.engine.core.state import RunState
from urbanrun.engine.core.text import last_frame

ERROR_RE = re.compile(r"Traceback \(most recent call last\)|^\s*File \"|Error\b|Exception\b|^\s*raise\b|CUDA error|"
                      r"Killed|out of memory", re.I)


class LogPane(RichLog):
    # Every write grows the virtual size, which RichLog declares as a layout change: the whole
    # screen was reflowed and repainted per write. The pane's own size comes from the layout
    # (height 1fr), not from its lines, so a write only moves its scrollbars and repaints it (a
    # scrollbar that appears or goes still relayouts, through its `display`).
    virtual_size = Reactive(Size(0, 0), layout=False)

    def watch_virtual_size(self, size: Size) -> None:
        self._scroll_update(size)

    class FollowChanged(Message):
        """Following was paused or resumed: the status line says it now, not at the next frame."""

        def __init__(self, following: bool) -> None:
            super().__init__()
            self.following = following

    def watch_auto_scroll(self, following: bool) -> None:
        self.post_message(self.FollowChanged(following))

    def __init__(self, **kwargs):
        super().__init__(max_lines=5000, wrap=True, min_width=20, highlight=False, markup=False, auto_scroll=True,
                         **kwargs)  # min_width: wrap at the pane's width, not at RichLog's default 78
        self.run_id: str | None = None
        self.shown_total = 0
        self.texts: list[str] = []
        self.rows: list[int] = []  # the row each kept line starts at, as of the last full rewrite
        self.term = ""
        self.matches: list[int] = []
        self.match_index = -1

    @property
    def following(self) -> bool:
        return self.auto_scroll

    def show(self, run: RunState | None) -> None:
        """Show this run's log, appending only what is new since the last call."""
        if run is None:
            if self.run_id is not None:
                self.clear()
                self.run_id, self.shown_total, self.texts = None, 0, []
                self.write(Text("no run selected: launch one with l", style="dim"))
            return
        if run.id != self.run_id or run.log_lines_total < self.shown_total:
            self.run_id, self.shown_total, self.texts = run.id, 0, []
            self.clear()
        new = run.log_lines_total - self.shown_total
        if new <= 0:
            return
        if self.shown_total == 0:
            self.auto_scroll = True  # a newly shown run: follow it
        fresh = [last_frame(line) for line in list(run.log)[-min(new, len(run.log)):]]
        self.texts = (self.texts + fresh)[-5000:]
        self.shown_total = run.log_lines_total
        # one write for them all: RichLog pays per write (a measure, a virtual size, a refresh),
        # and a replay or a long-unselected run brings thousands of lines at once
        self.write(Text("\n").join(self._styled(line) for line in fresh))

    # following is the user's choice: scrolling up pauses it, reaching the end (or f) resumes it;
    # a resize or a re-wrap never changes it
    def _on_mouse_scroll_up(self, event) -> None:
        self.auto_scroll = False
        super()._on_mouse_scroll_up(event)

    def _on_mouse_scroll_down(self, event) -> None:
        super()._on_mouse_scroll_down(event)
        self.call_after_refresh(self._resume_at_end)

    def action_scroll_up(self) -> None:
        self.auto_scroll = False
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self.auto_scroll = False
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self.auto_scroll = False
        super().action_scroll_home()

    def action_scroll_down(self) -> None:
        super().action_scroll_down()
        self.call_after_refresh(self._resume_at_end)

    def action_page_down(self) -> None:
        super().action_page_down()
        self.call_after_refresh(self._resume_at_end)

    def action_scroll_end(self) -> None:
        self.follow()

    def _resume_at_end(self) -> None:
        if self.scroll_y >= self.max_scroll_y:
            self.auto_scroll = True

    def on_resize(self, event) -> None:
        super().on_resize(event)
        if self.wrap and self.texts:
            self._rewrite()  # wrapped lines were cut for the old width
        elif self.auto_scroll:
            self.call_after_refresh(self.scroll_end, animate=False)

    def set_wrap(self, wrap: bool) -> None:
        self.wrap = wrap
        self._rewrite()

    def _rewrite(self) -> None:
        """Render every kept line again (new width, wrap or search term); following is kept."""
        following = self.auto_scroll
        y = self.scroll_y
        self.clear()
        self.rows = []
        for line in self.texts:
            self.rows.append(len(self.lines))  # where each kept line starts once wrapped (for n/N)
            self.write(self._styled(line), scroll_end=False)
        self.auto_scroll = following
        if following:
            self.call_after_refresh(self.scroll_end, animate=False)
        else:
            self.call_after_refresh(self.scroll_to, y=y, animate=False)

    def _styled(self, line: str) -> Text:
        text = Text(line, style="bold red" if ERROR_RE.search(line) else "")
        if self.term:
            text.highlight_words([self.term], style="black on yellow", case_sensitive=False)
        return text

    def search(self, term: str) -> str:
        self.term = term
        low = term.lower()
        self.matches = [i for i, line in enumerate(self.texts) if low and low in line.lower()]
        if self.matches:  # the view moves to a match: following stops; no match moves nothing
            self.auto_scroll = False
        self._rewrite()
        self.match_index = -1
        return self.next_match(1)

    def next_match(self, direction: int) -> str:
        if not self.matches:
            return f"no match for '{self.term}'" if self.term else "type / to search"
        self.match_index = (self.match_index + direction) % len(self.matches)
        line = self.matches[self.match_index]
        row = self.rows[line] if line < len(self.rows) else line  # wrapped lines take several rows
        self.scroll_to(y=max(0, row - 3), animate=False)
        return f"match {self.match_index + 1}/{len(self.matches)} for '{self.term}' (n/N)"

    def follow(self) -> None:
        self.auto_scroll = True
        self.scroll_end(animate=False)
