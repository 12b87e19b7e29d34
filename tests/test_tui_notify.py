"""Notifications: one toast when a run ends, fails or gets a new kind of diagnosis (never again at
the next poll); a terminal notification (OSC 777 / OSC 9) and the bell only while the terminal is
not focused; [notify] validated like every other table."""

from __future__ import annotations

import os
import re
import sys

import pexpect
import pytest
from textual import events

from urbanrun.engine.core.config import _build, load_config
from urbanrun.engine.core.config import Notify
from urbanrun.engine.core.errors import UserError
from urbanrun.engine.core.state import RunState
from urbanrun.engine.session.loop import Engine
from urbanrun.tui.app import make_app
from urbanrun.tui.notify import Note, notifications, terminal_sequence

from conftest import cli
from test_tui import wait_until

OOM = {"kind": "cuda_oom", "severity": "error", "summary": "CUDA out of memory"}
NAN = {"kind": "nan_loss", "severity": "error", "summary": "the loss is NaN"}
SLOW = {"kind": "stalled", "severity": "warning", "summary": "no output for 5 min"}


def run(run_id, status="running", diagnoses=(), **record):
    return RunState(record={"id": run_id, "status": status, **record}, diagnoses=list(diagnoses))


# -- what to tell: a pure function of (what was told, the runs now) ---------------------------------
def test_the_first_look_tells_nothing_and_later_changes_are_told_once():
    told, notes = notifications(None, {"a": run("a", "failed", [OOM], exit_code=1), "b": run("b")})
    assert notes == []  # opening urbanrun does not toast its history
    told, notes = notifications(told, {"a": run("a", "failed", [OOM], exit_code=1), "b": run("b", "exited", exit_code=0)})
    assert [(n.about, n.title, n.severity) for n in notes] == [("ended", "b ended", "information")]
    assert notifications(told, {"b": run("b", "exited", exit_code=0)})[1] == []  # the next poll: nothing


def test_a_failure_with_its_diagnosis_is_one_note_naming_the_cause():
    told, _ = notifications(None, {})
    told, notes = notifications(told, {"c": run("c", "starting")})
    assert notes == []
    told, notes = notifications(told, {"c": run("c", "failed", [OOM], exit_code=1)})
    assert notes == [Note("failed", "c", "c failed", "exit code 1: cuda_oom: CUDA out of memory", "error")]
    killed = notifications(told, {"k": run("k", "killed", signal=15)})[1]  # new, already ended: told
    assert [(n.title, n.body, n.severity) for n in killed] == [("k killed", "signal 15", "warning")]


def test_a_diagnosis_kind_is_told_once_even_when_it_goes_and_comes_back():
    told, _ = notifications(None, {"r": run("r")})
    told, notes = notifications(told, {"r": run("r", diagnoses=[SLOW])})
    assert [(n.about, n.title, n.severity) for n in notes] == [("diagnosis", "r: stalled", "warning")]
    told, notes = notifications(told, {"r": run("r")})  # the trend cleared
    told, notes2 = notifications(told, {"r": run("r", diagnoses=[SLOW])})  # and came back
    assert notes == notes2 == []
    told, notes = notifications(told, {"r": run("r", diagnoses=[SLOW, NAN])})
    assert [n.title for n in notes] == ["r: nan_loss"]
    # it then fails of it: one note, the ending, naming the diagnosis already told
    told, notes = notifications(told, {"r": run("r", "failed", [SLOW, NAN], exit_code=1)})
    assert [(n.about, n.body) for n in notes] == [("failed", "exit code 1: nan_loss: the loss is NaN")]


def test_on_filters_and_imports_are_not_ends():
    told, _ = notifications(None, {})
    runs = {"i": run("i", "imported"), "f": run("f", "failed", [OOM], exit_code=1)}
    _, notes = notifications(told, runs, on=("diagnosis",))  # the failure is not asked for: its diagnosis is
    assert [(n.about, n.run_id) for n in notes] == [("diagnosis", "f")]
    assert notifications(told, runs, on=())[1] == []
    assert notifications(told, {"i": run("i", "imported")})[1] == []


# -- the terminal's bytes ---------------------------------------------------------------------------
NOTE = Note("failed", "20260101-000000-x-ab12", "20260101-000000-x-ab12 failed", "exit 1", "error")


def test_terminal_sequences_per_setting():
    assert terminal_sequence(NOTE, Notify(terminal="osc777", bell=False), env={}) == \
        "\x1b]777;notify;urbanrun: 20260101-000000-x-ab12 failed;exit 1\x07"
    assert terminal_sequence(NOTE, Notify(terminal="osc9", bell=True), env={}) == \
        "\x1b]9;urbanrun: 20260101-000000-x-ab12 failed: exit 1\x07\x07"
    assert terminal_sequence(NOTE, Notify(terminal="off", bell=True), env={}) == "\x07"
    assert terminal_sequence(NOTE, Notify(terminal="off", bell=False), env={}) == ""
    assert terminal_sequence(NOTE, Notify(), env={"TERM_PROGRAM": "iTerm.app"}).startswith("\x1b]9;")
    assert terminal_sequence(NOTE, Notify(), env={"TERM": "foot"}).startswith("\x1b]777;notify;")
    tmux = terminal_sequence(NOTE, Notify(terminal="osc777", bell=False), env={"TMUX": "/tmp/t,1,0"})
    assert tmux == "\x1bPtmux;\x1b\x1b]777;notify;urbanrun: 20260101-000000-x-ab12 failed;exit 1\x07\x1b\\"


def test_text_from_a_run_cannot_break_out_of_the_sequence():
    evil = Note("diagnosis", "r", "r: a;b\x07\x1b]0;pwned\x07", "line\nwith \x1b[31mescapes\x9b" + "x" * 500, "error")
    out = terminal_sequence(evil, Notify(terminal="osc777", bell=False), env={})
    assert out.startswith("\x1b]777;notify;urbanrun: r: a,b ]0,pwned;line with [31mescapes")
    assert out.count("\x1b") == 1 and out.count("\x07") == 1 and out.endswith("…\x07")
    assert "\x9b" not in out and len(out) < 500


# -- [notify] in config.toml -------------------------------------------------------------------------
@pytest.mark.parametrize("table, words", [
    ('terminal = "loud"', "notify.terminal: must be one of 'auto', 'osc777', 'osc9', 'off'"),
    ('toast = "yes"', "notify.toast: must be true or false"),
    ('bell = 1', "notify.bell: must be true or false"),
    ('on = ["ended", "crashed"]', "notify.on: must be a list of 'ended', 'failed', 'diagnosis'"),
    ('on = "failed"', "notify.on: must be a list of"),
    ('sound = true', "notify.sound: is not a setting of notify (known: toast, terminal, bell, on)"),
])
def test_bad_notify_settings_are_one_sentence(tmp_path, table, words):
    text = f"[notify]\n{table}\n"
    with pytest.raises(UserError, match="line 2") as err:
        _build(tmp_path / "config.toml", text, __import__("tomllib").loads(text))
    assert words in str(err.value)


def test_notify_settings_are_read_and_a_bad_one_stops_the_cli_with_exit_2(workspace):
    text = (workspace / "config.toml").read_text()
    (workspace / "config.toml").write_text(text + '\n[notify]\nterminal = "osc9"\non = ["failed"]\nbell = false\n')
    assert load_config(workspace / "config.toml").notify == Notify(terminal="osc9", on=("failed",), bell=False)
    (workspace / "config.toml").write_text(text + '\n[notify]\nterminal = "beep"\n')
    proc = cli("ls", cwd=workspace)
    assert proc.returncode == 2 and "notify.terminal: must be one of" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


# -- the real app, real runs ----------------------------------------------------------------------------
def recorded(app):
    """What the app toasts and writes to the terminal (each still goes where it went)."""
    toasts, written = [], []
    notify, write = app.notify, app.write_terminal

    def toast(message, *, title="", **kw):
        toasts.append((title, message, kw.get("severity")))
        return notify(message, title=title, **kw)

    def terminal(text):
        written.append(text)
        return write(text)

    app.notify, app.write_terminal = toast, terminal
    return toasts, written


async def test_real_runs_ending_and_failing_give_one_toast_each_and_osc_only_when_unfocused(workspace, monkeypatch):
    for name in ("TMUX", "TERM_PROGRAM", "KITTY_WINDOW_ID"):  # "auto" picks OSC 777 here
        monkeypatch.delenv(name, raising=False)
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        toasts, written = recorded(app)
        ok = app.source.launch("cones", values={"epochs": 1, "cones": 8})
        await wait_until(pilot, lambda: any(ok.id in t[0] for t in toasts), seconds=120)
        await pilot.pause(1.5)  # a few more polls: nothing new to tell
        assert [t[0] for t in toasts if ok.id in t[0]] == [f"{ok.id} ended"]
        assert toasts[0][1].startswith("exit code 0; best ") and toasts[0][2] == "information"
        assert written == []  # the terminal is focused: the toast is enough

        app.post_message(events.AppBlur())  # the user went to another window
        await wait_until(pilot, lambda: not app.app_focus)
        bad = app.source.launch("exit_after", values={"code": 3, "seconds": 0.2})
        await wait_until(pilot, lambda: any(bad.id in t[0] for t in toasts), seconds=60)
        await pilot.pause(1.5)
        mine = [t for t in toasts if bad.id in t[0]]
        assert len(mine) == 1 and mine[0][0] == f"{bad.id} failed" and mine[0][2] == "error"
        assert "exit code 3" in mine[0][1]
        assert len(written) == 1 and f"\x1b]777;notify;urbanrun: {bad.id} failed;" in written[0]
        assert written[0].endswith("\x07\x07")  # the notification, then the bell
    engine.close()


# -- a real terminal: focus reports in, notification bytes out ---------------------------------------
def test_in_a_real_terminal_an_unfocused_failure_writes_osc_777_and_the_bell_once(workspace):
    """urbanrun in a pseudo-terminal: the terminal reports focus out (CSI O), as xterm, foot or
    tmux with focus-events do; a run launched from the CLI fails meanwhile. (Focused: no bytes,
    see the Pilot test above.)"""
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TERM_PROGRAM", "KITTY_WINDOW_ID")}
    env["TERM"] = "xterm-256color"
    tui = pexpect.spawn(sys.executable, ["-m", "urbanrun.engine.cli"], cwd=str(workspace), env=env,
                        dimensions=(30, 100), encoding="utf-8", codec_errors="replace", timeout=60)
    try:
        tui.expect("Diagnoses")  # drawn
        tui.send("\x1b[O")  # the user went to another window
        away = cli("launch", "exit_after", "--set", "code=3", "--set", "seconds=0.1", cwd=workspace, check=True)
        away_id = re.search(r"\d{8}-\d{6}-exit_after-[0-9a-f]{4}", away.stdout).group(0)
        tui.expect(re.escape(f"\x1b]777;notify;urbanrun: {away_id} failed;") + r"[^\x07\x1b]*\x07\x07")
        tui.expect([pexpect.TIMEOUT, pexpect.EOF], timeout=2.5)  # five polls later: told once, not again
        assert "\x1b]777;" not in tui.before and "\x07\x07" not in tui.before
    finally:
        tui.terminate(force=True)
