"""The focus model: typed text always goes to the focused text field.

An app key that is a printable character (`l`, `k`, `space`, `/`, `?`) acts only while the
focus is on something that does not take text: the runs table, a plot, the log, a list, the
tabs. While an Input, a TextArea (even a read-only one) or a form control has the focus, the key
is left to it. Every tab lands the focus on its main widget, so there is always a sensible
target for the keys.
"""

from __future__ import annotations

import string

from textual.binding import Binding
from textual.keys import _character_to_key
from textual.widget import Widget
from textual.widgets import DataTable, ListView, OptionList, RichLog, TabbedContent, TabPane, Tabs
from textual_plotext import PlotextPlot

# widgets that take no text: single-letter keys are the app's while one of these has focus
KEY_TARGETS = (DataTable, OptionList, ListView, PlotextPlot, RichLog, Tabs)

# the widget that gets the focus when a tab is shown
MAIN_WIDGET = {"main": "#runs", "gpu": "#gpu-view DataTable", "pad": "#pad-editor", "diag": "#diag-list"}


# Textual's names of the keys that type a character: "a", "K", "space", "slash", "question_mark"…
PRINTABLE_KEYS = frozenset(_character_to_key(c) for c in string.printable if c.isprintable())


def is_printable(key: str) -> bool:
    """A key that types a character (`a`, `space`, `question_mark`), not `ctrl+s`, `escape` or `up`."""
    return len(key) == 1 or key in PRINTABLE_KEYS


def letter_actions(bindings: list[Binding]) -> set[str]:
    """The action names bound to printable keys (their parameters stripped)."""
    return {b.action.split("(")[0] for b in bindings if any(is_printable(k.strip()) for k in b.key.split(","))}


def keys_allowed(focused: Widget | None) -> bool:
    return focused is None or isinstance(focused, KEY_TARGETS)


def main_widget(root: Widget, tab: str) -> Widget | None:
    selector = MAIN_WIDGET.get(tab)
    found = root.query(selector) if selector else None
    if found:
        return found.first()
    pane = root.query(f"#{tab}")
    focusable = [w for w in pane.first().query("*") if w.focusable] if pane else []
    return focusable[0] if focusable else None


class FocusedTabs(TabbedContent):
    """Tabs that show the tab of the widget that HAS the focus. Textual switches to a widget's tab
    when that widget handles its Focus event; a busy widget handles it late, after keys typed at
    once moved the focus on (esc then d: the runs table, then the diagnoses list), and its stale
    event switched the tabs back under the focus."""

    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        focused = self.screen.focused
        if focused is None or event.tab_pane not in focused.ancestors:
            event.stop()
            event.prevent_default()  # TabbedContent's own handler is not called
