"""Scratchpad pane: today's file in an editor (ctrl+s saves atomically and merges what the
auto-log or another agent appended meanwhile; it reloads by itself while you have no unsaved
edits), and, read-only beside it, the coordinator's latest notes and your previous ones, with
the runs they mention that are not finished.

Every file access (loading, the check for changes on disk, the save under the folder's lock)
runs in a thread worker; the results come back as messages, so typing never waits for a disk
or for another writer's lock."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Label, TextArea

from urbanrun.engine.notes import scratchpad


class PadRead(Message):
    """Today's file as it is on disk (mtime None: the file is as last seen, nothing was read)."""

    def __init__(self, text: str | None, mtime: int, notes: str | None = None) -> None:
        super().__init__()
        self.text, self.mtime, self.notes = text, mtime, notes


class PadUnreadable(Message):
    """Today's or the team's notes could not be read (over the size urbanrun reads, a FIFO, no permission)."""

    def __init__(self, why: str) -> None:
        super().__init__()
        self.why = why


class PadSaved(Message):
    def __init__(self, sent: str, text: str, note: str, mtime: int) -> None:
        super().__init__()
        self.sent, self.text, self.note, self.mtime = sent, text, note, mtime


class ScratchpadPane(Horizontal):
    def __init__(self, settings: scratchpad.Settings, store=None, today=None, **kwargs):
        super().__init__(**kwargs)
        self.settings = settings
        self.store = store
        self.today = today
        self.path = scratchpad.today_path(settings, today)
        self.base: str | None = None  # the text last loaded or saved; None until the first load
        self._mtime = -1
        self._saving = False

    def compose(self) -> ComposeResult:
        with Vertical(id="pad-today"):
            yield Label(f"today: {_shown(self.path)}  (ctrl+s saves)", id="pad-title")
            # read-only until today's file is loaded: nothing typed can be overwritten by the load
            yield TextArea("", id="pad-editor", soft_wrap=True, show_line_numbers=False, read_only=True)
        with Vertical(id="pad-previous"):
            yield Label(f"read-only: {_shown(self.settings.root)}")
            yield TextArea("reading the team's notes…", read_only=True, id="pad-prev", soft_wrap=True,
                           show_line_numbers=False)

    def on_mount(self) -> None:
        self._read(with_notes=True)

    @work(thread=True, group="pad-read", exclusive=True)
    def _read(self, with_notes: bool = False) -> None:
        mtime = _mtime_of(self.path)
        try:
            notes = self._notes() if with_notes else None
            if mtime == self._mtime and notes is None:
                return  # unchanged on disk: nothing to send
            self.post_message(PadRead(scratchpad.read(self.path), mtime, notes))
        except OSError as exc:  # the editor stays read-only: nothing typed could overwrite the file
            self._mtime = mtime  # said once, not at every look
            self.post_message(PadUnreadable(f"{exc.filename or self.path}: {exc.strerror or exc}"))

    def _notes(self) -> str:
        info = scratchpad.show(self.settings, self.store, self.today) if self.store is not None else None
        previous = scratchpad.previous_path(self.settings.root / self.settings.role, self.today)
        coordinator = scratchpad.latest_path(self.settings.root / self.settings.coordinator)
        notes = []
        if info and info["open_runs"]:
            notes.append("Runs mentioned that are not finished:\n" + "\n".join(
                f"  {r['id']}  {r['status']}" for r in info["open_runs"]) + "\n")
        notes.append(f"── coordinator: {coordinator.name if coordinator else 'no notes found'} ──\n"
                     + scratchpad.read(coordinator))
        notes.append(f"── previous: {previous.name if previous else 'no earlier notes'} ──\n"
                     + scratchpad.read(previous))
        return "\n".join(notes)

    def on_pad_unreadable(self, message: PadUnreadable) -> None:
        self.app.notify(f"the scratchpad cannot be read ({message.why}); it is not edited here until it can be",
                        severity="error", timeout=10)

    def on_pad_read(self, message: PadRead) -> None:
        if message.notes is not None:
            self.query_one("#pad-prev", TextArea).load_text(message.notes)
        if self._saving or message.mtime == self._mtime:
            return  # a save in flight reports the file itself
        self._mtime = message.mtime
        editor = self.query_one("#pad-editor", TextArea)
        if self.base is None or editor.text == self.base:
            first = self.base is None
            self.base = message.text
            editor.load_text(message.text)
            if not first:  # a reload: to the end, where the new lines are
                editor.move_cursor(editor.document.end)
            editor.read_only = False
        else:
            self.app.notify("today's notes changed on disk (auto-log or another agent); ctrl+s merges them "
                            "with your edits", severity="warning")

    def refresh_from_disk(self) -> None:
        """Look for changes on disk (in a worker): reloaded when the editor has no unsaved edits."""
        if not self._saving:
            self._read()

    def unsaved(self) -> tuple[str, str] | None:
        """(the editor's text, the text it was edited from) while it holds edits not yet on disk."""
        if self.base is None:
            return None
        text = self.query_one("#pad-editor", TextArea).text
        return (text, self.base) if text != self.base else None

    def save(self) -> None:
        """Save in a worker (it waits for the folder's lock); the note comes back as a message."""
        if self.base is None or self._saving:
            self.app.notify("the scratchpad is still being read or saved; press ctrl+s again", severity="warning")
            return
        self._saving = True
        self._save(self.query_one("#pad-editor", TextArea).text, self.base)

    @work(thread=True, group="pad-save")
    def _save(self, text: str, base: str) -> None:
        try:
            saved, note = scratchpad.save(self.path, text, base)
            self.post_message(PadSaved(text, saved, f"{note}: {_shown(self.path)}", _mtime_of(self.path)))
        except OSError as exc:
            self.post_message(PadSaved(text, base, f"not saved: {exc}", self._mtime))

    def on_pad_saved(self, message: PadSaved) -> None:
        self._saving = False
        self._mtime = message.mtime
        editor = self.query_one("#pad-editor", TextArea)
        if editor.text == message.sent:  # nothing typed during the save: show what the file holds
            self.base = message.text
            if message.text != editor.text:
                editor.load_text(message.text)
        else:  # typed meanwhile: keep every keystroke; the next save merges from what was sent
            self.base = message.sent
        self.app.notify(message.note, severity="error" if message.note.startswith("not saved") else "information")


def _mtime_of(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _shown(path: Path) -> str:
    """A path relative to the working folder when it is inside it (shorter, and the same on every machine)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
