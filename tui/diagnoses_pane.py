"""Diagnoses: what went wrong with which run. Until the diagnosis rules land (cause, evidence,
remedy per failure kind), this pane lists failed and lost runs with their exit status and the
last error lines of their logs, and every warning urbanrun raised (corrupt files, GPU issues)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.state import State

from .log_pane import ERROR_RE, last_frame


class DiagnosesPane(Static):
    def show(self, state: State) -> None:
        text = Text()
        bad = [r for r in state.runs.values() if r.record.get("status") in ("failed", "lost")]
        if not bad and not state.notices:
            text.append("Nothing to diagnose: no run has failed and urbanrun has no warnings.\n", style="green")
            text.append("When a run fails, its exit status and the lines that explain it show here.", style="dim")
        for run in sorted(bad, key=lambda r: r.id, reverse=True):
            rec = run.record
            how = f"signal {rec['signal']}" if rec.get("signal") else f"exit code {rec.get('exit_code')}"
            text.append(f"✖ {run.id}", style="bold red")
            text.append(f"  {rec.get('status')} ({how})")
            if rec.get("diagnosis"):
                text.append(f"\n  {rec['diagnosis']}", style="yellow")
            if rec.get("error"):
                text.append(f"\n  {rec['error']}", style="yellow")
            evidence = [last_frame(line) for line in list(run.log)[-200:] if ERROR_RE.search(line)][-4:]
            for line in evidence:
                text.append(f"\n    {line.strip()[:160]}", style="dim")
            text.append("\n\n")
        if state.notices:
            text.append("Warnings\n", style="bold")
            for notice in list(state.notices)[-20:]:
                text.append(f"  {notice.level}: {notice.text}\n", style="red" if notice.level == "error" else "yellow")
        self.update(text)
