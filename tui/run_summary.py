"""The selected run's summary, as `urbanrun status RUN --json` gives it: progress (step and epoch
of their totals, fraction), rate, ETA, the primary metric's last and best with their steps, the
GPU peak, the diagnoses, the verdict and the first next action.

The summary is computed by the engine's one function (engine/session/summary.py, through the
source's `summary(run_id)`) in the poll thread, never here and never on the UI thread: this pane
only lays out the dict it is given, and shows nothing of a run it was not given the summary of."""

from __future__ import annotations

import shlex

from rich.text import Text

from .formatting import duration, num, whole
from .quiet import QuietStatic

VERDICT_STYLES = {"running-healthy": "green", "running-sick": "bold yellow", "ended-ok": "green",
                  "ended-failed": "bold red"}


class RunSummary(QuietStatic):
    """Up to three lines: progress, results, verdict and what to do next."""

    summary: dict | None = None  # the summary shown (tests compare it with `urbanrun status`)

    def show(self, run_id: str | None, summary: dict | None) -> None:
        if summary is not None and summary.get("id") == run_id:
            self.summary = summary
            self.update(summary_text(summary))
        else:  # no run, or its summary is still being computed: never another run's figures
            self.summary = None
            self.update(Text("summary: computing…" if run_id else "", style="dim"))


def summary_text(s: dict) -> Text:
    if s.get("error"):
        return Text(f"summary: {s['error']}", style="red")
    p = s.get("progress") or {}
    progress = [f"step {whole(p.get('step'))}" + (f"/{whole(p['total_steps'])}" if p.get("total_steps") else "")]
    if p.get("epoch") is not None:
        progress.append(f"epoch {whole(p['epoch'])}" + (f"/{whole(p['total_epochs'])}" if p.get("total_epochs") else ""))
    if p.get("fraction") is not None:
        progress.append(f"{p['fraction']:.0%}")
    if p.get("steps_per_second"):
        progress.append(f"{num(p['steps_per_second'])} steps/s")
    if p.get("eta_seconds") is not None:
        progress.append(f"ETA {duration(p['eta_seconds'])}")
    progress.append(f"time {duration(p.get('elapsed_seconds'))}")

    m = s.get("metric")
    results = [f"{m['name']} {num(m['last'])} @{whole(m['last_step'])}, best {num(m['best'])} @{whole(m['best_step'])}"
               if m else "no metric yet"]
    peak = s.get("gpu_peak_mb")
    results.append(f"GPU peak {peak / 1024:.1f} GiB" if peak else "GPU peak -")
    count = len(s.get("diagnoses") or [])
    results.append(f"{count} diagnos{'is' if count == 1 else 'es'}")

    text = Text(" · ".join(progress) + "\n" + " · ".join(results) + " · ")
    text.append(s.get("verdict", "?"), style=VERDICT_STYLES.get(s.get("verdict"), ""))
    actions = s.get("next_actions") or []
    if actions:
        text.append("\nnext: ", style="bold")
        text.append(action_text(actions[0]))
        if len(actions) > 1:
            text.append(f"  (+{len(actions) - 1} more: urbanrun status {s['id']})", style="dim")
    return text


def action_text(action: dict) -> str:
    """One next action as the command or place it names, then why."""
    why = f" ({action['why']})" if action.get("why") else ""
    if action.get("kind") == "relaunch":
        return "urbanrun launch " + shlex.join(action.get("launch_args") or [action.get("recipe", "?")]) + why
    if action.get("kind") == "kill":
        return f"urbanrun kill {action.get('run')}{why}"
    if action.get("kind") == "inspect":
        line = f":{action['line']}" if action.get("line") else ""
        return f"look at {action.get('file')}{line}{why}"
    return str(action)

