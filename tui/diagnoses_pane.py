"""Diagnoses: a list of the runs with one (newest first) and, for the highlighted run, the cause,
the evidence lines, the remedies and what changed since its last good run; then urbanrun's own
warnings. `R` relaunches the highlighted run with a remedy, where one applies to its cause."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from urbanrun.engine.core.state import State

from .formatting import cut
from .quiet import QuietStatic

STYLE = {"error": ("✖", "bold red"), "warning": ("⚠", "bold yellow"), "info": ("·", "bold")}


def run_diagnoses(run) -> list[dict]:
    return run.diagnoses or run.record.get("diagnoses") or []


class DiagnosesPane(Horizontal):
    def __init__(self, remedy_note=None, **kwargs):
        super().__init__(**kwargs)
        self.remedy_note = remedy_note  # run -> "" when R applies, else why not (the app knows the recipes)
        self._ids: list[str] = []
        self._lines: list[Text] = []
        self._state: State | None = None

    def compose(self) -> ComposeResult:
        yield OptionList(id="diag-list")
        with VerticalScroll(id="diag-scroll"):
            yield QuietStatic(id="diag-detail")  # redrawn only when the text changes

    @property
    def selected(self) -> str | None:
        """The run whose diagnosis is shown."""
        index = self.query_one("#diag-list", OptionList).highlighted
        return self._ids[index] if index is not None and index < len(self._ids) else None

    def show(self, state: State) -> None:
        self._state = state
        ids = sorted((r.id for r in state.runs.values() if run_diagnoses(r)), reverse=True)
        lines = [_headline(state.runs[i]) for i in ids]
        options = self.query_one("#diag-list", OptionList)
        if ids != self._ids or lines != self._lines:  # a run got a diagnosis, or a worse one
            keep = self.selected
            self._ids, self._lines = ids, lines
            options.clear_options()
            options.add_options([Option(line, id=i) for i, line in zip(ids, lines)])
            if ids:
                options.highlighted = ids.index(keep) if keep in ids else 0
        self._show_detail()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show_detail()  # the event goes on to the app: whether R applies to this run

    def _show_detail(self) -> None:
        state = self._state
        if state is None:
            return
        text = Text()
        run = state.runs.get(self.selected or "")
        if run is None:
            text.append("Nothing to diagnose: no run has failed or looks sick.\n", style="green")
            text.append("When a run fails (CUDA OOM, device mismatch, edge_index dtype, NCCL, host OOM, a swallowed "
                        "error, …) or leaks memory, hangs or diverges, the cause, evidence and remedy show here.\n\n",
                        style="dim")
        else:
            _describe(text, run, self.remedy_note(run) if self.remedy_note else None)
        if state.notices:
            text.append("urbanrun's warnings\n", style="bold")
            for notice in list(state.notices)[-20:]:
                text.append(f"  {notice.level}: {notice.text}\n", style="red" if notice.level == "error" else "yellow")
        self.query_one("#diag-detail", QuietStatic).update(text)


def _headline(run) -> Text:
    worst = sorted(run_diagnoses(run), key=lambda d: {"error": 0, "warning": 1}.get(d.get("severity"), 2))[0]
    glyph, style = STYLE.get(worst.get("severity"), ("-", ""))
    return Text.assemble((f"{glyph} ", style), run.id.split("-", 2)[-1], (f"  {worst.get('kind')}", "dim"))


def _describe(text: Text, run, why_not: str | None) -> None:
    rec = run.record
    how = f"signal {rec['signal']}" if rec.get("signal") else f"exit code {rec.get('exit_code')}"
    text.append(f"{run.id}", style="bold")
    text.append(f"  {rec.get('status')}" + (f" ({how})" if rec.get("ended") else "")
                + (f"  ← relaunch of {rec['parent']}: {rec.get('recovery')}" if rec.get("parent") else "") + "\n")
    for d in run_diagnoses(run):
        glyph, style = STYLE.get(d.get("severity"), ("-", ""))
        text.append(f"  {glyph} {d.get('kind')}: ", style=style)
        text.append(f"{d.get('summary')}\n")
        for line in d.get("evidence", [])[:4]:
            text.append(f"      | {cut(line, 200)}\n", style="dim")
        for remedy in d.get("remedies", []):
            text.append(f"      → {remedy}\n", style="cyan")
    changes = rec.get("changes_since_good")
    if changes:
        text.append("  what changed: ", style="bold magenta")
        text.append(f"{changes.get('headline')}\n")
        for c in changes.get("commits", [])[:5]:
            text.append(f"      {c['commit']} {c['date'][:10]} {cut(c['subject'], 70)} ({c['author']})\n", style="dim")
        for area, paths in changes.get("files", {}).items():
            text.append(f"      {area}: {', '.join(paths[:5])}\n", style="dim")
        for name, (old, new) in changes.get("params", {}).items():
            text.append(f"      {name}: {old} → {new}\n", style="dim")
    if why_not is not None:
        text.append("  R: relaunch it with a remedy applied\n\n" if not why_not else f"  no relaunch remedy: {why_not}\n\n",
                    style="dim")
