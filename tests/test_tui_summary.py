"""The TUI shows the selected run's summary as `urbanrun status RUN --json` gives it: the same
function computes both (the engine's), so for real finished demo runs launched from the CLI, with
no TUI watching them, the figures the app shows (the summary pane, the row's progress) are the
status command's, value for value."""

from __future__ import annotations

from urbanrun.engine.cli.output import versioned
from urbanrun.engine.core.config import load_config
from urbanrun.engine.session.loop import Engine
from urbanrun.tui.app import make_app
from urbanrun.tui.formatting import duration, num
from urbanrun.tui.run_summary import RunSummary, action_text
from urbanrun.tui.runs_table import RunsTable

from conftest import cli, cli_json
from test_tui import wait_until


async def test_the_selected_runs_summary_is_urbanrun_status(workspace):
    demo = cli_json("launch", "cones", "--set", "epochs=2", "--set", "cones=8", cwd=workspace)["id"]
    oom = cli_json("launch", "fake_oom", "--set", "batch_size=32", cwd=workspace)["id"]
    for run_id in (demo, oom):
        cli("wait", run_id, "--timeout", "120", "--json", cwd=workspace, check=True)
    status = {run_id: cli_json("status", run_id, cwd=workspace) for run_id in (demo, oom)}
    assert status[demo]["verdict"] == "ended-ok" and status[demo]["metric"]["name"]
    assert status[oom]["verdict"] == "ended-failed" and status[oom]["next_actions"][0]["kind"] == "relaunch"

    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None, autolog=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        table, pane = app.query_one(RunsTable), app.query_one(RunSummary)
        await wait_until(pilot, lambda: {demo, oom} <= {str(k.value) for k in table.rows})
        for run_id in (demo, oom, demo):  # there and back: never the other run's figures
            table.move_cursor(row=list(table.rows).index(run_id))
            # the app reads the run's files once it is selected: its summary settles on the status's
            await wait_until(pilot, lambda: pane.summary is not None and versioned(pane.summary) == status[run_id])
            shown = str(pane.render())
            s = status[run_id]
            p, m = s["progress"], s["metric"]
            step = "-" if p["step"] is None else p["step"]
            assert f"step {step}" + (f"/{p['total_steps']}" if p["total_steps"] else "") + " · " in shown
            assert f"epoch {p['epoch']}/{p['total_epochs']} · {p['fraction']:.0%}" in shown
            # the row agrees (redrawn from the state as the files are read, a poll or two apart from the pane)
            await wait_until(pilot, lambda: f"{p['epoch']}/{p['total_epochs']}" in str(table.get_cell(run_id, "progress")),
                             seconds=10)
            assert f"time {duration(p['elapsed_seconds'])}" in shown
            assert not p["steps_per_second"] or f"{num(p['steps_per_second'])} steps/s" in shown
            assert (f"{m['name']} {num(m['last'])} @{m['last_step']}, best {num(m['best'])} @{m['best_step']}"
                    if m else "no metric yet") in shown
            assert f"{len(s['diagnoses'])} diagnos" in shown and s["verdict"] in shown
            if s["next_actions"]:
                assert "next: " + action_text(s["next_actions"][0]) in shown
            else:
                assert "next:" not in shown
        await pilot.press("q")
    engine.close()
