"""Notifications: what to tell the user about their runs, and how to reach a terminal that is not
looked at.

`notifications(told, runs, on)` is a pure function of what was told so far and the runs now
(engine/session/transitions.py decides what is new, as for `urbanrun events`): a run that ends,
fails, or gets a diagnosis of a kind not told before gives one Note; a run that ends with new
diagnoses gives one Note naming them, not one each. The first look only takes note of the runs
as they are (`told` None): opening urbanrun, or a replay, does not toast its history. A fast
replay (snapshots, --headless) delivers its whole recording in its first poll, so its screenshots
never show these toasts.

`terminal_sequence` builds the OSC 777 / OSC 9 notification and the bell, with every control
character taken out of the text (a run id or diagnosis cannot end the sequence early or inject
another), wrapped for tmux's passthrough when inside tmux.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from urbanrun.engine.core.config import Notify
from urbanrun.engine.runs.store import ACTIVE
from urbanrun.engine.session.transitions import Told, failed, transition

from .diagnoses_pane import run_diagnoses
from .formatting import cut

TEXT_MAX = 200  # characters of a terminal notification's title or body
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
SEVERITY = {"error": "error", "warning": "warning"}  # a diagnosis's severity -> the toast's


@dataclass(frozen=True)
class Note:
    about: str  # "ended", "failed" or "diagnosis" (the names [notify] on = [...] uses)
    run_id: str
    title: str
    body: str
    severity: str  # Textual's: "information", "warning", "error"


def notifications(told: dict[str, Told] | None, runs: dict, on=("ended", "failed", "diagnosis")
                  ) -> tuple[dict[str, Told], list[Note]]:
    """What to tell about `runs` (run id -> RunState) given what was told; returns what is then told."""
    first_look = told is None
    after: dict[str, Told] = {} if first_look else dict(told)
    notes: list[Note] = []
    for run_id, run in runs.items():
        status, diagnoses = run.record.get("status", "starting"), run_diagnoses(run)
        before = after.get(run_id)
        if before is None and status == "imported":
            before = Told(ended=True)  # an import is not an end
        told_now, news = transition(before or Told(), status in ACTIVE, diagnoses)
        after[run_id] = told_now
        if first_look or not news:
            continue
        ending = news.ended and _ended_note(run_id, run.record, news.diagnoses, diagnoses)
        if ending and ending.about in on:
            notes.append(ending)
        elif "diagnosis" in on:
            notes += [_diagnosis_note(run_id, d) for d in news.diagnoses]
    return after, notes


def _ended_note(run_id: str, record: dict, new: tuple, diagnoses: list) -> Note:
    status = record.get("status", "")
    bad = failed(status, diagnoses)
    if record.get("signal"):  # the title says how it ended (failed, killed, lost): the body says why
        how = f"signal {record['signal']}"
    elif record.get("exit_code") is not None:
        how = f"exit code {record['exit_code']}"
    else:
        how = str(record.get("error") or status)
    worst = sorted(new or diagnoses, key=lambda d: {"error": 0, "warning": 1}.get(d.get("severity"), 2))
    body = how + (f": {worst[0].get('kind')}: {worst[0].get('summary')}" if worst else "")
    best = record.get("loss_best")
    if not bad and isinstance(best, (int, float)):  # how well it went, as the runs table says
        body += f"; best {record.get('loss_name') or 'loss'} {best:.4g}"
    word = "ended" if not bad else "failed" if status == "exited" else status  # exited 0, but with an error
    title = f"{run_id} {word}"
    severity = "information" if not bad else "warning" if status in ("killed", "cancelled") else "error"  # stopped on purpose
    return Note("failed" if bad else "ended", run_id, title, body, severity)


def _diagnosis_note(run_id: str, d: dict) -> Note:
    return Note("diagnosis", run_id, f"{run_id}: {d.get('kind')}", str(d.get("summary") or ""),
                SEVERITY.get(d.get("severity"), "information"))


def clean(text: str) -> str:
    """Text safe inside an OSC string: no control characters (ESC, BEL, C1), bounded length."""
    return cut(" ".join(CONTROL.sub(" ", text).split()), TEXT_MAX)


def terminal_kind(setting: str, env=os.environ) -> str | None:
    """The notification sequence to use: OSC 9 where the terminal is known to show it, else OSC 777."""
    if setting == "off":
        return None
    if setting != "auto":
        return setting
    osc9 = env.get("TERM_PROGRAM") in ("iTerm.app", "WezTerm") or "KITTY_WINDOW_ID" in env
    return "osc9" if osc9 else "osc777"


def terminal_sequence(note: Note, settings: Notify, env=os.environ) -> str:
    """What to write to the terminal for `note` (empty: nothing), per [notify]."""
    kind = terminal_kind(settings.terminal, env)
    title, body = clean(note.title).replace(";", ","), clean(note.body)
    osc = ""
    if kind == "osc777":
        osc = f"\x1b]777;notify;urbanrun: {title};{body}\x07"
    elif kind == "osc9":  # one text; it starts with a letter (ConEmu reads "9;<digit>;" as a command)
        osc = f"\x1b]9;urbanrun: {title}: {body}\x07"
    if osc and env.get("TMUX"):  # tmux passes it on with `set -g allow-passthrough on` (else drops it)
        osc = "\x1bPtmux;" + osc.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return osc + ("\x07" if settings.bell else "")
