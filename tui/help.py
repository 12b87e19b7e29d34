"""The key help, generated from the bindings themselves so that it cannot drift from them: one
section a pane or dialog, each key as the footer shows it, with its longer explanation."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
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
        ("Curves (tab to the plot; ←/→ work from the runs table too)", LossPane.BINDINGS),
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


def help_text(app, app_bindings) -> Group:
    parts = [Text.assemble(("urbanrun keys", "bold"),
                           ("  ctrl+p: every action by name. In a text field every printable key types; "
                            "esc leaves it.", "dim"))]
    for title, bindings in sections(app_bindings):
        table = Table(box=None, show_header=False, padding=(0, 1), expand=True)
        table.add_column(width=10, no_wrap=True, style="bold")
        table.add_column(ratio=1)
        for binding in Binding.make_bindings(bindings):
            table.add_row(app.get_key_display(binding), binding.tooltip or binding.description)
        parts += [Text(f"\n{title}", style="bold cyan"), table]
    return Group(*parts)
