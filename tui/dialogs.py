"""Small modal screens: confirm a kill (y/n), the key help, a one-line prompt, remedies, the summary."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from urbanrun.engine import platform


class ConfirmKill(ModalScreen):
    BINDINGS = [Binding("y", "answer(True)", "yes"), Binding("n", "answer(False)", "no"),
                Binding("escape", "answer(False)", "no")]

    def __init__(self, run_id: str, grace: float):
        super().__init__()
        self.run_id, self.grace = run_id, grace

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Label(f"Stop run {self.run_id}?")
            yield Static(f"{platform.STOP_NAME} to its whole process tree, {platform.KILL_NAME} to what is left "
                         f"after {self.grace:g} s.\n"
                         "[b]y[/b] stop it   [b]n[/b] keep it running")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ConfirmScreen(ModalScreen):
    """A yes/no question; dismisses with True or False."""

    BINDINGS = [Binding("y", "answer(True)", "yes"), Binding("n", "answer(False)", "no"),
                Binding("escape", "answer(False)", "no")]

    def __init__(self, question: str, detail: str = ""):
        super().__init__()
        self.question, self.detail = question, detail

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Label(self.question)
            yield Static(Text.assemble(f"{self.detail}\n", ("y", "bold"), " yes   ", ("n", "bold"), " no"))

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class HelpScreen(ModalScreen):
    """Every key by pane, generated from the bindings (see help.py)."""

    BINDINGS = [Binding("escape", "app.pop_screen", "close"), Binding("question_mark", "app.pop_screen", "close"),
                Binding("q", "app.pop_screen", "close")]

    def __init__(self, text):
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        from textual.containers import VerticalScroll

        with VerticalScroll(id="help-dialog"):
            yield Static(self.text, id="help-text")


class PromptScreen(ModalScreen):
    """One line of input (a path to import); dismisses with the text or None."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str, placeholder: str = ""):
        super().__init__()
        self.title_text, self.placeholder = title, placeholder

    def compose(self) -> ComposeResult:
        from textual.widgets import Input

        with Vertical(id="confirm-dialog"):
            yield Label(self.title_text)
            yield Input(placeholder=self.placeholder, id="prompt")

    def on_input_submitted(self, event) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class RemedyScreen(ModalScreen):
    """Pick a remedy to relaunch a run with; dismisses with (change, text) or None."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, run_id: str, options: list[tuple[dict, str]]):
        super().__init__()
        self.run_id, self.options = run_id, options

    def compose(self) -> ComposeResult:
        from textual.widgets import OptionList

        with Vertical(id="confirm-dialog"):
            yield Label(f"Relaunch {self.run_id} with:")
            yield OptionList(*[text for _, text in self.options], id="remedies")

    def on_option_list_option_selected(self, event) -> None:
        self.dismiss(self.options[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)


class SummaryScreen(ModalScreen):
    """The end-of-session summary, drafted from today's runs, editable; ctrl+s writes it to
    today's scratchpad with its <!-- SUMMARY --> line, escape quits without writing."""

    BINDINGS = [Binding("ctrl+s", "write", "write summary"),
                Binding("escape", "skip", "quit, no summary", tooltip="quit without writing the summary")]

    def __init__(self, draft: str):
        super().__init__()
        self.draft = draft

    def compose(self) -> ComposeResult:
        from textual.widgets import TextArea

        with Vertical(id="summary-dialog"):
            yield Label("Session summary for today's scratchpad — edit it; ctrl+s writes it, "
                        "esc quits without writing it", id="summary-title")
            yield TextArea(self.draft, id="summary-text", soft_wrap=True)

    def action_write(self) -> None:
        from textual.widgets import TextArea

        self.dismiss(self.query_one("#summary-text", TextArea).text)

    def action_skip(self) -> None:
        self.dismiss(None)
