"""The top line: config path, run counts by state, a one-line GPU summary."""

from __future__ import annotations

from collections import Counter

from rich.text import Text

from urbanrun.engine.core.state import State
from urbanrun.engine.session.disk_space import size_text

from .formatting import GLYPHS, status_of


def top_bar_text(app, state: State) -> Text:
    text = Text()
    text.append(" urbanrun ", style="bold reverse")
    if app.read_only:
        paused = getattr(app.source, "paused", False)
        text.append(f" replay {getattr(app.source, 'path', '')}{' (paused)' if paused else ''} ", style="bold yellow")
    elif app.config is not None:
        text.append(f" {app.config.path} ", style="dim")
    if state.storage.get("full"):  # said until room returns: a quiet run, or one still "running" after its end, is why
        text.append(f" disk full: {size_text(state.storage['free'])} free ", style="bold white on red")
    counts = Counter(status_of(r.record) for r in state.runs.values())
    for status in ("pending", "running", "stopping", "exited", "failed", "killed", "lost", "imported"):
        if counts.get(status):
            glyph, colour = GLYPHS[status]
            text.append(f" {glyph} {counts[status]} {status} ", style=colour)
    if not state.runs:
        text.append("  no runs yet: press l to launch one", style="dim")
    gpus = state.gpus if state.gpu_status.get("available") else []
    if gpus:
        parts = []
        for g in gpus:
            used, total = g.get("mem_used"), g.get("mem_total")
            mem = f"{used / 2**30:.0f}/{total / 2**30:.0f}G" if used is not None and total else "N/A"
            parts.append(f"{g.get('index')}:{g.get('util_gpu', 'N/A')}% {mem}")
        text.append("  GPU " + "  ".join(parts[:4]) + (" …" if len(parts) > 4 else ""), style="green")
    elif state.gpu_status:
        text.append("  no GPU", style="dim")
    return text
