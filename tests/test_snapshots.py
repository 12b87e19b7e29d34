"""SVG snapshots (pytest-textual-snapshot) of the main screen, the GPU view, the launch form and
the scratchpad, from replay fixtures: frozen clock (the replay's own), fixed size and date."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from urbanrun.engine.core.config import _build
from urbanrun.engine.session.replay import ReplaySource
from urbanrun.tui.app import make_app
from urbanrun.tui.launch_form import LaunchForm
from urbanrun.tui.run_summary import RunSummary

from test_tui import wait_until

FIX = Path(__file__).parent / "fixtures"
SIZE = (160, 45)
FORM_CONFIG = """
[recipes.unet]
description = "A recipe as a user writes one"
command = ["python3", "train.py"]
[recipes.unet.params.batch_size]
type = "int"
default = 16
min = 1
help = "Graphs per batch"
[recipes.unet.params.amp]
type = "bool"
default = true
help = "Mixed precision"
[recipes.unet.params.device]
type = "choice"
choices = ["auto", "cpu", "cuda"]
default = "cuda"
[recipes.unet.params.lr]
type = "float"
default = 1e-3
min = 0.0
"""


@pytest.fixture
def here(tmp_path, monkeypatch):
    shutil.copytree(FIX / "scratchpad", tmp_path / ".claude" / "scratchpad")
    shutil.copytree(FIX / "sessions", tmp_path / "sessions")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def replay_app(name="cones_gpu.jsonl"):
    return make_app(ReplaySource(Path("sessions") / name, fast=True),
                    scratchpad_dir=Path(".claude/scratchpad"), today=dt.date(2026, 1, 15))


async def settle(pilot):
    await pilot.pause(0.5)
    await pilot.app.workers.wait_for_complete()
    summary = pilot.app.screen_stack[0].query_one(RunSummary)
    # the selected run's summary comes from a later poll (a timer, late on a busy machine)
    await wait_until(pilot, lambda: summary.summary is not None)
    # the replay has given everything: no more polls, none in flight (a redraw while a poll holds the
    # state is put off until its message, which a loaded machine can deliver after the snapshot)
    pilot.app._poll_timer.pause()
    await wait_until(pilot, lambda: not pilot.app._polling)
    pilot.app.redraw(force_plot=True)  # numbers and curves redraw on a tick (2 s, the plot 5 s): draw the last points now
    await pilot.pause(0.5)
    # a last full layout: the replay's one big poll can leave the GPU summary's auto height from a
    # layout pass taken mid-update (seen as a 1- or 4-line summary from run to run)
    pilot.app.screen.refresh(layout=True)
    await pilot.pause(0.3)


def test_main_screen(here, snap_compare):
    assert snap_compare(replay_app(), terminal_size=SIZE, run_before=settle)


def test_gpu_view(here, snap_compare):
    async def go(pilot):
        await settle(pilot)
        await pilot.press("g")
        await pilot.pause(0.5)
    assert snap_compare(replay_app(), terminal_size=SIZE, run_before=go)


def test_scratchpad(here, snap_compare):
    async def go(pilot):
        await settle(pilot)
        await pilot.press("s")  # the editor gets the focus, and with it a cursor: no blinking in a snapshot
        pilot.app.query_one("#pad-editor").cursor_blink = False
        await pilot.pause(0.5)
    assert snap_compare(replay_app("cones_cpu.jsonl"), terminal_size=SIZE, run_before=go)


def test_launch_form(here, snap_compare):
    config = _build(here / "config.toml", FORM_CONFIG, __import__("tomllib").loads(FORM_CONFIG))

    async def go(pilot):
        await settle(pilot)
        pilot.app.push_screen(LaunchForm(config))
        await pilot.pause(0.5)
    assert snap_compare(replay_app("cones_cpu.jsonl"), terminal_size=SIZE, run_before=go)


SIZES = [(80, 24), (100, 30), (160, 45), (220, 60)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("view", ["main", "help", "launch", "gpu"])
def test_every_size(here, snap_compare, view, size):
    """At every size: the runs table drops low-value columns before the diagnosis, the log
    wraps, the footer keeps ? and q; the help, the launch form and the GPU view fit."""
    config = _build(here / "config.toml", FORM_CONFIG, __import__("tomllib").loads(FORM_CONFIG))

    async def go(pilot):
        await settle(pilot)
        if view == "help":
            await pilot.press("question_mark")
        elif view == "launch":
            pilot.app.push_screen(LaunchForm(config))
        elif view == "gpu":
            await pilot.press("g")
        await pilot.pause(0.5)
    assert snap_compare(replay_app(), terminal_size=size, run_before=go)
