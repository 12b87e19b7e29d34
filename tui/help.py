"""The key help, generated from the bindings themselves so that it cannot drift from them: one
section a pane or dialog, each key as the footer shows it, with its longer explanation."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding


def sections(app_bindings) -> list[tuple[str, list]]:
    from .compare import CompareScreen
    from .dialogs import ConfirmKill, ConfirmScreen, HelpScreen, PromptScreen, RemedyScreen, SummaryScreen
    from .gpu_pane import GpuView
    from .launch_form import LaunchForm, launch_keys
    from .loss_pane import LossPane
    from .runs_table import RunsTable

    return [
        ("Runs view, GPU, scratchpad, diagnoses (while the focus is not in a text field)", app_bindings),
        ("Runs table", RunsTable.BINDINGS),
        ("Curves (tab to the plot)", LossPane.BINDINGS),
        ("GPU view", GpuView.BINDINGS),
        ("Launch form", LaunchForm.BINDINGS + launch_keys()),
        ("Stop a run", ConfirmKill.BINDINGS),
        ("Questions (save as defaults)", ConfirmScreen.BINDINGS),
        ("Compare", CompareScreen.BINDINGS),
        ("Relaunch with a remedy", RemedyScreen.BINDINGS),
        ("Import", PromptScreen.BINDINGS),
        ("Session summary (on quit)", SummaryScreen.BINDINGS),
        ("This help", HelpScreen.BINDINGS),
    ]


def help_text(app, app_bindings) -> Text:
    text = Text()
    text.append("urbanrun keys", style="bold")
    text.append("  (ctrl+p: every action by name; in a text field every printable key types, esc leaves it)\n",
                style="dim")
    for title, bindings in sections(app_bindings):
        text.append(f"\n{title}\n", style="bold cyan")
        for binding in Binding.make_bindings(bindings):
            key = app.get_key_display(binding)
            text.append(f"  {key:<12}", style="bold")
            text.append(f"{binding.tooltip or binding.description}\n")
    return text
