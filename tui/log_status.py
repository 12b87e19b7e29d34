"""The log's status line: a search result or an error (kept until the user acts), the batch
progress of the run, and whether the log follows new lines. One row: what does not fit is
shortened in a fixed order (the follow hint, the rate, the progress, then the note is cut with …),
never cut at the edge mid-word; whether the log follows is always said."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text

from .quiet import QuietStatic

GAP = "  "


def fit_status(note: str | None, progress: tuple[str, str] | None, following: bool | None, width: int) -> str:
    """The line for a `width`-cell row. `progress`: (with its rate, without); `following`: None when
    no run is shown (nothing to follow). A width of 0 (not laid out yet): the whole line."""
    note = _one_line(note)  # one row: an error's own line breaks become spaces
    follow = (None, None) if following is None else \
        ("following", "following") if following else ("paused (f to follow)", "paused (f)")
    full, bare = (_one_line(p) for p in progress or (None, None))
    tries = [(note, full, follow[0]), (note, full, follow[1]), (note, bare, follow[1]), (note, None, follow[1])]
    for parts in tries:
        line = GAP.join(p for p in parts if p)
        if width <= 0 or cell_len(line) <= width:
            return line
    tail = follow[1] or ""
    room = width - cell_len(tail) - (len(GAP) if tail else 0)
    if note and room >= 4:  # enough for a word and …: the note cut, the follow state whole
        return GAP.join(p for p in (_cut(note, room), tail) if p)
    return _cut(tail or note or "", width)


def _one_line(text: str | None) -> str | None:
    return " ".join(text.split()) if text else None


def _cut(text: str, width: int) -> str:
    shown = Text(text, no_wrap=True)
    shown.truncate(width, overflow="ellipsis")
    return shown.plain


class LogStatus(QuietStatic):
    """One row under the log (app.tcss: height 1); refitted when its width changes."""

    parts: tuple = (None, None, None)

    def show(self, note: str | None, progress: tuple[str, str] | None, following: bool | None) -> None:
        self.parts = (note, progress, following)
        self._refit()

    def set_following(self, following: bool) -> None:
        if self.parts[2] is not None:  # a run is shown: its log's follow state
            self.show(self.parts[0], self.parts[1], following)

    def _refit(self) -> None:
        self.update(fit_status(*self.parts, self.content_size.width))

    def on_resize(self) -> None:
        self._refit()
