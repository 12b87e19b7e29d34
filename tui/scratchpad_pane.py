"""Scratchpad pane: today's file in an editor (ctrl+s saves atomically and merges what the
auto-log or another agent appended meanwhile; it reloads by itself while you have no unsaved
edits), and, read-only beside it, the coordinator's latest notes and your previous ones, with
the runs they mention that are not finished."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, TextArea

from urbanrun.engine.notes import scratchpad


class ScratchpadPane(Horizontal):
    def __init__(self, settings: scratchpad.Settings, store=None, today=None, **kwargs):
        super().__init__(**kwargs)
        self.settings = settings
        self.store = store
        self.today = today
        self.path = scratchpad.today_path(settings, today)
        self.base = scratchpad.read(self.path)
        self._mtime = self._disk_mtime()

    def compose(self) -> ComposeResult:
        info = scratchpad.show(self.settings, self.store, self.today) if self.store is not None else None
        previous = scratchpad.previous_path(self.settings.root / self.settings.role, self.today)
        coordinator = scratchpad.latest_path(self.settings.root / self.settings.coordinator)
        with Vertical(id="pad-today"):
            yield Label(f"today: {_shown(self.path)}  (ctrl+s saves)", id="pad-title")
            yield TextArea(self.base, id="pad-editor", soft_wrap=True, show_line_numbers=False)
        with Vertical(id="pad-previous"):
            notes = []
            if info and info["open_runs"]:
                notes.append("Runs mentioned that are not finished:\n" + "\n".join(
                    f"  {r['id']}  {r['status']}" for r in info["open_runs"]) + "\n")
            notes.append(f"── coordinator: {coordinator.name if coordinator else 'no notes found'} ──\n"
                         + scratchpad.read(coordinator))
            notes.append(f"── previous: {previous.name if previous else 'no earlier notes'} ──\n"
                         + scratchpad.read(previous))
            yield Label(f"read-only: {_shown(self.settings.root)}")
            yield TextArea("\n".join(notes), read_only=True, id="pad-prev", soft_wrap=True, show_line_numbers=False)

    def _disk_mtime(self) -> float:
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def refresh_from_disk(self) -> str | None:
        """Reload today's file when it changed on disk and the editor has no unsaved edits."""
        mtime = self._disk_mtime()
        if mtime == self._mtime:
            return None
        self._mtime = mtime
        editor = self.query_one("#pad-editor", TextArea)
        if editor.text == self.base:
            self.base = scratchpad.read(self.path)
            editor.load_text(self.base)
            editor.move_cursor(editor.document.end)
            return None
        return "today's notes changed on disk (auto-log or another agent); ctrl+s merges them with your edits"

    def save(self) -> str:
        editor = self.query_one("#pad-editor", TextArea)
        text, note = scratchpad.save(self.path, editor.text, self.base)
        self.base = text
        self._mtime = self._disk_mtime()
        if text != editor.text:
            editor.load_text(text)
        return f"{note}: {_shown(self.path)}"


def _shown(path: Path) -> str:
    """A path relative to the working folder when it is inside it (shorter, and the same on every machine)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
