"""The real app, driven by Pilot: with a real engine on a temp runs dir (launch from the form,
see the row progress, stop it, see it killed; invalid input refused with its reason), and with
replay fixtures (headless replay is deterministic; its numbers match the recording)."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
from textual.css.query import NoMatches

from urbanrun.engine.core.config import load_config
from urbanrun.engine.session.loop import Engine
from urbanrun.engine.session.recorder import read_session
from urbanrun.engine.session.replay import ReplaySource
from urbanrun.engine.core.state import State
from urbanrun.tui.app import make_app
from urbanrun.tui.dialogs import ConfirmKill
from urbanrun.tui.launch_form import LaunchForm
from urbanrun.tui.runs_table import RunsTable

from conftest import ROOT

SESSIONS = ROOT / "tests" / "fixtures" / "sessions"


async def wait_until(pilot, predicate, seconds=60.0, shown=None):
    """Pause until predicate() holds; a widget it asks for that is not mounted yet counts as not yet.
    `shown()`: what the failure says the app was at instead (a flake seen once is then explained)."""
    for _ in range(int(seconds / 0.2)):
        await pilot.pause(0.2)
        with contextlib.suppress(NoMatches):
            if predicate():
                return
    raise AssertionError("the app never reached the expected state" + (f": {shown()!r}" if shown else ""))


async def test_launch_from_the_form_watch_and_stop(workspace):
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LaunchForm))
        form = app.screen
        await pilot.pause(0.3)
        form.query_one("#f-batch_size").value = "abc"
        await wait_until(pilot, lambda: "must be a whole number" in str(form.query_one("#err-batch_size").render()))
        await pilot.press("enter")  # refused while a field is wrong
        assert isinstance(app.screen, LaunchForm)
        form.query_one("#f-batch_size").value = "4"
        form.query_one("#f-epochs").value = "400"
        await wait_until(pilot, lambda: "--batch-size 4" in str(form.query_one("#command").render()))
        form.action_launch()
        await wait_until(pilot, lambda: len(app.state.runs) == 1)
        run_id = next(iter(app.state.runs))
        await wait_until(pilot, lambda: app.state.runs[run_id].progress.get("epoch", {}).get("n", 0) >= 1)
        table = app.query_one(RunsTable)
        assert table.selected == run_id
        await pilot.press("k")  # the dialog opens between polls: after the one in flight, on a busy machine
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmKill))
        await pilot.press("y")
        await wait_until(pilot, lambda: app.state.runs[run_id].status == "killed")
        assert app.state.runs[run_id].record["changed"] == {"batch_size": 4, "epochs": 400}
        await pilot.press("q")
    engine.close()


async def test_replay_drives_every_pane(workspace):
    app = make_app(ReplaySource(SESSIONS / "cones_gpu.jsonl", fast=True), scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_until(pilot, lambda: len(app.state.runs) == 2)
        await pilot.press("space", "down", "space")  # in a replay, space pauses instead of marking
        for key in ("g", "s", "d", "r", "m", "y", "x", "e", "question_mark", "escape"):
            await pilot.press(key)
            await pilot.pause(0.05)
        await pilot.press("l")  # read-only: no form
        assert not isinstance(app.screen, LaunchForm)


# the panes each tab must show whole at every size: on the screen, at least a row and a column
PANES = {"main": ("#top-bar", "#runs", "#run-summary", "#loss", "#gpu-summary", "#log", "#log-status", "Footer"),
         "gpu": ("#top-bar", "#gpu-status", "#gpu-util", "#gpu-mem", "#gpu-procs", "Footer"),
         "pad": ("#top-bar", "#pad-editor", "Footer"),
         "diag": ("#top-bar", "#diag-list", "#diag-scroll", "Footer")}


def layout_problems(app, tab: str) -> list[str]:
    """What is not whole on the screen: a pane off it or squeezed to nothing, the focus not on a
    visible widget of the tab shown."""
    screen, problems = app.screen.region, []
    for selector in PANES[tab]:
        region = app.screen.query_one(selector).region
        if not region.area or not screen.contains_region(region):
            problems.append(f"{selector} at {region} on a {screen.size} screen")
    focused = app.focused
    if focused is None or not focused.region.area or not screen.contains_region(focused.region.intersection(screen)) \
            or tab != app.query_one("#tabs").active:
        problems.append(f"the focus is on {focused!r} at {getattr(focused, 'region', None)} (tab {tab})")
    return problems


@pytest.mark.parametrize("start", [(80, 24), (250, 70)])
async def test_resizes_cleanly(workspace, start):
    """At each size, on each tab, every pane is on the screen with room to show something and the
    focused widget is visible (it asserted only that nothing crashed)."""
    app = make_app(ReplaySource(SESSIONS / "cones_cpu.jsonl", fast=True), scratchpad_dir=workspace / "pad")
    async with app.run_test(size=start) as pilot:
        await wait_until(pilot, lambda: len(app.state.runs) == 1 and app._panes_mounted)
        for size in ((80, 24), (100, 30), (160, 45), (250, 70), start):
            await pilot.resize_terminal(*size)
            for key, tab in (("g", "gpu"), ("d", "diag"), ("s", "pad"), ("escape", "main")):  # esc leaves the editor
                await pilot.press(key)
                await wait_until(pilot, lambda: app.size == size and not layout_problems(app, tab),
                                 shown=lambda: (size, tab, layout_problems(app, tab)))
        assert app.is_running


def _headless(fixture, out):
    return subprocess.run([sys.executable, "-m", "urbanrun.engine.cli", "--replay", str(fixture), "--headless",
                           "--screenshot", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_headless_replay_is_deterministic_and_matches_the_recording(tmp_path):
    first, second = _headless(SESSIONS / "cones_gpu.jsonl", tmp_path / "a.svg"), \
        _headless(SESSIONS / "cones_gpu.jsonl", tmp_path / "b.svg")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
    # the settled screen: under load a screenshot was taken before the footer had its keys and the
    # GPU summary's host line its row
    svg = (tmp_path / "a.svg").read_text()
    assert "palette" in svg and "RAM" in svg
    # the selected run's summary is there: no poll worker runs headless, and it said "computing…"
    assert "computing" not in svg and "ended-failed" in svg and "step&#160;135/3000" in svg
    state = State()
    events = read_session(SESSIONS / "cones_gpu.jsonl")
    state.apply_all(events)
    assert f"{len(events)} events" in first.stdout
    for run in state.runs.values():
        rec = run.record
        assert f"{run.id}  cones  {rec['status']}" in first.stdout
        assert f"GPU peak {rec['gpu_mem_peak_mb']:.0f} MiB" in first.stdout
    assert "killed (signal 15)" in first.stdout and "exited (exit 0)" in first.stdout


def test_bad_replay_file_is_one_sentence(tmp_path):
    missing = subprocess.run([sys.executable, "-m", "urbanrun.engine.cli", "--replay", str(tmp_path / "nope.jsonl"),
                              "--headless"], capture_output=True, text=True, cwd=ROOT)
    # one sentence that names the file, exit 2
    assert missing.returncode == 2 and "Traceback" not in missing.stderr and missing.stderr.count("\n") == 1
    assert str(tmp_path / "nope.jsonl") in missing.stderr and ("does not exist" in missing.stderr
                                                              or "No such file" in missing.stderr)


def test_tui_does_not_load_torch():
    code = "import sys, urbanrun.tui.app, urbanrun.tui.main; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_import_and_compare_with_an_external_run(workspace):
    from urbanrun.tui.compare import CompareScreen, comparison_rows

    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        app.source.launch("cones", {"epochs": "2"})
        await wait_until(pilot, lambda: any(r.status == "exited" for r in app.state.runs.values()))
        await pilot.press("i")
        await wait_until(pilot, lambda: getattr(app.focused, "id", None) == "prompt")  # Enter must reach its field
        app.screen.query_one("#prompt").value = str(ROOT / "tests/fixtures/metrics/lightning")
        await pilot.press("enter")
        await wait_until(pilot, lambda: any(r.status == "imported" for r in app.state.runs.values()))
        imported = next(r for r in app.state.runs.values() if r.status == "imported")
        table = app.query_one(RunsTable)
        table.move_cursor(row=0)
        await pilot.press("space", "down", "space")
        await wait_until(pilot, lambda: "train_loss" in app.state.runs[imported.id].metrics)
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen), shown=lambda: (table.marked, list(app.state.runs), app.focused))
        rows = {name: (cells, differ) for name, cells, differ in comparison_rows(app.state, sorted(table.marked))}
        assert rows["recipe"] == (["cones", "import"], True) or rows["recipe"] == (["import", "cones"], True)
        assert "best loss" in rows and "-" not in rows["best loss"][0]
    engine.close()


async def test_diagnosis_on_the_row_and_relaunch_with_a_remedy(workspace):
    from urbanrun.tui.dialogs import RemedyScreen

    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(200, 45)) as pilot:
        record = app.source.launch("fake_oom", values={"batch_size": 4, "amp": False})
        table = app.query_one(RunsTable)
        await wait_until(pilot, lambda: app.state.runs.get(record.id) and app.state.runs[record.id].status == "exited"
                         and record.id in [str(k.value) for k in table.rows])  # the row is drawn, not only reduced
        # this run did not OOM (4 <= 8): relaunch it with a remedy by hand
        table.move_cursor(row=list(table.rows).index(record.id))
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, RemedyScreen))
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(app.state.runs) == 2)
        child = next(r for r in app.state.runs.values() if r.id != record.id)
        assert child.record["parent"] == record.id and child.record["recovery"] == "batch_size 4 -> 2"
        oom = app.source.launch("fake_oom", values={"batch_size": 9})
        await wait_until(pilot, lambda: any(r.record.get("parent") == oom.id for r in app.state.runs.values()))
        await wait_until(pilot, lambda: app.state.runs[oom.id].diagnoses)
        cell = table.get_cell(oom.id, "why")
        assert "✖" in str(cell) and "out of memory" in str(cell)
        await pilot.press("d")  # drawn between polls: after the one in flight, on a busy machine
        await wait_until(pilot, lambda: "cuda_oom" in str(app.query_one("#diag-detail").render()))
    engine.close()


async def test_launch_form_warns_when_a_run_will_not_fit(workspace):
    from urbanrun.engine.core.config import DEFAULT_CONFIG
    from urbanrun.engine.runs.store import RunStore

    config = load_config(DEFAULT_CONFIG)
    gpus = [{"index": 0, "name": "NVIDIA GeForce RTX 3090", "mem_total": 24 * 2**30, "mem_free": 24e9}]
    app = make_app(ReplaySource(SESSIONS / "cones_cpu.jsonl", fast=True), scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause(0.3)
        form = LaunchForm(config, "full-area-unet", RunStore(workspace / "runs"), gpus)
        app.push_screen(form)  # the estimate comes from earlier runs, read in a worker
        await wait_until(pilot, lambda: "will NOT fit" in str(form.query_one("#memory").render()))
        form.action_launch()
        await pilot.pause(0.2)
        assert app.screen is form  # the first Enter only warns
        cones = LaunchForm(config, "cones", RunStore(workspace / "runs"), gpus)
        await pilot.press("escape")
        app.push_screen(cones)
        await wait_until(pilot, lambda: "fits" in str(cones.query_one("#memory").render()))


@pytest.mark.parametrize("where", ["missing/shot.svg", "."])
def test_a_screenshot_that_cannot_be_saved_is_one_sentence_before_the_replay(tmp_path, where):
    # into a missing folder it was a traceback after the whole replay; into a folder, the same
    out = tmp_path / where
    done = _headless(SESSIONS / "cones_cpu.jsonl", out)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("urbanrun: --screenshot ") and done.stderr.count("\n") == 1
    assert not (tmp_path / "missing").exists()
