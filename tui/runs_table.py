"""The runs table: status glyph, id, recipe, progress bar, ETA, last and best loss, GPU memory,
runtime. Rows are updated in place (no flicker, the cursor stays put).

Textual's DataTable.update_cell repaints every line of the table; here a changed cell repaints
its row's line alone (the cells whose text did not change come from our own cache, see
`_render_cell`), unless its column must grow. With runs going some number moves at every poll:
changed numbers (progress, loss, ETA, time, GPU memory) are computed and sent only when the app's
frame tick says so, all rows in one go; a new run, a status, a mark or a diagnosis is news, sent
at once."""

from __future__ import annotations

import time

from rich.cells import cell_len
from rich.text import Text
from textual.geometry import Size
from textual.binding import Binding
from textual.cache import LRUCache
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from urbanrun.engine.core.state import State, loss_name
from urbanrun.engine.runs.store import RunRecord, status_text
from urbanrun.engine.session.summary import progress_of

from .formatting import GLYPHS, bar, duration, gib, num, status_of, whole

COLUMNS = [("status", "  "), ("id", "run"), ("recipe", "recipe"), ("progress", "progress"),
           ("eta", "ETA"), ("loss", "loss"), ("best", "best"), ("gpu", "GPU mem"), ("time", "time"), ("why", "diagnosis")]


# Narrow terminals drop these first (in this order), so the run and its diagnosis keep their room;
# then the id loses its date. Widths are what the cells usually take, padding included.
DROP_ORDER = ("recipe", "best", "time", "gpu", "eta")
WIDTHS = {"status": 4, "id": 28, "recipe": 10, "progress": 15, "eta": 9, "loss": 9, "best": 9, "gpu": 9, "time": 9}
SHORT_ID = 9  # "YYYYmmdd-" left out of the id
WHY_ROOM = 30  # what the diagnosis column should keep
SCROLLBAR = 2  # a vertical scrollbar's columns (more runs than rows): kept free for it


def layout_for(width: int) -> tuple[tuple[str, ...], bool]:
    """The columns shown at this width, and whether the id is shortened."""
    keys = [key for key, _ in COLUMNS]
    short = False

    def needed():
        return sum(WIDTHS[k] for k in keys if k in WIDTHS) - (SHORT_ID if short else 0) + WHY_ROOM

    for key in DROP_ORDER:
        if needed() <= width:
            break
        keys.remove(key)
    if needed() > width:
        short = True
    return tuple(keys), short


LIVE = ("starting", "pending", "running", "stopping")  # their time and ETA cells move by themselves


class RunsTable(DataTable):
    # here, or the DataTable would take space itself
    BINDINGS = [Binding("space", "app.mark", "mark",
                        tooltip="mark the selected run: overlay its curve, compare (in a replay: pause)")]

    def __init__(self, **kwargs):
        self._drawn_cells: LRUCache = LRUCache(4096)  # see _render_cell (DataTable's init clears it)
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.marked: set[str] = set()
        self.wanted: str | None = None  # a run to select once its row exists (one just launched)
        self._shown: dict[str, list] = {}  # the cells last drawn per run: only changes are sent
        self._seen: dict[str, tuple] = {}  # per run, (its state's change count, marked) when last drawn
        self.layout_keys, self.short_ids = layout_for(1000)
        self._wanted_layout: tuple | None = None

    # DataTable keys every cached cell render by its one update counter: a frame tick that moves one
    # run's clock rendered every visible cell again (the header, every finished run; ~0.3 ms a cell).
    # Here a cell is rendered again only when its own text, place or style changed. (textual is
    # pinned: this wraps DataTable._render_cell of textual 8.2.8, and clears with its caches.)
    def _render_cell(self, row_index: int, column_index: int, base_style, width: int, cursor: bool = False,
                     hover: bool = False):
        row = self._get_row_renderables(row_index)
        cell = row.label if column_index == -1 else row.cells[column_index] if column_index < len(row.cells) else None
        if not isinstance(cell, Text):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        key = (self._header_row_key if row_index == -1 else self._row_locations.get_key(row_index),
               self._column_locations.get_key(column_index), row_index, column_index, cell.plain, tuple(cell.spans),
               cell.style, cell.justify, cell.overflow, cell.no_wrap, base_style, width, cursor, hover,
               self._show_hover_cursor, self.show_cursor, self._pseudo_class_state)
        lines = self._drawn_cells.get(key)
        if lines is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            self._drawn_cells[key] = lines
        return lines

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._drawn_cells.clear()

    # DataTable measures new rows and widened cells when next idle, but keys the lines it drew by its
    # update counter only, and counts on a size change to draw again. Columns made again for a new
    # width with the same rows measure to the table's old size: lines drawn before the measure (a
    # loaded machine draws first) kept every column at its header's width for good. So a measure
    # (only after rows come or a cell outgrows its column) always draws again.
    def _update_dimensions(self, new_rows) -> None:
        super()._update_dimensions(new_rows)
        self._fit_why()
        self._update_count += 1
        self.refresh()

    # The diagnosis column takes the room the other columns leave (a vertical scrollbar's included):
    # wider, it pushed the table past the screen at 80 columns, and a horizontal scrollbar took one of
    # the few rows. A longer diagnosis is cut there with a '…' (see _news_cells); with room, it sizes
    # itself to its cells as every other column does.
    def _fit_why(self) -> bool:
        why = self.columns.get("why")
        if why is None or not self.size.width:
            return False
        others = sum(c.get_render_width(self) for key, c in self.columns.items() if key != "why")
        room = max(8, self.size.width - SCROLLBAR - others - 2 * self.cell_padding)
        auto, width = (True, why.width) if why.content_width <= room else (False, room)
        if (why.auto_width, why.width) == (auto, width):
            return False
        why.auto_width, why.width = auto, width
        self.virtual_size = Size(others + why.get_render_width(self) + self._row_label_column_width,
                                 self.virtual_size.height)
        return True

    # DataTable asks for its rich_style (a walk up every ancestor's styles) once per line drawn, blank
    # ones included; styles do not change within one render, so one walk serves all its lines.
    _render_style = None

    def render_lines(self, crop):
        self._render_style = super().rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._render_style = None

    @property
    def rich_style(self):
        return self._render_style if self._render_style is not None else super().rich_style

    def notify_style_update(self) -> None:  # a theme or CSS change: DataTable clears its caches itself
        super().notify_style_update()
        self._drawn_cells.clear()

    def on_mount(self) -> None:
        self._add_columns()

    def _add_columns(self) -> None:
        labels = dict(COLUMNS)
        for key in self.layout_keys:
            self.add_column(labels[key], key=key)

    def on_resize(self, event) -> None:
        if self._fit_why():  # the diagnosis' room changed with the width
            self._update_count += 1
            self.refresh()
        # the columns change with the next refresh of the rows, in one go with them
        self._wanted_layout = layout_for(event.size.width)
        if self._wanted_layout != (self.layout_keys, self.short_ids):
            redraw = getattr(self.app, "redraw", None)
            if redraw is not None:
                self.call_after_refresh(redraw)

    def _apply_layout(self) -> bool:
        if self._wanted_layout is None or self._wanted_layout == (self.layout_keys, self.short_ids):
            return False
        self.layout_keys, self.short_ids = self._wanted_layout
        self.clear(columns=True)
        self._shown, self._seen = {}, {}
        self._add_columns()
        return True

    @property
    def selected(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None

    def toggle_mark(self) -> str | None:
        run_id = self.selected
        if run_id:
            self.marked.symmetric_difference_update({run_id})
        return run_id

    def refresh_rows(self, state: State, now: float, numbers: bool = True) -> bool:
        """Show the state's runs; with `numbers` False, only their news (changed numbers are kept
        unsent until a call with `numbers`). Returns whether anything was sent."""
        ids = state.newest_first()
        selected = self.selected
        if self._apply_layout() and selected in state.runs:
            self.wanted = self.wanted or selected  # the selection survives the new columns
        if list(self.rows) != ids:  # a run appeared: rebuild in order (RowKey compares equal to its str)
            selected = self.selected
            self.clear()
            self._shown, self._seen = {}, {}
            for run_id in ids:
                cells = self._visible(self._cells(state, run_id, now))
                self._shown[run_id] = cells
                self.add_row(*cells, key=run_id)
            if selected in state.runs:
                self.move_cursor(row=ids.index(selected), animate=False)
            sent = True
        else:
            sent = self._update_rows(state, ids, now, numbers)
        if self.wanted in state.runs:
            self.move_cursor(row=ids.index(self.wanted), animate=False)
            self.wanted = None
        return sent

    def _update_rows(self, state: State, ids: list[str], now: float, numbers: bool) -> bool:
        changes = []  # (run_id, what it was drawn from, its cells, the indexes of the changed ones)
        for run_id in ids:
            run = state.runs[run_id]
            seen = (run.changes, run_id in self.marked)
            if seen == self._seen.get(run_id) and (run.status not in LIVE or not numbers):
                continue  # nothing changed in its state since drawn; a live run's clocks wait for `numbers`
            before = self._shown.get(run_id, [])
            if not numbers and not self._has_news(run_id, run, before):
                continue  # only numbers moved (a live run's, at every poll): they wait for the tick, unseen
            cells = self._visible(self._cells(state, run_id, now))
            changed = [i for i, value in enumerate(cells) if i >= len(before) or value != before[i]]
            if changed:
                changes.append((run_id, seen, cells, changed))
            else:
                self._seen[run_id] = seen
        if not changes:
            return False
        for run_id, seen, cells, changed in changes:
            for i in changed:
                key, value = self.layout_keys[i], cells[i]
                if _width(value) > self.columns[key].content_width:  # the column grows: measure, draw all
                    self.update_cell(run_id, key, value, update_width=True)
                else:
                    self._data[RowKey(run_id)][ColumnKey(key)] = value
            self._shown[run_id], self._seen[run_id] = cells, seen
            self._update_count += 1  # DataTable's render caches are keyed by it
            self.refresh_row(self.get_row_index(run_id))
        return True

    def _visible(self, cells: list) -> list:
        shown = [cell for (key, _), cell in zip(COLUMNS, cells) if key in self.layout_keys]
        if self.short_ids:
            shown[1] = shown[1][SHORT_ID:]  # the id: its date goes, the time, recipe and hex stay
        return shown

    def _has_news(self, run_id: str, run, before: list) -> bool:
        """Whether a cell that is news differs from the one drawn: between ticks only these are
        computed (the numbers, and the progress cell's summary, wait for the tick)."""
        news = self._news_cells(run_id, run)
        if self.short_ids:
            news["id"] = news["id"][SHORT_ID:]
        return any(key in news and (i >= len(before) or before[i] != news[key]) for i, key in enumerate(self.layout_keys))

    def _news_cells(self, run_id: str, run) -> dict:
        """The cells whose change is news, drawn at once: the glyph and mark, the id's colour, the diagnosis."""
        status = status_of(run.record)
        glyph, colour = GLYPHS.get(status, ("·", "white"))
        mark = Text("●" if run_id in self.marked else " ", style="bold cyan")
        why = _why(run)
        why.no_wrap, why.overflow = True, "ellipsis"  # cut to its column's room with a '…' (see _fit_why)
        return {"status": mark + Text(glyph, style=f"bold {colour}"),
                "id": Text(run_id, style=colour if status in ("failed", "lost") else ""),
                "why": why}

    def _cells(self, state: State, run_id: str, now: float) -> list:
        run = state.runs[run_id]
        rec = run.record
        status = status_of(rec)
        news = self._news_cells(run_id, run)
        name = loss_name(run)
        series = run.metrics.get(name) if name else None
        summary = _summary_progress(run, now)
        progress = _progress(summary, rec.get("status"))
        started, ended = rec.get("started"), rec.get("ended")
        runtime = (ended or now) - started if started else None
        eta = summary["eta_seconds"] if summary and status == "running" else None
        peak = run.gpu_mem if status == "running" else (rec.get("gpu_mem_peak_mb") or 0) * 2 ** 20
        return [
            news["status"],
            news["id"],
            rec.get("recipe", "?"),
            Text(f"{bar(progress[0], 6)} {progress[1]}"),
            duration(eta) if eta is not None else "-",
            num(series.last) if series else num(rec.get("loss_last")),
            num(series.best) if series else num(rec.get("loss_best")),
            gib(peak),
            duration(runtime),
            news["why"],
        ]


def _width(cell) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(str(cell))


def _summary_progress(run, now: float) -> dict | None:
    """The run summary's progress (engine/session/summary.py: epochs and steps of their totals,
    the ETA from the smoothed step rate), the one the summary pane, `status` and the agents see."""
    try:
        progress = progress_of(RunRecord.from_dict(run.record), run, now)
    except (TypeError, KeyError, ValueError):  # a record too incomplete to say: no progress rather than a wrong one
        return None
    stored = (run.record.get("summary") or {}).get("progress")
    if progress["epoch"] is None and progress["step"] is None and isinstance(stored, dict):
        # an ended run whose files are read only once it is selected: the figures its record
        # keeps (as `ls` shows them), not a blank cell (killed, failed) or 'done' (exited)
        return {**progress, **{k: stored.get(k) for k in ("step", "epoch", "total_epochs", "total_steps", "fraction")}}
    return progress


def _progress(progress: dict | None, status: str | None) -> tuple[float | None, str]:
    """The bar's fraction and its label: epochs of their total, else steps of theirs."""
    for unit, total in (("epoch", "total_epochs"), ("step", "total_steps")):
        if progress and progress[unit] is not None and progress[total]:
            return progress["fraction"], f"{whole(progress[unit])}/{whole(progress[total])}"
    if status == "exited":
        return 1.0, "done"
    return None, ""


def _why(run) -> Text:
    """The diagnosis headline (a glyph and the one-line cause), or the live trend warning."""
    diagnoses = run.diagnoses or run.record.get("diagnoses") or []
    if run.record.get("status") == "queued":
        rec = run.record
        return Text(f"⧗ queued #{rec.get('queue_position') or '?'}: {rec.get('queue_reason') or 'waiting for GPUs'}",
                    style="yellow")
    if run.record.get("unreachable_since") and run.record.get("status") in ("pending", "running"):
        since = time.strftime("%H:%M", time.localtime(run.record["unreachable_since"]))
        return Text(f"⚠ SLURM controller unreachable since {since}; last known: {run.record.get('status')}",
                    style="yellow")
    if run.record.get("leftovers"):  # processes outlive the run's end (or a kill): the first thing to know
        return Text(f"⚠ {status_text(run.record)}", style="yellow")
    if run.record.get("status") == "pending":
        return Text(f"◷ pending: {run.record.get('pending_reason') or 'queued'} (job {run.record.get('job_id')})",
                    style="yellow")
    if not diagnoses:
        return Text("")
    first = sorted(diagnoses, key=lambda d: {"error": 0, "warning": 1}.get(d.get("severity"), 2))[0]
    glyph, style = {"error": ("✖", "red"), "warning": ("⚠", "yellow")}.get(first.get("severity"), ("·", "dim"))
    summary = first.get("summary", "")
    return Text(f"{glyph} {summary[:60]}{'…' if len(summary) > 60 else ''}", style=style)
