"""Messages from the app's thread workers to the UI thread. Workers never touch widgets: they
post one of these (thread-safe), and the handler, on the UI thread, changes what is shown."""

from __future__ import annotations

from textual.message import Message


class Polled(Message):
    """One poll's events, already reduced into the source's state by the poll."""

    def __init__(self, events: list, summary: dict | None = None) -> None:
        super().__init__()
        self.events = events
        self.summary = summary  # the selected run's summary, when the poll thread computed it anew


class CommandDone(Message):
    """A command (launch, kill, relaunch, import, summary) finished: what to tell the user, and a
    run to select once its row exists."""

    def __init__(self, text: str, severity: str = "information", select: str | None = None,
                 then_exit: bool = False) -> None:
        super().__init__()
        self.text, self.severity, self.select, self.then_exit = text, severity, select, then_exit


class SummaryDrafted(Message):
    """The end-of-session summary, drafted from today's records in a worker."""

    def __init__(self, draft: str) -> None:
        super().__init__()
        self.draft = draft


class PadSavedOnExit(Message):
    """The scratchpad's unsaved edits, saved on the way out: what to say after the app is gone."""

    def __init__(self, note: str) -> None:
        super().__init__()
        self.note = note
