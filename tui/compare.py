"""Compare marked runs the way this team compares experiments: by their arguments. Parameters
side by side with the differences highlighted, final and best metrics, wall time, GPU peak, and
the curves overlaid."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from urbanrun.engine.core.state import State, loss_name

from .formatting import duration, num
from .loss_pane import LossPane


def comparison_rows(state: State, run_ids: list[str]) -> list[tuple[str, list[str], bool]]:
    """(row name, one cell a run, whether the cells differ)."""
    runs = [state.runs[r] for r in run_ids if r in state.runs]
    rows = []

    def add(name, cells):
        rows.append((name, cells, len(set(cells)) > 1))

    add("recipe", [r.record.get("recipe", "?") for r in runs])
    add("status", [_status(r.record) for r in runs])
    params = []
    for r in runs:
        params += [k for k in r.record.get("params", {}) if k not in params]
    for key in params:
        add(f"  {key}", [str(r.record.get("params", {}).get(key, "-")) for r in runs])
    names = [loss_name(r) for r in runs]
    add("best loss", [num(r.metrics[n].best) if n else "-" for r, n in zip(runs, names)])
    add("last loss", [num(r.metrics[n].last) if n else "-" for r, n in zip(runs, names)])
    add("steps", [str(int(r.metrics[n].last_step)) if n and r.metrics[n].last_step is not None else "-"
                  for r, n in zip(runs, names)])
    add("wall time", [duration((r.record.get("ended") or state.last_ts) - r.record["started"])
                      if r.record.get("started") else "-" for r in runs])
    add("GPU peak", [f"{r.record['gpu_mem_peak_mb']:.0f} MiB" if r.record.get("gpu_mem_peak_mb")
                     else (f"{r.gpu_mem_peak / 2**20:.0f} MiB" if r.gpu_mem_peak else "-") for r in runs])
    return rows


def _status(record: dict) -> str:
    """`exited (0)`, `killed (signal 15)`, or the bare status of a run that has not ended."""
    if record.get("signal"):
        return f"{record.get('status')} (signal {record['signal']})"
    code = record.get("exit_code")
    return f"{record.get('status')}" + ("" if code is None else f" ({code})")


class CompareScreen(ModalScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "close"), Binding("c", "app.pop_screen", "close")]

    def __init__(self, state: State, run_ids: list[str]):
        super().__init__()
        self.state, self.run_ids = state, run_ids

    def compose(self) -> ComposeResult:
        with Vertical(id="compare-dialog"):
            yield Label(f"Comparing {len(self.run_ids)} runs (differences highlighted) — esc closes")
            yield DataTable(id="compare-table", zebra_stripes=True)
            yield LossPane(id="compare-plot")

    def on_mount(self) -> None:
        self.app.with_state(self._fill)  # reads the state: only between polls

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("", key="name")
        for run_id in self.run_ids:
            table.add_column(run_id.split("-", 2)[-1], key=run_id)
        for name, cells, differ in comparison_rows(self.state, self.run_ids):
            style = "bold yellow" if differ else ""
            table.add_row(Text(name, style=style), *[Text(c, style=style) for c in cells])
        self.query_one(LossPane).draw(self.state, self.run_ids)
