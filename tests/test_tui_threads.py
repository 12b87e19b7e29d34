"""The boundary between the poll thread and the UI thread, with a real engine and the real app:
one State for the session (the engine's; the app keeps no copy), the UI never waits while a
poll holds the state (it draws, and runs key actions, when the poll's events arrive), and
quitting while a poll is in flight lets that poll finish before the screens go."""

from __future__ import annotations

import gc

from urbanrun.engine.core.config import load_config
from urbanrun.engine.core.state import State
from urbanrun.engine.session.loop import Engine
from urbanrun.tui.app import make_app
from urbanrun.tui.runs_table import RunsTable

from test_tui import wait_until


def _states() -> list[State]:
    """Every State in the process, those a started app froze out of collections too (tui/collector.py:
    frozen objects are in no generation that get_objects lists)."""
    gc.collect()
    frozen = gc.get_freeze_count()
    gc.unfreeze()
    try:
        return [o for o in gc.get_objects() if isinstance(o, State)]
    finally:
        if frozen:
            gc.freeze()


async def test_one_state_for_the_session(workspace):
    before = _states()
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        record = engine.launch("exit_after", values={"code": 0, "seconds": 0.2})
        await wait_until(pilot, lambda: app.query_one(RunsTable).row_count == 1)
        await wait_until(pilot, lambda: engine.state.runs[record.id].status == "exited")
        assert app.state is engine.state
        assert [s for s in _states() if not any(s is b for b in before)] == [engine.state]
        assert engine.state.runs[record.id].log_lines_total >= 1  # the engine's state saw the run's output
        await pilot.press("q")
    engine.close()


async def test_the_ui_never_waits_for_a_poll_and_catches_up_after_it(workspace):
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_until(pilot, lambda: not app._polling)
        engine.state.guard.acquire()  # as a long poll would hold it (the next poll blocks on it)
        try:
            record = engine.launch("exit_after", values={"code": 0, "seconds": 0.2})
            await wait_until(pilot, lambda: app._polling)  # a poll worker is in flight, blocked
            app.redraw()  # returns at once instead of waiting: the table shows nothing new yet
            await pilot.press("m")  # a key action that reads the state is deferred, not run blind
            await pilot.pause(0.3)
            assert app.query_one(RunsTable).row_count == 0
            assert app.is_running and app._after_poll
        finally:
            engine.state.guard.release()
        await wait_until(pilot, lambda: app.query_one(RunsTable).row_count == 1)
        assert not app._after_poll  # the deferred action ran after the poll's message
        await wait_until(pilot, lambda: engine.state.runs[record.id].status == "exited")
    engine.close()


async def test_quitting_during_a_poll_lets_it_finish_before_the_screens_go(workspace):
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_until(pilot, lambda: not app._polling)
        engine.state.guard.acquire()
        try:
            engine.launch("exit_after", values={"code": 0, "seconds": 0.2})
            await wait_until(pilot, lambda: app._polling)
            app.exit()
            await pilot.pause(0.5)
            assert app.is_running  # waits for the poll in flight; no new poll starts
            assert app.query_one(RunsTable) is not None
        finally:
            engine.state.guard.release()
        await wait_until(pilot, lambda: not app.is_running, seconds=20)
    assert app.return_code == 0  # an exception on a torn-down screen would have made it 1
    assert len(engine.state.runs) == 1  # the last poll's events were reduced, not lost
    engine.close()


async def test_scratchpad_files_are_read_and_saved_off_the_ui_thread(workspace):
    """Today's file loads in a worker, reloads when appended to while unedited, and ctrl+s saves
    in a worker: while another writer holds the folder's lock the UI keeps answering keys, and
    the save lands (merged with the append) once the lock is free."""
    import datetime as dt

    from textual.widgets import TextArea

    from urbanrun.engine.notes import scratchpad
    from urbanrun.tui.scratchpad_pane import ScratchpadPane

    settings = scratchpad.Settings(root=workspace / "pad")
    path = scratchpad.today_path(settings, dt.date(2026, 1, 15))
    path.parent.mkdir(parents=True)
    path.write_text("# notes\nfirst line\n")
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad", today=dt.date(2026, 1, 15))
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("s")
        editor = app.query_one("#pad-editor", TextArea)
        await wait_until(pilot, lambda: editor.text == "# notes\nfirst line\n" and not editor.read_only)
        scratchpad.append(path, "## 10:00 — launched a run")  # the auto-log, while nothing is edited
        await wait_until(pilot, lambda: "launched a run" in editor.text)
        editor.insert("my own line\n", location=editor.document.end)
        scratchpad.append(path, "## 10:01 — a run ended")  # appended while the editor has edits
        await pilot.pause(1.5)
        assert "a run ended" not in editor.text  # never reloaded over unsaved edits
        with scratchpad.locked(path):  # another writer holds the lock
            app.action_save_pad()
            assert app.focused is editor
            await pilot.press("escape")  # the UI answers keys meanwhile: escape leaves the editor
            await wait_until(pilot, lambda: app.focused is not editor)
            assert "my own line" not in path.read_text()
        await wait_until(pilot, lambda: "my own line" in path.read_text())
        saved = path.read_text()
        assert "a run ended" in saved and "launched a run" in saved  # the append was merged, not lost
        await wait_until(pilot, lambda: editor.text == saved)
        assert app.query_one(ScratchpadPane).base == saved
    engine.close()


async def test_save_as_defaults_writes_config_in_a_worker(workspace):
    """ctrl+s in the launch form: config.toml written and read back off the UI thread; the form,
    the app and the engine then launch with the new default."""
    from urbanrun.tui.dialogs import ConfirmScreen
    from urbanrun.tui.launch_form import LaunchForm

    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LaunchForm))
        form = app.screen
        await pilot.pause(0.3)
        form.query_one("#f-epochs").value = "7"
        await pilot.pause(0.2)
        form.action_save_defaults()
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: engine.config.recipes["cones"].param("epochs").default == 7)
        assert load_config(workspace / "config.toml").recipes["cones"].param("epochs").default == 7
        await wait_until(pilot, lambda: app.config.recipes["cones"].param("epochs").default == 7)
        assert form.config.recipes["cones"].param("epochs").default == 7
    engine.close()


async def test_widget_messages_dispatched_while_the_screens_go_are_ignored(workspace):
    """A row of the runs table highlighted or a tab shown, still queued when the app shuts down (q,
    or the end of a test) is dispatched after the panes are gone: each was a traceback (NoMatches,
    ScreenStackError) and exit code 1 (seen at the end of two TUI tests on a loaded machine)."""
    from textual.widgets import DataTable, TabbedContent

    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        engine.launch("exit_after", values={"code": 0, "seconds": 0.1})
        await wait_until(pilot, lambda: app.query_one(RunsTable).row_count == 1)
        table, tabs = app.query_one(RunsTable), app.query_one(TabbedContent)
        late = [DataTable.RowHighlighted(table, 0, next(iter(table.rows))),
                TabbedContent.TabActivated(tabs, tabs.query("ContentTab").first())]
    assert not app.query(RunsTable)  # the screens are gone, as when Textual dispatched the late messages
    app.on_data_table_row_highlighted(late[0])  # each is ignored (each raised)
    app.on_tabbed_content_tab_activated(late[1])
    engine.close()


async def _type_in_the_pad(pilot, app, words: str) -> None:
    from textual.widgets import TextArea

    await pilot.press("s")
    editor = app.query_one("#pad-editor", TextArea)
    await wait_until(pilot, lambda: not editor.read_only)  # today's file is loaded
    editor.move_cursor(editor.document.end)
    await pilot.press(*words)
    await wait_until(pilot, lambda: words in editor.text)
    await pilot.press("escape")  # back to the runs table: the edits are still unsaved


async def test_unsaved_scratchpad_edits_are_saved_on_the_way_out(workspace):
    """Notes typed into the scratchpad and never saved with ctrl+s: q, ctrl+q and the quit
    summary's esc used to drop them without a word; they are saved (in a worker, merged with
    what was appended meanwhile) before the app exits, and the quit message says where."""
    import datetime as dt

    from urbanrun.engine.notes import scratchpad
    from urbanrun.tui.dialogs import SummaryScreen

    today = dt.date(2026, 1, 15)
    path = scratchpad.today_path(scratchpad.Settings(root=workspace / "pad"), today)
    for way, words in (("q", "qkgsd noted"), ("ctrl+q", "lost before")):
        engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
        app = make_app(engine, scratchpad_dir=workspace / "pad", today=today)
        async with app.run_test(size=(80, 24)) as pilot:
            await _type_in_the_pad(pilot, app, words)
            scratchpad.append(path, "## 10:00 — appended meanwhile")  # the auto-log, while edits wait
            await pilot.press(way)  # no run today: q exits without the summary dialog
            await wait_until(pilot, lambda: not app.is_running, seconds=20)
        engine.close()
        text = path.read_text()
        assert words in text and "appended meanwhile" in text, (way, text)
        assert str(path) in app.quit_message and "saved" in app.quit_message

    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad", today=today)
    async with app.run_test(size=(80, 24)) as pilot:
        engine.launch("exit_after", values={"code": 0, "seconds": 0.1})  # a run today: q asks for the summary
        await wait_until(pilot, lambda: app.query_one(RunsTable).row_count == 1)
        await _type_in_the_pad(pilot, app, "before the summary")
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen))
        await pilot.press("escape")  # quit without writing the summary: the notes are still kept
        await wait_until(pilot, lambda: not app.is_running, seconds=20)
    engine.close()
    assert "before the summary" in path.read_text()


async def test_polls_run_in_one_poll_thread_that_ends_with_the_app(workspace):
    """One long-lived thread polls, woken by the timer: no Textual worker per poll (its task and
    state messages cost the UI thread at every poll); the thread ends when the app does."""
    import threading

    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    polled_in = []
    real_poll = engine.poll
    engine.poll = lambda *a, **k: (polled_in.append(threading.current_thread()), real_poll(*a, **k))[1]
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    groups = []  # the groups of the workers the app started
    real_run_worker = app.run_worker
    app.run_worker = lambda *a, **k: (groups.append(k.get("group")), real_run_worker(*a, **k))[1]
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_until(pilot, lambda: len(polled_in) >= 3)
        assert len(set(polled_in)) == 1 and polled_in[0] is not threading.main_thread()
        assert "poll" not in groups
        await pilot.press("q")
    polled_in[0].join(timeout=10)
    assert not polled_in[0].is_alive()
    engine.close()


async def test_an_app_that_dies_during_a_poll_ends_after_that_poll(workspace):
    """An app that dies on an error (here: a handler's bug) while a poll is in flight: run() returns
    only once that poll is over, so the engine, closed then (tui/main.py), is never closed under
    a poll (the poll thread outlived the app: the poll went on reading closed files and reopened
    the session recording after close)."""
    import threading

    import pytest

    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    hold, in_poll, finished = threading.Event(), threading.Event(), threading.Event()
    real_poll = engine.poll

    def poll(*args, **kwargs):
        if not hold.is_set() or in_poll.is_set():
            return real_poll(*args, **kwargs)
        in_poll.set()
        threading.Event().wait(3)  # a slow poll (a hung file system): the app dies meanwhile
        events = real_poll(*args, **kwargs)
        finished.set()
        return events

    engine.poll = poll
    app = make_app(engine, scratchpad_dir=workspace / "pad")

    def bug() -> None:
        raise RuntimeError("a handler's bug")

    with pytest.raises(RuntimeError, match="a handler's bug"):
        async with app.run_test(size=(80, 24)) as pilot:
            hold.set()
            await wait_until(pilot, in_poll.is_set)
            app.call_later(bug)
            await wait_until(pilot, lambda: not app.is_running, seconds=20)
    assert finished.is_set()  # the app ended after its poll, not under it


async def test_a_started_app_is_left_out_of_later_garbage_collections(workspace, monkeypatch):
    """A full collection walked every object of the process (100-400 ms while runs were watched):
    once the panes are mounted, the app's objects are frozen out of every later collection, and the
    young generation is collected less often (tui/collector.py); the app then works as before."""
    from urbanrun.tui import collector

    monkeypatch.setattr(collector, "_settled", False)  # once per process: another test's app may have come first
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_until(pilot, lambda: app._panes_mounted)
        table = app.query_one(RunsTable)
        assert not any(o is table for o in gc.get_objects())  # frozen: in no generation a collection walks
        assert gc.get_freeze_count() > 10_000 and gc.get_threshold()[0] >= collector.YOUNG
        record = engine.launch("exit_after", values={"code": 0, "seconds": 0.2})
        await wait_until(pilot, lambda: table.row_count == 1)
        await wait_until(pilot, lambda: engine.state.runs[record.id].status == "exited")
        await pilot.press("q")
    engine.close()


async def test_a_bug_in_a_poll_does_not_stop_polling(workspace):
    """An exception in the poll thread outside the source's own call (here: the summary step) is
    shown and the next polls still run: the thread answered nothing, so _polling stayed set, no poll
    was asked again (the screen froze silently) and q waited for that poll for ever."""
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    polls, real_poll, real_summary = [], engine.poll, app._summary_of

    def poll(*args, **kwargs):
        polls.append(1)
        return real_poll(*args, **kwargs)

    def summary_of(run_id, events):
        if len(polls) == 1:
            raise RuntimeError("a bug in the summary step")
        return real_summary(run_id, events)

    engine.poll, app._summary_of = poll, summary_of
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: len(polls) >= 3, seconds=30, shown=lambda: f"{len(polls)} polls")
        assert any("a bug in the summary step" in str(n.message) for n in app._notifications)
        app.exit()
    engine.close()
