"""The selected run's log: follows new lines (off when you scroll up, on again at the bottom),
search with / and n/N, tqdm carriage-return lines shown as their last frame, tracebacks in red."""

from __future__ import annotations

import re

from rich.text import Text
from textual.widgets import RichLog

from urbanrun.engine.core.state import RunState
from urbanrun.engine.core.text import last_frame

ERROR_RE = re.compile(r"Traceback \(most recent call last\)|^\s*File \"|Error\b|Exception\b|^\s*raise\b|CUDA error|"
                      r"Killed|out of memory", re.I)


class LogPane(RichLog):
    def __init__(self, **kwargs):
        super().__init__(max_lines=5000, wrap=False, highlight=False, markup=False, auto_scroll=True, **kwargs)
        self.run_id: str | None = None
        self.shown_total = 0
        self.texts: list[str] = []
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
        at_bottom = self.scroll_offset.y >= self.max_scroll_y - 1
        self.auto_scroll = at_bottom or self.shown_total == 0
        fresh = [last_frame(line) for line in list(run.log)[-min(new, len(run.log)):]]
        self.texts = (self.texts + fresh)[-5000:]
        self.shown_total = run.log_lines_total
        for line in fresh:
            self.write(self._styled(line))

    def _styled(self, line: str) -> Text:
        text = Text(line, style="bold red" if ERROR_RE.search(line) else "")
        if self.term:
            text.highlight_words([self.term], style="black on yellow", case_sensitive=False)
        return text

    def search(self, term: str) -> str:
        self.term = term
        low = term.lower()
        self.matches = [i for i, line in enumerate(self.texts) if low and low in line.lower()]
        self.clear()
        self.auto_scroll = False
        for line in self.texts:
            self.write(self._styled(line))
        self.match_index = -1
        return self.next_match(1)

    def next_match(self, direction: int) -> str:
        if not self.matches:
            return f"no match for '{self.term}'" if self.term else "type / to search"
        self.match_index = (self.match_index + direction) % len(self.matches)
        line = self.matches[self.match_index]
        self.scroll_to(y=max(0, line - 3), animate=False)  # RichLog keeps the same 5000 lines we keep
        return f"match {self.match_index + 1}/{len(self.matches)} for '{self.term}' (n/N)"

    def follow(self) -> None:
        self.auto_scroll = True
        self.scroll_end(animate=False)
