"""Diagnoses: for every run with one, the cause, the evidence lines and the remedies (R on a
selected run relaunches it with a remedy applied); then urbanrun's own warnings."""

from __future__ import annotations

from rich.text import Text

from urbanrun.engine.core.state import State

from .quiet import QuietStatic

STYLE = {"error": ("✖", "bold red"), "warning": ("⚠", "bold yellow"), "info": ("·", "bold")}


def run_diagnoses(run) -> list[dict]:
    return run.diagnoses or run.record.get("diagnoses") or []


class DiagnosesPane(QuietStatic):
    def show(self, state: State) -> None:
        text = Text()
        runs = [r for r in state.runs.values() if run_diagnoses(r)]
        if not runs and not state.notices:
            text.append("Nothing to diagnose: no run has failed or looks sick, and urbanrun has no warnings.\n",
                        style="green")
            text.append("When a run fails (CUDA OOM, device mismatch, edge_index dtype, NCCL, host OOM, a swallowed "
                        "error, …) or leaks memory, hangs or diverges, the cause, evidence and remedy show here.",
                        style="dim")
        for run in sorted(runs, key=lambda r: r.id, reverse=True):
            rec = run.record
            how = f"signal {rec['signal']}" if rec.get("signal") else f"exit code {rec.get('exit_code')}"
            text.append(f"{run.id}", style="bold")
            text.append(f"  {rec.get('status')} ({how})" + (f"  ← relaunch of {rec['parent']}: {rec.get('recovery')}"
                                                             if rec.get("parent") else "") + "\n")
            for d in run_diagnoses(run):
                glyph, style = STYLE.get(d.get("severity"), ("-", ""))
                text.append(f"  {glyph} {d.get('kind')}: ", style=style)
                text.append(f"{d.get('summary')}\n")
                for line in d.get("evidence", [])[:4]:
                    text.append(f"      | {line[:200]}\n", style="dim")
                for remedy in d.get("remedies", []):
                    text.append(f"      → {remedy}\n", style="cyan")
            changes = rec.get("changes_since_good")
            if changes:
                text.append("  what changed: ", style="bold magenta")
                text.append(f"{changes.get('headline')}\n")
                for c in changes.get("commits", [])[:5]:
                    text.append(f"      {c['commit']} {c['date'][:10]} {c['subject'][:70]} ({c['author']})\n", style="dim")
                for area, paths in changes.get("files", {}).items():
                    text.append(f"      {area}: {', '.join(paths[:5])}\n", style="dim")
                for name, (old, new) in changes.get("params", {}).items():
                    text.append(f"      {name}: {old} → {new}\n", style="dim")
            text.append("  R: relaunch with a remedy applied\n\n", style="dim")
        if state.notices:
            text.append("Warnings\n", style="bold")
            for notice in list(state.notices)[-20:]:
                text.append(f"  {notice.level}: {notice.text}\n", style="red" if notice.level == "error" else "yellow")
        self.update(text)
