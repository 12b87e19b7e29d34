"""The urbanrun app: one screen to supervise every run by keyboard.

The data source is passed in (an Engine, or a ReplaySource): `make_app(source)` serves both
`urbanrun` and the tests. Polling runs in one non-overlapping poll thread; the poll reduces its
events into the source's state (the session's one State: the app keeps no copy) and posts them
as one message; the UI thread then draws a run's news at once, and what moves by itself
(numbers, log lines, GPU readings, the summary, curves) once every FRAME_SECONDS (see `_redraw`).
The UI thread reads the state only between polls and never waits for it (see `with_state`),
and touches no file: commands, the scratchpad and the quit summary run in thread workers whose
results come back as messages.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane, Tabs

from urbanrun.engine import platform
from urbanrun.engine.core.config import Notify
from urbanrun.engine.core.events import Event, MetricPoints, Notice, RunChanged
from urbanrun.engine.notes import scratchpad
from urbanrun.engine.core.state import State

from . import collector, focus
from .contained import contain_panes, feed
from .error_report import ErrorReport
from .dialogs import ConfirmKill, HelpScreen, PromptScreen, RemedyScreen, SummaryScreen
from .gpu_pane import GpuSummary
from .log_pane import LogPane
from .log_status import LogStatus
from .loss_pane import LossPane
from .quiet import QuietStatic
from .messages import CommandDone, PadSavedOnExit, Polled, SummaryDrafted
from .notify import notifications, terminal_sequence
from .run_summary import RunSummary
from .runs_table import RunsTable
from .top_bar import top_bar_text

POLL_SECONDS = 1.0  # a run's news (a status, a diagnosis) shows within a second; each poll costs CPU
FRAME_SECONDS = 2.0  # what moves by itself is redrawn at this pace (nvitop's default refresh)
PLOT_SECONDS = 5.0  # new points of a shown run redraw its plot at most this often (a plotext frame: ~10-25 ms)
SUMMARY_SECONDS = FRAME_SECONDS  # a live run's summary (its ETA, its time) is recomputed at most this often
SETTLE_ROUNDS = 10  # a headless screenshot waits at most this many settle rounds for the screen to stop changing


class UrbanrunApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "urbanrun"
    BINDINGS = [  # the help screen and the command palette are generated from these
        # ? and q first: the footer shows bindings in this order and cuts what does not fit
        Binding("question_mark", "help", "help", tooltip="this help: every key, by pane"),
        Binding("q", "quit_app", "quit", tooltip="quit (runs keep going; drafts today's session summary)"),
        Binding("l", "launch", "launch", tooltip="launch form: recipe, parameters, the exact command line"),
        Binding("k", "kill", "stop",
                tooltip=f"stop the selected run (asks y/n; {platform.STOP_NAME} to its tree, then {platform.KILL_NAME}); "
                        "on the GPU tab the selected process's run, on Diagnoses the run shown"),
        Binding("K", "kill_now", "kill now", show=False,
                tooltip=f"kill the selected run now ({platform.KILL_NAME}, no question)"),
        Binding("space", "mark", "mark", tooltip="mark the selected run: overlay its curve, compare (replay: pause)"),
        Binding("c", "compare", "compare", show=False, tooltip="compare the marked runs: parameters, metrics, curves"),
        Binding("slash", "search", "search log", show=False, tooltip="search the log (enter; then n/N)"),
        Binding("n", "next_match(1)", "next match", show=False, tooltip="next search match in the log"),
        Binding("N", "next_match(-1)", "previous match", show=False, tooltip="previous search match in the log"),
        Binding("f", "follow", "follow log", show=False, tooltip="follow the log again (scrolling up pauses it)"),
        Binding("w", "wrap_log", "wrap log", show=False, tooltip="wrap long log lines, or cut them at the edge"),
        Binding("z", "zoom_log", "zoom log", show=False, tooltip="the log at full width (z again: back)"),
        Binding("m", "metric(1)", "metric", show=False, tooltip="next metric in the loss pane"),
        Binding("M", "metric(-1)", "previous metric", show=False, tooltip="previous metric in the loss pane"),
        Binding("e", "smoothing(-1)", "less smoothing", show=False, tooltip="less EMA smoothing of the curves"),
        Binding("E", "smoothing(1)", "more smoothing", show=False, tooltip="more EMA smoothing of the curves"),
        Binding("y", "log_y", "log y", show=False, tooltip="log-scale y axis"),
        Binding("x", "x_axis", "x axis", show=False, tooltip="x axis by step or by wall time"),
        Binding("v", "curves_grid", "one plot/grid", show=False,
                tooltip="curves: one plot (train/val pairs together) or a grid of every metric"),
        Binding("F", "curves_filter", "filter curves", show=False, tooltip="curves: show only metrics whose names match"),
        # the tab keys are priority keys, taken before the focused widget sees them: the focus moves
        # at once, so what is typed right after `s` goes into the editor (not to the runs table)
        Binding("r", "tab('main')", "runs", show=False, tooltip="the runs view", priority=True),
        Binding("g", "tab('gpu')", "GPU", tooltip="the GPU view: history charts and processes", priority=True),
        Binding("s", "tab('pad')", "scratchpad", tooltip="today's scratchpad, the editor focused (ctrl+s saves)",
                priority=True),
        Binding("d", "tab('diag')", "diagnoses", tooltip="diagnoses: cause, evidence and remedy of every sick run",
                priority=True),
        Binding("i", "import_runs", "import", show=False,
                tooltip="import runs from a folder or file (lightning_logs, wandb, TensorBoard, CSV)"),
        Binding("R", "relaunch", "relaunch with remedy", show=False,
                tooltip="relaunch the run whose diagnosis is shown (or the selected run) with a remedy for its cause"),
        Binding("left_square_bracket", "queue_move(-1)", "queue earlier", show=False,
                tooltip="move the selected queued run one place earlier in the launch queue"),
        Binding("right_square_bracket", "queue_move(1)", "queue later", show=False,
                tooltip="move the selected queued run one place later in the launch queue"),
        Binding("o", "observe", "observe", show=False,
                tooltip="write a cross-agent observation under today's scratchpad heading (runs it names linked)"),
        Binding("escape", "leave_text_field", "leave field", priority=True,  # shown only in a text field
                tooltip="in a text field (log search, scratchpad editor): leave it, back to the runs table"),
        Binding("ctrl+s", "save_pad", "save notes", tooltip="save the scratchpad (merges appended notes)"),  # there only
        # ↑/↓ move the runs table's selection wherever the focus is on the runs view (not in a text field)
        Binding("up", "runs_cursor(-1)", "previous run", show=False, priority=True),
        Binding("down", "runs_cursor(1)", "next run", show=False, priority=True),
        # ←/→ move the curves' cursor while the runs table (it scrolls only up and down) or the plot
        # has the focus; in a text field, the log or the tab bar they keep their own job
        Binding("left", "curve_cursor(-1)", "cursor ←", show=False, priority=True,
                tooltip="curves: the cursor one step left (runs table or plot focused): every shown run's value there"),
        Binding("right", "curve_cursor(1)", "cursor →", show=False, priority=True,
                tooltip="curves: the cursor one step right (esc hides it)"),
        Binding("shift+left", "curve_cursor(-10)", "cursor ← ×10", show=False, priority=True,
                tooltip="curves: the cursor ten columns left"),
        Binding("shift+right", "curve_cursor(10)", "cursor → ×10", show=False, priority=True,
                tooltip="curves: the cursor ten columns right"),
    ]
    LETTER_ACTIONS = focus.letter_actions(BINDINGS)

    def __init__(self, source, *, config=None, scratchpad_dir: Path | None = None, demo: bool = False,
                 headless_summary: bool = False, screenshot: str | None = None, today=None):
        super().__init__()
        self.source = source
        self.config = config or getattr(source, "config", None)
        self.read_only = getattr(source, "read_only", False)
        # the scratchpad root (role folders inside); default from config.toml's [scratchpad]
        self.pad_settings = (scratchpad.Settings(root=Path(scratchpad_dir)) if scratchpad_dir
                             else scratchpad.settings_from(self.config))
        self.demo = demo
        self.today = today  # a fixed date for tests; None: the real today
        self.headless_summary = headless_summary
        self.screenshot_path = screenshot
        self._polling = False  # a poll is asked or in flight (only the UI thread sets this)
        self._stopping = False  # exit asked: no new polls; exit once the one in flight is back
        self._exit_args, self._exit_kwargs = (), {}
        self._pad_on_exit: str | None = None  # None, "saving" (a worker), then "done"
        self._poll_timer = None
        self._poll_wake = threading.Event()  # the timer wakes the poll thread (see _poll_loop)
        self._poll_thread: threading.Thread | None = None
        self._after_poll: list = []  # UI work that needs the state, deferred while a poll holds it
        self._plot_forced = False
        self._follow_wanted: str | None = None
        self._summary_wanted: str | None = None  # the selected run, whose summary the poll thread computes
        self._summary_basis: tuple | None = None  # (run id, active, monotonic time) of the last one: poll thread only
        self._summary: dict | None = None
        self._last_plot = 0.0
        self._last_frame = -FRAME_SECONDS  # time.monotonic() of the last redraw of what moves by itself
        self._panes_mounted = False  # the later tabs' panes (see _mount_later_panes)
        self._plot_dirty = True
        self.quit_message = ""
        self.errors = ErrorReport(source)
        self._palette_action = False
        self.status_note: str | None = None  # kept in the log's status bar until the user acts
        self.notify_settings = getattr(self.config, "notify", None) or Notify()
        self._told = None  # what the notifications told about each run (None: not looked yet)
        self._relaunch_offered = False  # a remedy applies to the run R would relaunch (see check_action)

    # -- layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield QuietStatic(id="top-bar")
        with focus.FocusedTabs(initial="main", id="tabs"):
            with TabPane("Runs", id="main"):
                yield RunsTable(id="runs")  # full width: every column, the diagnosis included
                yield RunSummary(id="run-summary")  # the selected run, as `urbanrun status` says it
                with Horizontal(id="lower"):
                    yield LossPane(id="loss")
                    with Vertical(id="right"):
                        yield GpuSummary(id="gpu-summary")
                        yield LogPane(id="log")
                        yield LogStatus(id="log-status")
                        yield Input(placeholder="search the log (enter; n/N next/prev; esc)", id="search")
            # their panes are mounted after the first frame (see _mount_later_panes)
            yield TabPane("GPU", id="gpu")
            yield TabPane("Scratchpad", id="pad")
            yield TabPane("Diagnoses", id="diag")
        yield Footer()

    async def _mount_later_panes(self) -> None:
        """The tabs not shown at start get their panes after the first frame: composing and
        styling them took a third of it. Until then `_tab_with_pane` says no tab has one. Their
        modules are imported here too (the scratchpad's TextArea loads tree-sitter)."""
        from .diagnoses_pane import DiagnosesPane
        from .gpu_pane import GpuView
        from .scratchpad_pane import ScratchpadPane

        later = {"gpu": GpuView(id="gpu-view"),
                 "pad": ScratchpadPane(self.pad_settings, getattr(self.source, "store", None), today=self.today,
                                       id="scratchpad"),
                 "diag": DiagnosesPane(remedy_note=self._remedy_note, id="diagnoses")}
        for tab, pane in later.items():
            holder = self.query_one(f"#{tab}", TabPane)
            await holder.mount(pane)
            contain_panes(holder)  # not self.screen: a dialog may be the screen by now
        self._panes_mounted = True
        collector.settle()  # the objects of a started app left out of later collections
        active = self.query_one(TabbedContent).active
        if active != "main":  # a tab chosen before its pane came: draw it and focus its main widget
            self.redraw()
            target = focus.main_widget(self.screen, active)
            if target is not None:
                target.focus()

    def _tab_with_pane(self) -> str | None:
        """The tab shown, once its pane is mounted (None just after start, on a later tab)."""
        active = self.query_one(TabbedContent).active
        return active if active == "main" or self._panes_mounted else None

    def on_mount(self) -> None:
        contain_panes(self.screen)  # a pane that cannot draw shows why; the app keeps running
        self.call_after_refresh(self._mount_later_panes)
        self.query_one("#search", Input).display = False
        self.query_one(RunsTable).focus()
        if self.headless_summary:
            self.call_after_refresh(self._replay_to_end)
            return
        self._poll_thread = threading.Thread(target=self._poll_loop, name="urbanrun-poll", daemon=True)
        self._poll_thread.start()
        self._poll_timer = self.set_interval(POLL_SECONDS, self._tick)
        self._tick()
        if self.demo and not self.read_only:
            self._launch("cones", {})

    @property
    def state(self) -> State:
        """The source's state: the one the poll reduces into (an Engine's or a replay's)."""
        return self.source.state

    # -- polling -----------------------------------------------------------------------------------
    def _tick(self) -> None:
        if not self._polling and not self._stopping:
            self._polling = True
            self._poll_wake.set()

    def _poll_loop(self) -> None:
        """The poll thread: one poll each time the timer wakes it, until exit is asked or the app is
        gone. One long-lived thread, not a Textual thread worker per poll: a worker's task and its
        state-change messages cost the UI thread ~0.3 ms of CPU at every poll."""
        while True:
            woken = self._poll_wake.wait(timeout=2 * POLL_SECONDS)
            if not self.is_running:  # gone: quit, or torn down (run_test ends without exit())
                return
            if woken:  # a tick asked for it (exit stops the timer: a poll asked before still runs)
                self._poll_wake.clear()
                self._poll()

    def on_unmount(self) -> None:
        """The app is going (quit, or died on an error): the poll thread ends first, and a poll in
        flight finishes, so run() returns only then and the engine is never closed under a poll.
        (exit() already waits for that poll; an app that dies does not.) Its message is dropped."""
        if self._poll_thread is not None:
            self._poll_wake.set()  # it sees the app is not running, and ends
            self._poll_thread.join()

    def _poll(self) -> None:
        events: list[Event] = []
        summary = None
        try:
            wanted = self._follow_wanted
            if wanted and hasattr(self.source, "follow"):
                self.source.follow(wanted)  # here, not on the UI thread: it may wait for the engine's lock
            events = self.source.poll()
            summary = self._summary_of(self._summary_wanted, events)
        except Exception as exc:  # a source failure (or a bug here) must not kill the UI: show it, keep polling
            events = [*events, Notice(ts=time.time(), level="error", text=f"polling failed: {exc}")]
        finally:  # always answered: the answer clears _polling, so polling goes on and q never waits for it
            self.post_message(Polled(events, summary))  # a message, not call_from_thread: dropped if the app is gone

    def _summary_of(self, run_id: str | None, events: list[Event]) -> dict | None:
        """In the poll thread: the selected run's summary by the engine's one function (the source's
        `summary`), when it may have changed: another run, events of it, a live run's clock. None:
        keep the one shown."""
        if not run_id or not hasattr(self.source, "summary"):
            return None
        wall = time.monotonic()
        basis = self._summary_basis
        touched = any(getattr(e, "run_id", None) == run_id for e in events)
        if basis and basis[0] == run_id and not touched and not (basis[1] and wall - basis[2] >= SUMMARY_SECONDS):
            return None
        try:
            summary = self.source.summary(run_id)
        except Exception as exc:  # an unreadable record: said in the pane, the poll goes on
            summary = {"id": run_id, "error": str(exc), "active": False}
        self._summary_basis = (run_id, bool(summary.get("active")), wall)
        return summary

    @property
    def _winding_down(self) -> bool:
        """Exit was asked, or the screens are being torn down (run_test shuts down without exit())."""
        return self._stopping or not self.is_running

    def on_polled(self, message: Polled) -> None:
        self._polling = False
        if self._winding_down:
            self._exit_when_idle()
            return
        if message.summary is not None:
            self._summary = message.summary
        self._show_events(message.events)
        self.with_state(self._notify_news)
        deferred, self._after_poll = self._after_poll, []
        for action in deferred:
            self.with_state(action)

    def _show_events(self, events: list[Event]) -> None:
        table = self.query_one(RunsTable)
        shown = {table.selected, *table.marked}
        waiting = self.query_one(LossPane).without_points  # shown, drawn before their points were read
        for e in events:
            if isinstance(e, (MetricPoints, RunChanged)) and e.run_id in shown:
                self._plot_dirty = True
            if isinstance(e, MetricPoints) and e.run_id in waiting:
                self._plot_forced = True  # its first points: the plot said it had none
            if isinstance(e, Notice) and e.level in ("warning", "error"):
                self.notify(e.text, severity="error" if e.level == "error" else "warning", timeout=8)
        self.redraw(force_plot=self._plot_forced)

    def _notify_news(self) -> None:
        """A toast for each run that ended, failed or got a new kind of diagnosis since the last
        poll; while the terminal is not focused, also a terminal notification and the bell."""
        settings = self.notify_settings
        self._told, notes = notifications(self._told, self.state.runs, settings.on)
        for note in notes:
            if settings.toast:
                self.notify(note.body, title=note.title, severity=note.severity,
                            timeout=15 if note.severity == "error" else 8)
            if not self.app_focus:
                self.write_terminal(terminal_sequence(note, settings))

    def write_terminal(self, text: str) -> None:
        """Raw bytes for the terminal, through the driver (its writer keeps them whole, between frames)."""
        if text and self._driver is not None:
            self._driver.write(text)

    def with_state(self, action) -> None:
        """Run `action` (UI work that reads the state) now if no poll holds the state, else right
        after the poll's message: the UI thread never waits for the poll."""
        if not self.state.guard.acquire(blocking=False):
            self._after_poll.append(action)
            return
        try:
            action()
        finally:
            self.state.guard.release()

    def exit(self, *args, **kwargs) -> None:
        """Stop polling before the screens go: a poll in flight is let finish (its message then
        exits), so no poll result ever lands on a torn-down screen. Scratchpad edits not yet saved
        are saved first (q, ctrl+q, the summary's esc: typed notes are never dropped on the way out)."""
        self._stopping = True
        self._exit_args, self._exit_kwargs = args, kwargs
        if self._poll_timer is not None:
            self._poll_timer.stop()
        if self._pad_on_exit is None:
            pending = self._unsaved_pad()
            self._pad_on_exit = "saving" if pending else "done"
            if pending:
                self._save_pad_on_exit(*pending)
        self._exit_when_idle()

    def _exit_when_idle(self) -> None:
        """Exit once no poll and no scratchpad save is in flight (each one's message calls again)."""
        if not self._polling and self._pad_on_exit != "saving" and self.is_running:
            super().exit(*self._exit_args, **self._exit_kwargs)

    def _unsaved_pad(self) -> tuple | None:
        if not self._panes_mounted or not self.screen_stack:
            return None
        from .scratchpad_pane import ScratchpadPane

        pad = self.screen_stack[0].query_one(ScratchpadPane)  # a dialog (the summary) may be on top
        edits = pad.unsaved()
        return (pad.path, *edits) if edits else None

    @work(thread=True, group="pad-exit")
    def _save_pad_on_exit(self, path: Path, text: str, base: str) -> None:
        try:
            _, note = scratchpad.save(path, text, base)  # merges what was appended meanwhile
            note = f"your unsaved scratchpad edits were {note}: {path}"
        except OSError as exc:
            note = f"your scratchpad edits were NOT saved ({exc}); they were:\n{text}"
        self.post_message(PadSavedOnExit(note))

    def on_pad_saved_on_exit(self, message: PadSavedOnExit) -> None:
        self._pad_on_exit = "done"
        self.quit_message = (self.quit_message + "\n" if self.quit_message else "") + message.note
        self._exit_when_idle()

    def now(self) -> float:
        return self.state.last_ts if self.read_only else time.time()

    def redraw(self, force_plot: bool = True) -> None:
        """Redraw from the state, or, while a poll holds it, when the poll's events arrive."""
        if self._winding_down:
            return
        if not self.state.guard.acquire(blocking=False):
            self._plot_forced = self._plot_forced or force_plot
            return
        try:
            self._plot_forced = False
            self._redraw(force_plot)
        finally:
            self.state.guard.release()

    def _redraw(self, force_plot: bool) -> None:
        """A poll's news (a new run, a status, a mark, a diagnosis) is drawn at once; what moves
        by itself (numbers, log lines, GPU readings, the summary, the plot) once a FRAME_SECONDS
        tick: every update repaints, and a log line relayouts the whole screen."""
        wall = time.monotonic()
        due = force_plot or wall - self._last_frame >= FRAME_SECONDS
        table = self.query_one(RunsTable)
        news = []
        feed(table, lambda: news.append(table.refresh_rows(self.state, self.now(), numbers=due)))
        run_summary = self.query_one(RunSummary)
        # the selected run's first summary is news too (its pane says "computing…" until then)
        first_summary = run_summary.summary is None and (self._summary or {}).get("id") == table.selected
        if not (due or any(news) or first_summary):
            return
        self._last_frame = wall
        selected = table.selected
        if selected and not self.read_only:
            self._follow_wanted = selected  # a finished run's files are read when it is selected
        self._summary_wanted = selected
        feed(run_summary, lambda: run_summary.show(selected, self._summary))
        run = self.state.runs.get(selected) if selected else None
        log = self.query_one(LogPane)
        feed(log, lambda: log.show(run))
        self._log_status(run)
        summary = self.query_one(GpuSummary)
        feed(summary, lambda: summary.show(self.state))
        bar = self.query_one("#top-bar", Static)
        feed(bar, lambda: bar.update(top_bar_text(self, self.state)))
        tab = self._tab_with_pane()
        if tab == "gpu":
            view = self.query_one("#gpu-view")
            feed(view, lambda: view.show(self.state))
        elif tab == "diag":
            pane = self.query_one("#diagnoses")
            feed(pane, lambda: pane.show(self.state))
        elif tab == "pad":
            self.query_one("#scratchpad").refresh_from_disk()  # a worker looks; a message reloads
        if force_plot or (self._plot_dirty and wall - self._last_plot >= PLOT_SECONDS):
            self._last_plot, self._plot_dirty = wall, False
            ids = [selected] if selected else []
            ids += [r for r in sorted(table.marked) if r != selected]
            loss = self.query_one(LossPane)
            feed(loss, lambda: loss.draw(self.state, ids))
        self._update_relaunch_offer()

    def _log_status(self, run) -> None:
        progress, following = None, None
        if run is not None:
            p = run.progress.get("batch")
            if p and run.record.get("status") == "running":
                bare = f"▸ {p.get('desc') or 'batch'} {int(p['n'])}/{int(p['total'])}"
                progress = (bare + (f" · {p['rate']:.1f} it/s" if p.get("rate") else ""), bare)
            following = self.query_one(LogPane).following
        self.query_one(LogStatus).show(self.status_note, progress, following)

    def note(self, text: str | None) -> None:
        """A line for the log's status bar that polls do not overwrite (search results)."""
        self.status_note = text
        run = self.state.runs.get(self._selected() or "")
        self._log_status(run)

    # A widget's message (a row highlighted, a tab shown) still queued when the app shuts down (q, or
    # the end of run_test) is dispatched after the screens are gone: its handler then does nothing.
    def on_data_table_row_highlighted(self, event) -> None:
        if event.data_table.id == "runs" and not self._winding_down:
            self.status_note = None  # another run: the last search result no longer applies
            self.query_one(LossPane).metric = None
            self.redraw()

    def on_option_list_option_highlighted(self, event) -> None:
        if event.option_list.id == "diag-list":  # another diagnosis shown: R may apply, or not
            self.with_state(self._update_relaunch_offer)

    def on_tabbed_content_tab_activated(self, event) -> None:
        if self._winding_down:
            return
        self.redraw()
        # every tab lands the focus on its main widget (s: the scratchpad editor); the tab shown now,
        # not the event's: keys handled since (r then d, typed fast) may have switched again
        target = focus.main_widget(self.screen, self.query_one(TabbedContent).active)
        if target is not None and self.screen is self.screen_stack[0]:
            target.focus()

    # -- the focus model -----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """App keys that type a character act only when the focus takes no text (see focus.py)."""
        if self._palette_action:
            return True
        if action in self.LETTER_ACTIONS and not focus.keys_allowed(self.focused):
            return False
        if action == "tab" and self.screen is not self.screen_stack[0]:
            return False  # a priority key: not behind a dialog
        if action == "leave_text_field":  # else escape goes on to the widget or dialog that has it
            from textual.widgets import TextArea  # loaded by then: the scratchpad's editor is one

            return isinstance(self.focused, (Input, TextArea)) and self.screen is self.screen_stack[0]
        if action == "save_pad":  # the scratchpad's own key: in the footer there, nowhere else
            return self.screen is self.screen_stack[0] and self._tab_with_pane() == "pad"
        if action == "relaunch":  # shown disabled where no remedy applies (R then says why: on_key)
            return True if self._relaunch_offered else None
        if action == "runs_cursor":
            return self._runs_cursor_target() is not None
        if action == "curve_cursor":
            return self._curve_cursor_target() is not None
        return True

    def _curve_cursor_target(self) -> LossPane | None:
        """The plot, when ←/→ should move its cursor: the runs view is shown with the plot (not the
        zoomed log), and the focus is on the runs table or the plot."""
        if self.screen is not self.screen_stack[0] or self.query_one(TabbedContent).active != "main":
            return None
        if self.query_one("#lower").has_class("-log-zoom") or not isinstance(self.focused, (RunsTable, LossPane)):
            return None
        return self.query_one(LossPane)

    def action_curve_cursor(self, columns: int) -> None:
        pane = self._curve_cursor_target()
        if pane is not None:
            pane.action_cursor(columns)

    def _runs_cursor_target(self) -> RunsTable | None:
        """The runs table, when ↑/↓ should move it: the runs view is shown, the focus is not in it
        (it moves itself) and not in a text field or a dialog."""
        if self.screen is not self.screen_stack[0] or self.query_one(TabbedContent).active != "main":
            return None
        table = self.query_one(RunsTable)
        if self.focused is table or not focus.keys_allowed(self.focused) or isinstance(self.focused, Tabs):
            return None
        return table

    def action_runs_cursor(self, step: int) -> None:
        table = self._runs_cursor_target()
        if table is not None:
            table.action_cursor_down() if step > 0 else table.action_cursor_up()

    def action_leave_text_field(self) -> None:
        if self.status_note:
            self.note(None)
        self.leave_text_field()

    def leave_text_field(self) -> None:
        """Escape in a text field: back to the tab's main widget (the search box also closes); from
        the scratchpad editor, the tab's main widget itself, back to the runs table."""
        search = self.query_one("#search", Input)
        if self.focused is search:
            search.display = False
        tabs = self.query_one(TabbedContent)
        target = focus.main_widget(self.screen, tabs.active)
        if target is None or target is self.focused:
            tabs.active = "main"
            target = self.query_one(RunsTable)
        self.screen.set_focus(target)  # now: the keys typed next are handled with it

    # -- headless replay ---------------------------------------------------------------------------
    def _replay_to_end(self) -> None:
        events = self.source.poll()
        self._show_events(events)  # selects the first run
        # no poll worker runs headless: the selected run's summary is computed here (it said
        # "summary: computing…" in every headless screenshot)
        self._summary = self._summary_of(self._selected(), events) or self._summary
        self.redraw(force_plot=True)
        if self.screenshot_path:
            self.run_worker(self._save_when_settled(), group="screenshot")
        else:
            self.exit()

    async def _save_when_settled(self) -> None:
        """The screenshot once the screen stops changing. After a refresh is not enough: a widget
        that grew (the GPU summary's host line) has its layout and the footer its keys only once
        their own message queues and the screen's update timer got to them, so on a loaded machine
        a screenshot without either was taken. In a worker: the waits need the screen's task free."""
        from textual.pilot import Pilot

        pilot, shown = Pilot(self), None
        for _ in range(SETTLE_ROUNDS):
            await pilot.wait_for_scheduled_animations()  # every widget's messages, then a layout and repaint
            screen = self.export_screenshot()
            if screen == shown:
                break
            shown = screen
        try:
            Path(self.screenshot_path).write_text(shown, encoding="utf-8")
        except OSError as exc:  # checked writable at start: the disk filled or the folder went since
            self.exit(return_code=1, message=f"urbanrun: the screenshot could not be saved to "
                                             f"{self.screenshot_path}: {exc.strerror or exc}.")
            return
        self.exit()

    # -- actions -----------------------------------------------------------------------------------
    def _selected(self) -> str | None:
        return self.query_one(RunsTable).selected

    def _writable(self) -> bool:
        if self.read_only:
            self.notify("this is a replay: nothing can be launched or stopped", severity="warning")
        return not self.read_only

    def action_launch(self) -> None:
        if self._writable():
            self.with_state(self._open_launch_form)

    def _open_launch_form(self) -> None:
        from .launch_form import LaunchForm  # its module at its first use, not before the first frame

        current = self.state.runs.get(self._selected() or "")
        recipe = current.record.get("recipe") if current else None
        gpus = self.state.gpus if self.state.gpu_status.get("available") else []
        self.push_screen(LaunchForm(self.config, recipe, getattr(self.source, "store", None), gpus), self._launch_chosen)

    def _launch_chosen(self, result) -> None:
        if result:
            self._launch(result["recipe"], result["values"], result.get("backend"), result.get("options"),
                         result.get("queue"))

    @work(thread=True, group="commands")
    def _launch(self, recipe: str, values: dict, backend: str | None = None, options: dict | None = None,
                queue: dict | None = None) -> None:
        try:
            record = self.source.launch(recipe, values=values, backend=backend, options=options or None, queue=queue)
            what = (f"queued {record.id} (#{record.queue_position}, needs {record.queue_mem_gb:g} GB)"
                    if record.status == "queued" else f"launched {record.id}")
            self.post_message(CommandDone(what, select=record.id))
        except Exception as exc:  # UserError: one sentence; anything else: still a sentence
            self.post_message(CommandDone(str(exc), "error"))

    def on_command_done(self, message: CommandDone) -> None:
        if self._winding_down:
            return
        if message.text:
            self.notify(message.text, severity=message.severity, timeout=10 if message.severity == "error" else 5)
            if message.severity == "error":
                self.note(f"✖ {message.text}")  # the toast goes; the error stays until the user acts
        if message.select:
            self.query_one(RunsTable).wanted = message.select  # selected when its row appears
        if message.then_exit:
            self.exit()
        else:
            self._tick()

    def _run_shown(self, what: str) -> str | None:
        """The run a key that stops it acts on: the one the shown tab points at (the runs table's
        selection, the Diagnoses tab's run, the GPU tab's selected process's run), never a run the
        tab does not show; else None, and a warning that says why."""
        tab = self.query_one(TabbedContent).active
        if tab != "main" and not self._panes_mounted:
            tab = ""  # its pane is not there yet: nothing is shown to act on
        if tab == "diag":
            run_id = self.query_one("#diagnoses").selected
            why = "no run is shown on the Diagnoses tab"
        elif tab == "gpu":
            process = self.query_one("#gpu-view").selected_process()
            run_id = process.get("run_id") if process else None
            why = (f"the selected GPU process (pid {process.get('pid')}) is not one of urbanrun's runs" if process
                   else "no GPU process is selected")
        elif tab == "main":
            run_id, why = self._selected(), "no run selected"
        else:
            run_id, why = None, "pick the run on the runs tab (r), the GPU tab's processes or the Diagnoses tab"
        if run_id is None:
            self.notify(f"{what}: {why}", severity="warning")
        return run_id

    def _on_runs_tab(self, what: str) -> bool:
        """Keys that act on the runs table: on another tab they would act where nobody looks."""
        if self.query_one(TabbedContent).active == "main":
            return True
        self.notify(f"{what} acts on the runs tab: press r first", severity="warning")
        return False

    def action_kill(self) -> None:
        run_id = self._run_shown("nothing to stop")
        if run_id and self._writable():
            self.with_state(lambda: self._is_active(run_id) and self.push_screen(
                ConfirmKill(run_id, getattr(self.config, "kill_grace", 10.0)),
                lambda yes: yes and self._kill(run_id, False)))

    def action_kill_now(self) -> None:
        run_id = self._run_shown("nothing to kill")
        if run_id and self._writable():
            self.with_state(lambda: self._is_active(run_id) and self._kill(run_id, True))

    def _is_active(self, run_id: str) -> bool:
        """Something of the run is alive: it runs, or it ended leaving processes behind."""
        run = self.state.runs.get(run_id)
        if run is None:
            self.notify(f"{run_id} is not a run this urbanrun knows", severity="warning")
            return False
        record = run.record
        if record.get("status") not in ("queued", "starting", "pending", "running") and not record.get("leftovers"):
            self.notify(f"{run_id} already ended ({record.get('status')}): nothing to stop", severity="warning")
            return False
        return True

    @work(thread=True, group="commands")
    def _kill(self, run_id: str, force: bool) -> None:
        try:
            self.source.kill(run_id, force=force)  # returns at once; escalation happens in poll
            self.post_message(CommandDone(f"{'killing' if force else 'stopping'} {run_id}"))
        except Exception as exc:
            self.post_message(CommandDone(str(exc), "error"))

    def _relaunch_target(self) -> str | None:
        """The run whose diagnosis is shown on the Diagnoses tab, else the runs table's selection."""
        on_diagnoses = self._tab_with_pane() == "diag"
        return self.query_one("#diagnoses").selected if on_diagnoses else self._selected()

    def _update_relaunch_offer(self) -> None:
        """Whether R applies (read under the state; check_action only reads the answer)."""
        run = self.state.runs.get(self._relaunch_target() or "")
        offered = run is not None and not self.read_only and bool(self._remedies(run)[0])
        if offered != self._relaunch_offered:
            self._relaunch_offered = offered
            self.refresh_bindings()

    def action_relaunch(self) -> None:
        run_id = self._relaunch_target()
        if run_id and self._writable():
            self.with_state(lambda: self._offer_remedies(run_id))
        elif not run_id:
            self.notify("no run selected: pick the run to relaunch first", severity="warning")

    def _remedies(self, run) -> tuple[list, str]:
        from urbanrun.engine.diagnosis.run_doctor import relaunch_remedies
        from .diagnoses_pane import run_diagnoses

        recipe = self.config.recipes.get(run.record.get("recipe")) if self.config else None
        return relaunch_remedies(recipe, run.record.get("params", {}), run_diagnoses(run))

    def _remedy_note(self, run) -> str | None:
        """For the diagnoses pane: "" when R applies to this run, else why not (None in a replay)."""
        return None if self.read_only else self._remedies(run)[1]

    def _offer_remedies(self, run_id: str) -> None:
        run = self.state.runs.get(run_id)
        if run is None:
            return
        options, why_not = self._remedies(run)
        if not options:
            self.notify(f"{run_id}: no relaunch remedy: {why_not}", severity="warning", timeout=15)  # as the pane says it
            return
        self.push_screen(RemedyScreen(run_id, options), lambda choice: choice and self._relaunch(run_id, choice))

    @work(thread=True, group="commands")
    def _relaunch(self, run_id: str, choice) -> None:
        change, text = choice
        try:
            child = self.source.relaunch(run_id, change, text)
            self.post_message(CommandDone(f"relaunched as {child.id} ({text})", select=child.id))
        except Exception as exc:
            self.post_message(CommandDone(str(exc), "error"))

    def action_queue_move(self, by: int) -> None:
        run_id = self._selected() if self._on_runs_tab("[ and ]") else None
        if run_id and self._writable():
            self.with_state(lambda: self._queued(run_id) and self._move_queued(run_id, by))

    def _queued(self, run_id: str) -> bool:
        if self.state.runs[run_id].record.get("status") != "queued":
            self.notify(f"{run_id} is not waiting in the launch queue", severity="warning")
            return False
        return True

    @work(thread=True, group="commands")
    def _move_queued(self, run_id: str, by: int) -> None:
        try:
            moved = self.source.move_queued(run_id, by)
            self.post_message(CommandDone(f"{run_id} moved {'earlier' if by < 0 else 'later'} in the queue"
                                          if moved else f"{run_id} is already {'first' if by < 0 else 'last'}"))
        except Exception as exc:
            self.post_message(CommandDone(str(exc), "error"))

    def action_observe(self) -> None:
        if self._writable():
            self.push_screen(PromptScreen("Cross-agent observation (model changes, data loading, priorities); "
                                          "run ids in it are linked", ""), self._observed)

    def _observed(self, text) -> None:
        if text and text.strip():
            self._observe(text.strip())

    @work(thread=True, group="commands")
    def _observe(self, text: str) -> None:
        try:
            path = self.source.observe(text, self.pad_settings)  # the scratchpad this app shows
            self.post_message(CommandDone(f"observation written to {path}"))
        except Exception as exc:
            self.post_message(CommandDone(f"observation not written: {exc}", "error"))

    def action_import_runs(self) -> None:
        if self._writable():
            self.push_screen(PromptScreen("Import runs from a folder or file (lightning_logs, wandb, TensorBoard, CSV)",
                                          "~/UrbanRepML/lightning_logs"), self._import_chosen)

    def _import_chosen(self, path) -> None:
        if path:
            self._import(path)

    @work(thread=True, group="commands")
    def _import(self, path: str) -> None:
        try:
            records = self.source.import_runs(path)
            self.post_message(CommandDone(f"imported {len(records)} run(s): " + ", ".join(r.id for r in records)))
        except Exception as exc:
            self.post_message(CommandDone(str(exc), "error"))

    def action_mark(self) -> None:
        if self.read_only and hasattr(self.source, "toggle_pause"):
            paused = self.source.toggle_pause()
            self.notify("replay paused" if paused else "replay resumed")
            return
        if not self._on_runs_tab("space (mark)"):
            return
        self.query_one(RunsTable).toggle_mark()
        self._plot_dirty = True
        self.redraw()

    def action_compare(self) -> None:
        marked = sorted(self.query_one(RunsTable).marked, reverse=True)
        if len(marked) < 2:
            self.notify("mark two or more runs with space, then press c", severity="warning")
            return
        from .compare import CompareScreen

        self.push_screen(CompareScreen(self.state, marked))

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.display = True
        box.focus()

    def on_log_pane_follow_changed(self, event: LogPane.FollowChanged) -> None:
        self.query_one(LogStatus).set_following(event.following)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "search":
            self.note(self.query_one(LogPane).search(event.value))
            event.input.display = False
            self.query_one(RunsTable).focus()

    def action_next_match(self, direction: int) -> None:
        self.note(self.query_one(LogPane).next_match(direction))

    def action_follow(self) -> None:
        self.query_one(LogPane).follow()

    def action_wrap_log(self) -> None:
        log = self.query_one(LogPane)
        log.set_wrap(not log.wrap)
        self.notify("log lines wrap" if log.wrap else "log lines are cut at the edge (tab to the log, then → reads on)",
                    timeout=3)

    def action_zoom_log(self) -> None:
        self.query_one("#lower").toggle_class("-log-zoom")  # the loss pane hides; the log takes the width

    def action_metric(self, step: int) -> None:
        self.with_state(lambda: self.query_one(LossPane).cycle_metric(self.state, self._selected(), step)
                         and self.redraw())

    def action_smoothing(self, direction: int) -> None:
        self.notify(f"smoothing {self.query_one(LossPane).change_smoothing(direction):g}", timeout=2)
        self.redraw()

    def action_log_y(self) -> None:
        pane = self.query_one(LossPane)
        pane.log_y = not pane.log_y
        self.redraw()

    def action_x_axis(self) -> None:
        pane = self.query_one(LossPane)
        pane.axis = "time" if pane.axis == "step" else "step"
        self.redraw()

    def action_curves_grid(self) -> None:
        pane = self.query_one(LossPane)
        pane.grid = not pane.grid
        self.redraw()

    def action_curves_filter(self) -> None:
        pane = self.query_one(LossPane)
        title = "Show the metrics whose names contain (words; empty or esc shows all)" + (f" — now '{pane.filter}'" if pane.filter else "")
        self.push_screen(PromptScreen(title, "loss val acc"), self._curves_filtered)

    def _curves_filtered(self, text) -> None:
        self.query_one(LossPane).filter = text or ""
        self.redraw()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        target = focus.main_widget(self.screen, tab)
        if target is not None:  # now, not after the tab's message: keys typed right after `s` are the editor's
            self.screen.set_focus(target)
        self.redraw()

    def action_save_pad(self) -> None:
        if self._tab_with_pane() == "pad":
            self.query_one("#scratchpad").save()  # in a worker; its note comes back as a message

    def action_help(self) -> None:
        from .help import help_text

        self.push_screen(HelpScreen(help_text(self, self.BINDINGS)))

    def action_quit_app(self) -> None:
        self.with_state(self._quit)

    def _quit(self) -> None:
        running = [r.id for r in self.state.runs.values() if r.record.get("status") in ("starting", "running")]
        if running and not self.read_only:
            self.quit_message = (f"{len(running)} run(s) keep going: " + ", ".join(running) +
                                 "\n`urbanrun` picks them up again; `urbanrun ls` lists them.")
        store = getattr(self.source, "store", None)
        if self.read_only or store is None or isinstance(self.screen, SummaryScreen):
            self.exit()
            return
        self._draft_summary(store)

    @work(thread=True, group="commands")
    def _draft_summary(self, store) -> None:
        from urbanrun.engine.notes.autolog import draft_summary

        records, _ = store.load_all()  # every record, fresh from disk: here, not on the UI thread
        self.post_message(SummaryDrafted(draft_summary(records)))

    def on_summary_drafted(self, message: SummaryDrafted) -> None:
        if message.draft == "No training runs today." or self._winding_down:
            self.exit()
        else:
            self.push_screen(SummaryScreen(message.draft), self._summary_written)

    def _summary_written(self, text) -> None:
        if text and text.strip():
            self._write_summary(text.strip())
        else:
            self.exit()

    @work(thread=True, group="commands")
    def _write_summary(self, text: str) -> None:
        from urbanrun.engine.notes.autolog import write_summary

        try:  # takes the scratchpad folder's lock: a worker may wait for it, the UI may not
            path = write_summary(self.pad_settings, text)
            note = f"summary written to {path}"
        except OSError as exc:
            note = f"summary not written: {exc}"
        self.quit_message = (self.quit_message + "\n" if self.quit_message else "") + note
        self.post_message(CommandDone("", then_exit=True))

    def get_system_commands(self, screen):
        # not ↑/↓, nor what does not apply now (R where no remedy applies)
        ours = [b for b in self.BINDINGS if not b.action.startswith(("runs_cursor", "curve_cursor", "leave_text_field"))
                and (b.action != "relaunch" or self._relaunch_offered)]
        titles = {b.description.capitalize() for b in ours}
        for command in super().get_system_commands(screen):
            if command.title not in titles:  # ours does the same, and more (quit drafts the summary)
                yield command
        for binding in ours:
            yield SystemCommand(f"{binding.description.capitalize()} ({self.get_key_display(binding)})",
                                binding.tooltip or binding.description,
                                lambda action=binding.action: self._run_from_palette(action))

    async def _run_from_palette(self, action: str) -> None:
        self._palette_action = True  # chosen by name in the palette: not a key typed into a field
        try:
            await self.run_action(action)
        finally:
            self._palette_action = False

    def on_key(self, event) -> None:
        if event.key == "escape" and self.status_note:
            self.note(None)
        if event.key == "escape" and isinstance(self.focused, RunsTable) and self._curve_cursor_target():
            self.query_one(LossPane).action_cursor_off()  # the cursor ←/→ showed goes, as on the plot
        if event.key == "R" and not self._relaunch_offered and focus.keys_allowed(self.focused) \
                and self.screen is self.screen_stack[0]:
            self.action_relaunch()  # R is disabled here: say why (no run, no remedy for its cause, a replay)

    # -- errors --------------------------------------------------------------------------------------
    def report_pane_error(self, pane, exc: Exception) -> None:
        """A pane could not draw: it shows a one-line error; the traceback goes to the session folder."""
        name = pane.pane_name() if hasattr(pane, "pane_name") else type(pane).__name__
        if self.errors.pane_error(name, exc) is not False:
            self.log.error(f"render error in {name}: {exc!r}")

    def _handle_exception(self, error: Exception) -> None:
        # Textual ends the app on an unhandled error (exit code 1); keep its traceback first
        path = self.errors.write("fatal error: the app stopped", error)
        if path is not None:
            self.quit_message = f"urbanrun stopped on an internal error; traceback in {path}"
        super()._handle_exception(error)


def make_app(source, **kwargs) -> UrbanrunApp:
    return UrbanrunApp(source, **kwargs)

