"""GPU panes: a compact summary beside the runs (one line a GPU, a sparkline of utilisation),
and the full nvidia-smi style view: per-GPU history charts and the process table with runs.
Without GPUs they say why (no driver, version mismatch, permission), never show fake data."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable
from textual_plotext import PlotextPlot

from urbanrun.engine.core.state import State

from .formatting import bar
from .quiet import QuietStatic

COLOURS = ["cyan", "orange", "green", "magenta", "yellow", "blue", "red", "white"]
SPARK = "▁▂▃▄▅▆▇█"


def spark(values: list, width: int) -> str:
    values = [v for v in values[-width:] if v is not None]
    return "".join(SPARK[min(7, int(v / 100 * 7.99))] for v in values)


def gpu_parts(g: dict, history, width: int = 24) -> list[Text]:
    """A GPU's reading as pieces that are read together (utilisation and its sparkline, memory and
    its bar, temperature, power): a narrow pane breaks the line between them, never inside one."""
    if g.get("lost"):
        return [Text(f"GPU{g.get('index')} {g.get('name')}: lost (fell off the bus)", style="bold red")]
    used, total = g.get("mem_used"), g.get("mem_total")
    frac = used / total if used is not None and total else None
    util = g.get("util_gpu")
    first = Text()
    first.append(f"GPU{g.get('index')} ", style="bold")
    first.append(f"{'N/A' if util is None else f'{util:>3}%'} ")
    first.append(spark([h[1] for h in history], width) if history else "", style="green")
    memory = Text(f"mem {bar(frac, 8)} " + ("N/A" if used is None else f"{used / 2**30:.1f}/{total / 2**30:.0f}G"))
    temp, power = g.get("temp"), g.get("power_w")
    first.rstrip()  # no history yet: no trailing space before the next part
    return [first, memory, Text("N/A" if temp is None else f"{temp}°C"),
            Text("N/A" if power is None else f"{power:.0f}W")]


def wrap_parts(parts: list[Text], width: int | None, gap: str = "  ") -> Text:
    """The parts on one line, broken between parts where a line would pass `width` (None: one line)."""
    out, line = Text(), 0
    for part in parts:
        if line and width and line + len(gap) + part.cell_len > width:
            out.append("\n")
            line = 0
        elif line:
            out.append(gap)
            line += len(gap)
        out.append_text(part)
        line += part.cell_len
    return out


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
            self._rows = None
            self._show(Text(reason + "\nno GPU readings: runs, logs and curves work as usual.", style="dim"))
            return
        self._rows = [gpu_parts(g, state.gpu_history.get(g.get("index")), width=20) for g in state.gpus]
        host = state.host
        if host.get("cpu"):
            cpu = sum(host["cpu"]) / len(host["cpu"])
            self._rows.append([Text(f"CPU {cpu:.0f}%", style="dim"),
                               Text(f"RAM {host['mem_used'] / 2**30:.1f}/{host['mem_total'] / 2**30:.0f}G", style="dim")])
        self._show_rows()

    _rows: list[list[Text]] | None = None  # the readings' parts, broken into lines at the pane's width

    def _show_rows(self) -> None:
        width = self.size.width or None
        self._show(Text("\n").join(wrap_parts(row, width) for row in self._rows))

    def _show(self, text: Text) -> None:
        """A height set from the lines the text takes at this width (an auto height was sometimes
        left from the previous text after one big update, a replay's): at 80 columns a no-GPU
        reason wraps, and a height by its line count alone cut it mid-sentence."""
        width = self.size.width  # the content's width: what the text wraps at
        if width > 0:
            lines = len(Text(text.plain.rstrip("\n")).wrap(self.app.console, width))
        else:
            lines = len(text.plain.rstrip("\n").split("\n"))
        self.styles.height = min(10, lines) + 1  # + the border line
        self.update(text)

    def on_resize(self) -> None:
        if self._rows is not None:  # the readings break between other parts at the new width
            self._show_rows()
        elif isinstance(self.content, Text):  # the text wraps differently at the new width
            self._show(self.content)


HISTORY_SECONDS = 600  # the charts show the last 10 minutes (the state keeps the whole session)
PROCESS_COLUMNS = ("GPU", "PID", "type", "process", "GPU memory", "CPU %", "RSS", "SM %", "run")
SORTS = {"GPU memory": "used_mem", "CPU %": "cpu", "RSS": "rss", "PID": "pid", "GPU": "gpu", "SM %": "sm_util"}


def history_points(series, now_ts: float, scale: float, points: int) -> tuple[list, list]:
    """The last HISTORY_SECONDS of a GPU field as (minutes before the last sample, value * scale),
    downsampled with its extremes kept."""
    import numpy as np  # here: the GPU summary line on the first screen needs no numpy

    from urbanrun.engine.core.series import downsample

    x, y = series.arrays("time")
    keep = (x >= x[-1] - HISTORY_SECONDS) & np.isfinite(y) if len(x) else np.zeros(0, dtype=bool)
    x, y = downsample(x[keep], y[keep] * scale, points)
    return ((x - now_ts) / 60.0).tolist(), y.tolist()


TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600)  # seconds between time ticks: a clock's round numbers
TICK_ROOM = 9  # columns a tick label needs (−"-1m30s" and a gap)


def time_ticks(earliest_minutes: float, width: int) -> tuple[list[float], list[str]]:
    """Ticks for an axis of minutes before the last sample (`earliest_minutes` <= 0 .. 0) at round
    clock steps, as many as `width` columns hold, labelled '-2m', '-30s', 'now': plotext's own
    ticks were fractions such as -1.3333."""
    span = max(0.0, -earliest_minutes) * 60
    most = max(2, min(8, width // TICK_ROOM))  # more would be read as noise
    step = next((s for s in TICK_STEPS if span // s + 1 <= most), None)
    if step is None:  # longer than HISTORY_SECONDS allows: whole multiples of ten minutes
        step = 600 * (int(span / 600 / (most - 1)) + 1)
    seconds = [-k * step for k in range(int(span // step) + 1)][::-1]
    return [t / 60 for t in seconds], [_ago(-t) for t in seconds]


def _ago(seconds: int) -> str:
    if not seconds:
        return "now"
    m, s = divmod(seconds, 60)
    return "-" + (f"{m}m" if m else "") + (f"{s}s" if s else "")


class GpuView(Vertical):
    """The full view: one history chart a GPU field (utilisation and memory %, the last 10
    minutes), then the processes with their CPU % and RSS beside their GPU memory, sortable
    (p cycles the order, or select a column header)."""

    BINDINGS = [Binding("p", "sort_processes", "sort processes", show=False,
                        tooltip="order the GPU processes by GPU memory, CPU %, RSS, PID (p again: the next)")]

    sort_by = "GPU memory"
    sort_reverse = True

    def compose(self):
        yield QuietStatic(id="gpu-status")
        with Horizontal(id="gpu-charts"):
            yield PlotextPlot(id="gpu-util")
            yield PlotextPlot(id="gpu-mem")
        yield DataTable(id="gpu-procs", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one("#gpu-procs", DataTable)
        for label in PROCESS_COLUMNS:
            table.add_column(label, key=label)

    _drawn: tuple | None = None  # what the charts and the process table show now
    _state: State | None = None

    _rows: list[dict] = []  # the processes in the table's order

    def selected_process(self) -> dict | None:
        """The GPU process on the table's cursor row (k stops its run from this tab)."""
        row = self.query_one("#gpu-procs", DataTable).cursor_row
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def action_sort_processes(self) -> None:
        order = list(SORTS)
        self.sort_by = order[(order.index(self.sort_by) + 1) % len(order)] if self.sort_by in order else order[0]
        self.sort_reverse = self.sort_by != "PID" and self.sort_by != "GPU"
        self._resort()

    def on_data_table_header_selected(self, event) -> None:
        key = event.column_key.value
        if key in SORTS:
            self.sort_reverse = not self.sort_reverse if key == self.sort_by else key not in ("PID", "GPU")
            self.sort_by = key
            self._resort()

    def on_resize(self) -> None:
        self._resort()  # the charts' points and ticks are chosen for their width (0 before the first layout)

    def _resort(self) -> None:
        self._drawn = None
        if self._state is not None:
            self.app.with_state(lambda: self.show(self._state)) if hasattr(self.app, "with_state") \
                else self.show(self._state)

    def sorted_processes(self, processes: list[dict]) -> list[dict]:
        field = SORTS.get(self.sort_by, "used_mem")
        known = [p for p in processes if isinstance(p.get(field), (int, float))]
        unknown = [p for p in processes if not isinstance(p.get(field), (int, float))]  # N/A last, either way
        return sorted(known, key=lambda p: p[field], reverse=self.sort_reverse) + unknown

    def show(self, state: State) -> None:
        """Redraw when a GPU sample or the processes changed, not at every poll."""
        self._state = state
        reason = status_text(state)
        drawn = (reason, tuple((i, len(h), h[-1][0] if h else None) for i, h in state.gpu_history.items()),
                 tuple(tuple(sorted(p.items())) for p in state.gpu_processes), self.sort_by, self.sort_reverse)
        if drawn == self._drawn:
            return
        self._drawn = drawn
        status = self.query_one("#gpu-status", QuietStatic)
        charts = [(self.query_one("#gpu-util", PlotextPlot), "util", "utilisation %"),
                  (self.query_one("#gpu-mem", PlotextPlot), "mem", "memory used %")]
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
            parts = gpu_parts(g, state.gpu_history.get(g.get("index")), width=30)
            parts += [Text(str(g.get("name"))), Text(f"{g.get('pstate') or ''}  SM {g.get('clock_sm') or 'N/A'} MHz")]
            header.append_text(wrap_parts(parts, status.size.width or None))
            header.append("\n")
        header.append(f"processes by {self.sort_by} {'▼' if self.sort_reverse else '▲'} (p: another order)", style="dim")
        foreign = sum(1 for p in state.gpu_processes if p.get("foreign"))
        if foreign:  # said here, where it applies, not as a toast at every start
            header.append(f" · {foreign} not on this host: NVML in a container sees the host's pids, so they "
                          f"cannot be tied to runs", style="dim")
        status.update(header)
        for chart, field, label in charts:
            plt = chart.plt
            plt.ylim(0, 100)
            plt.xlabel("time before the last sample (the last 10 minutes)")
            names, earliest = [], 0.0
            for k, g in enumerate(state.gpus):
                series = state.gpu_series.get(g.get("index"), {}).get(field)
                if series is None or series.count == 0:
                    continue
                scale = 100.0 / (g.get("mem_total") or 1) if field == "mem" else 1.0
                xs, ys = history_points(series, series.last_step, scale, max(40, chart.size.width * 2))
                earliest = min([earliest, *xs[:1]])
                colour = COLOURS[k % len(COLOURS)]
                plt.plot(xs, ys, marker="braille", color=colour)
                names.append(f"GPU{g.get('index')} ({colour})")
            plt.xticks(*time_ticks(earliest, chart.size.width))
            plt.title(f"{label} · " + ", ".join(names) if names else label)
            chart.refresh()
        table = self.query_one("#gpu-procs", DataTable)
        table.clear()
        self._rows = self.sorted_processes(state.gpu_processes)
        for p in self._rows:
            used = "N/A" if p.get("used_mem") is None else f"{p['used_mem'] / 2**20:.0f} MiB"
            run = p.get("run_id") or ("not on this host" if p.get("foreign") else "-")
            cpu = "-" if p.get("cpu") is None else f"{p['cpu']:.0f}"
            rss = "-" if p.get("rss") is None else f"{p['rss'] / 2**20:.0f} MiB"
            table.add_row(str(p.get("gpu")), str(p.get("pid")), p.get("type", "C"), p.get("name") or "?", used, cpu, rss,
                          "-" if p.get("sm_util") is None else str(p["sm_util"]), run)
