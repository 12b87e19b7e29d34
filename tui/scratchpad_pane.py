"""Scratchpad pane: today's file in an editor (ctrl+s saves atomically, never over someone
else's text), the previous notes read-only beside it."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, TextArea

from engine import scratchpad


class ScratchpadPane(Horizontal):
    def __init__(self, folder: Path, today=None, **kwargs):
        super().__init__(**kwargs)
        self.folder = folder
        self.today = today
        self.path = scratchpad.today_path(folder, today)
        self.base = scratchpad.read(self.path)

    def compose(self) -> ComposeResult:
        previous = scratchpad.previous_path(self.folder, self.today)
        with Vertical(id="pad-today"):
            yield Label(f"today: {_shown(self.path)}  (ctrl+s saves)", id="pad-title")
            yield TextArea(self.base, id="pad-editor", soft_wrap=True, show_line_numbers=False)
        with Vertical(id="pad-previous"):
            yield Label(f"previous: {previous.name if previous else 'none yet'}")
            yield TextArea(scratchpad.read(previous) if previous else "No earlier notes in " + _shown(self.folder),
                           read_only=True, id="pad-prev", soft_wrap=True, show_line_numbers=False)

    def save(self) -> str:
        editor = self.query_one("#pad-editor", TextArea)
        text, note = scratchpad.save(self.path, editor.text, self.base)
        self.base = text
        if text != editor.text:
            editor.load_text(text)
        return f"{note}: {self.path}"


def _shown(path: Path) -> str:
    """A path relative to the working folder when it is inside it (shorter, and the same on every machine)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
