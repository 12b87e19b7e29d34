"""The small things a user reads: the quit summary's "Best" counts only runs that ended well,
`urbanrun ls` lists newest first as the TUI does, compare says `running` (not `running (None)`),
`advise` without a GPU reads as a sentence."""

from __future__ import annotations

import time

from urbanrun.engine.core.state import State
from urbanrun.engine.notes.autolog import draft_summary
from urbanrun.engine.runs.store import RunRecord
from urbanrun.tui.compare import comparison_rows

from conftest import cli, cli_json, wait_for


def test_best_in_the_session_summary_is_a_successful_run():
    now = time.time()
    records = [
        RunRecord(id="20261125-090000-cones-0001", recipe="cones", argv=[], cwd="/", status="failed", created=now,
                  loss_name="loss", loss_best=0.001),
        RunRecord(id="20261125-100000-cones-0002", recipe="cones", argv=[], cwd="/", status="exited", created=now,
                  loss_name="loss", loss_best=0.05),
        RunRecord(id="20261125-110000-cones-0003", recipe="cones", argv=[], cwd="/", status="killed", created=now,
                  loss_name="loss", loss_best=0.002),
    ]
    best = [line for line in draft_summary(records).splitlines() if line.startswith("Best")][0]
    assert "0002" in best and "0001" not in best and "0003" not in best
    assert "No successful run" in draft_summary(records[:1])


def test_ls_lists_newest_first(workspace):
    ids = [cli_json("launch", "exit_after", "--set", "seconds=0", cwd=workspace)["id"] for _ in range(3)]
    wait_for(lambda: all(r["status"] == "exited" for r in cli_json("ls", cwd=workspace)["runs"]),
             what="the runs to end")
    assert [r["id"] for r in cli_json("ls", cwd=workspace)["runs"]] == ids[::-1]  # by creation, not id tails
    assert [r["id"] for r in cli_json("ls", "--all", cwd=workspace)["runs"]] == ids[::-1]
    lines = cli("ls", cwd=workspace, check=True).stdout.splitlines()[1:]
    assert [line.split()[0] for line in lines] == ids[::-1]


def test_compare_status_of_a_run_that_has_not_ended():
    from urbanrun.engine.core.events import RunChanged

    state = State()
    state.apply_all([RunChanged(ts=1.0, run={"id": "20260101-000000-a-0001", "recipe": "a", "status": "running"}),
                     RunChanged(ts=1.0, run={"id": "20260101-000001-a-0002", "recipe": "a", "status": "killed",
                                             "signal": 15}),
                     RunChanged(ts=1.0, run={"id": "20260101-000002-a-0003", "recipe": "a", "status": "exited",
                                             "exit_code": 0})])
    rows = {name: cells for name, cells, _ in comparison_rows(state, sorted(state.runs))}
    assert rows["status"] == ["running", "killed (signal 15)", "exited (0)"]


def test_advise_without_a_gpu_reads_as_a_sentence(workspace):
    out = cli("advise", "cones", cwd=workspace, check=True).stdout
    assert out.startswith("cones (no GPU here: ") and " on no " not in out


def test_the_runs_table_eta_comes_from_a_smoothed_rate():
    from urbanrun.engine.core.events import MetricPoints, Progress, RunChanged
    from urbanrun.tui.runs_table import _summary_progress

    state = State()
    record = {"id": "20260101-000000-a-0001", "recipe": "a", "status": "running", "started": 0.0, "argv": [],
              "cwd": "/", "params": {}}
    state.apply_all([RunChanged(ts=0.0, run=record),
                     Progress(ts=0.0, run_id=record["id"], progress={"unit": "step", "n": 0, "total": 1000})])
    etas = []
    t = 0.0
    for step in range(1, 301):
        t += 60.0 if step == 200 else 1.0  # one stalled step (a checkpoint save) among steady ones
        state.apply_all([MetricPoints(ts=t, run_id=record["id"], points=({"step": step, "time": t, "loss": 1.0},))])
        etas.append(_summary_progress(state.runs[record["id"]], t)["eta_seconds"])
    assert etas[150] == __import__("pytest").approx(1000 - 151, rel=0.05)  # steady: one second a step
    jumps = [abs(b - a) / a for a, b in zip(etas[150:], etas[151:])]
    assert max(jumps) < 0.5  # the stalled step moves the ETA, it does not make it jump 0:01 -> 2:49


def test_the_grid_counts_one_plot_as_one_plot():
    """At 80x24 the grid has room for one plot of four: its footer said '1 plots, 3 more'."""
    from test_curves import _state

    from urbanrun.tui.loss_pane import LossPane

    state, ids = _state([{"loss": [0.5, 0.4, 0.3], "acc": [0.1, 0.2, 0.3], "lr": [1e-3, 2e-3, 3e-3],
                          "grad_norm": [1.0, 2.0, 1.5]}])
    pane = LossPane()
    pane.grid = True
    pane.draw(state, ids, size=(48, 12))
    footer = " ".join(line.plain for line in pane.footer)
    assert "1 plot, 3 more (F filters)" in footer, footer

    pane.draw(state, ids, size=(160, 30))
    assert "4 plots" in " ".join(line.plain for line in pane.footer)
    metrics = {"loss": [0.5, 0.4], "train_loss": [0.5, 0.4], "val_loss": [0.6, 0.5], "acc": [0.1, 0.2], "lr": [1, 2]}
    state, ids = _state([metrics, metrics, metrics])  # three runs overlaid: nine curves in the first plot
    pane.draw(state, ids, size=(48, 12))  # their legend is cut to '+N more'; the grid's sign is kept
    footer = [line.plain for line in pane.footer]
    assert footer[0].startswith("1 plot, 2 more (F filters)") and "more" in footer[-1], footer


def test_every_key_in_the_help_says_what_it_does():
    """The help's explanation of each key is a phrase that ends with what it does, not a
    dangling 'quit without' (the quit summary's esc)."""
    from urbanrun.tui.help import sections
    from urbanrun.tui.app import UrbanrunApp

    from textual.binding import Binding

    for title, bindings in sections(UrbanrunApp.BINDINGS):
        for binding in Binding.make_bindings(bindings):
            words = (binding.tooltip or binding.description).split()
            assert words and words[-1] not in ("without", "with", "to", "of", "the", "a"), (title, binding)
