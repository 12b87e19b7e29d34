"""GPU panes: a compact summary beside the runs (one line a GPU, a sparkline of utilisation),
and the full nvidia-smi style view: per-GPU history charts and the process table with runs.
Without GPUs they say why (no driver, version mismatch, permission), never show fake data."""

from __future__ import annotations

from rich.text import Text
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable
from textual_plotext import PlotextPlot

from urbanrun.engine.core.state import State

from .formatting import bar
from .quiet import QuietStatic

SPARK = "▁▂▃▄▅▆▇█"


def spark(values: list, width: int) -> str:
    values = [v for v in values[-width:] if v is not None]
    return "".join(SPARK[min(7, int(v / 100 * 7.99))] for v in values)


def gpu_line(g: dict, history, width: int = 24) -> Text:
    if g.get("lost"):
        return Text(f"GPU{g.get('index')} {g.get('name')}: lost (fell off the bus)", style="bold red")
    used, total = g.get("mem_used"), g.get("mem_total")
    frac = used / total if used is not None and total else None
    util = g.get("util_gpu")
    text = Text()
    text.append(f"GPU{g.get('index')} ", style="bold")
    text.append(f"{'N/A' if util is None else f'{util:>3}%'} ")
    text.append(spark([h[1] for h in history], width) if history else "", style="green")
    text.append(f"  mem {bar(frac, 8)} ")
    text.append("N/A" if used is None else f"{used / 2**30:.1f}/{total / 2**30:.0f}G")
    temp, power = g.get("temp"), g.get("power_w")
    text.append(f"  {'N/A' if temp is None else f'{temp}°C'}  {'N/A' if power is None else f'{power:.0f}W'}")
    return text


def status_text(state: State) -> str | None:
    """Why there is nothing to show, or None when there are GPU readings."""
    status = state.gpu_status
    if not status:
        return "GPU telemetry starting…"
    if not status.get("available"):
        return status.get("reason") or "no NVIDIA GPU found"
    if not state.gpus:
        return "waiting for the first NVML reading…"
    return None


class GpuSummary(QuietStatic):
    def show(self, state: State) -> None:
        reason = status_text(state)
        if reason:
            self.update(Text(reason + "\nno GPU readings: runs, logs and curves work as usual.", style="dim"))
            return
        lines = Text()
        for g in state.gpus:
            lines.append_text(gpu_line(g, state.gpu_history.get(g.get("index")), width=20))
            lines.append("\n")
        host = state.host
        if host.get("cpu"):
            cpu = sum(host["cpu"]) / len(host["cpu"])
            lines.append(f"CPU {cpu:.0f}%  RAM {host['mem_used'] / 2**30:.1f}/{host['mem_total'] / 2**30:.0f}G", style="dim")
        self.update(lines)


class GpuView(Vertical):
    """The full view: one history chart a GPU (utilisation and memory %), then the processes."""

    def compose(self):
        yield QuietStatic(id="gpu-status")
        with Horizontal(id="gpu-charts"):
            yield PlotextPlot(id="gpu-util")
            yield PlotextPlot(id="gpu-mem")
        yield DataTable(id="gpu-procs", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one("#gpu-procs", DataTable)
        for label in ("GPU", "PID", "type", "process", "GPU memory", "SM %", "run"):
            table.add_column(label, key=label)

    _drawn: tuple | None = None  # what the charts and the process table show now

    def show(self, state: State) -> None:
        """Redraw when a GPU sample or the processes changed, not at every poll."""
        reason = status_text(state)
        drawn = (reason, tuple((i, len(h), h[-1][0] if h else None) for i, h in state.gpu_history.items()),
                 tuple(tuple(sorted(p.items())) for p in state.gpu_processes))
        if drawn == self._drawn:
            return
        self._drawn = drawn
        status = self.query_one("#gpu-status", QuietStatic)
        charts = [(self.query_one("#gpu-util", PlotextPlot), 1, "utilisation %"),
                  (self.query_one("#gpu-mem", PlotextPlot), 2, "memory used %")]
        for chart, _, label in charts:
            chart.plt.clear_data()
            chart.plt.clear_figure()
            chart.plt.title(label if not reason else "no GPU readings")
        if reason:
            status.update(Text(reason, style="bold yellow"))
            for chart, _, _ in charts:
                chart.refresh()
            return
        header = Text(f"driver {state.gpu_status.get('driver')}  CUDA {state.gpu_status.get('cuda')}\n", style="dim")
        for g in state.gpus:
            header.append_text(gpu_line(g, state.gpu_history.get(g.get("index")), width=30))
            header.append(f"  {g.get('name')}  {g.get('pstate') or ''}  SM {g.get('clock_sm') or 'N/A'} MHz\n")
        status.update(header)
        for chart, field, _ in charts:
            plt = chart.plt
            plt.ylim(0, 100)
            plt.xlabel("seconds")
            for g in state.gpus:
                history = [h for h in list(state.gpu_history.get(g.get("index"), []))[-300:] if h[field] is not None]
                if not history:
                    continue
                t_end = history[-1][0]
                total = g.get("mem_total") or 1
                ys = [h[field] / total * 100 if field == 2 else h[field] for h in history]
                plt.plot([h[0] - t_end for h in history], ys, marker="braille", label=f"GPU{g.get('index')}")
            chart.refresh()
        table = self.query_one("#gpu-procs", DataTable)
        table.clear()
        for p in state.gpu_processes:
            used = "N/A" if p.get("used_mem") is None else f"{p['used_mem'] / 2**20:.0f} MiB"
            run = p.get("run_id") or ("not on this host" if p.get("foreign") else "-")
            table.add_row(str(p.get("gpu")), str(p.get("pid")), p.get("type", "C"), p.get("name") or "?", used,
                          "-" if p.get("sm_util") is None else str(p["sm_util"]), run)
