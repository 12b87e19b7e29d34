"""`urbanrun metrics` on each format, on a folder, on a run id; late metrics files of a recipe."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from urbanrun.engine.core.config import load_config
from urbanrun.engine.session.loop import Engine
from urbanrun.engine.core.events import MetricPoints

from conftest import cli, cli_json, drive, wait_for

METRICS = Path(__file__).parent / "fixtures" / "metrics"


@pytest.mark.parametrize("target, fmt, metric, count", [
    ("ours.jsonl", "jsonl", "loss", 12),
    ("lightning/lightning_logs/version_0/metrics.csv", "csv", "val_loss", 3),
    ("training_loss_history.csv", "csv", "total_loss", 25),
    ("tensorboard/run1", "tensorboard", "train/loss", 50),
    ("wandb_project", "wandb", "val/loss", 20),
    ("logs/urbanrepml_logging.log", "log", "loss", 10),
])
def test_metrics_json_for_each_format(workspace, target, fmt, metric, count):
    out = cli_json("metrics", str(METRICS / target), cwd=workspace)
    (source,) = out["sources"]
    assert source["format"] == fmt
    m = source["metrics"][metric]
    assert m["count"] == count
    assert set(m) == {"count", "first_step", "last_step", "last", "min", "min_step", "max"}
    assert isinstance(m["last"], str) or m["min"] <= m["last"] <= m["max"]


def test_metrics_on_a_folder_lists_each_source(workspace):
    out = cli_json("metrics", str(METRICS), cwd=workspace)
    assert {s["format"] for s in out["sources"]} == {"jsonl", "csv", "tensorboard", "wandb"}
    jsonl = next(s for s in out["sources"] if s["format"] == "jsonl")
    assert jsonl["bad_records"] == 1 and jsonl["metrics"]["loss"]["last"] == "inf"


def test_metrics_on_a_demo_run(workspace):
    run = cli_json("launch", "cones", cwd=workspace)
    wait_for(lambda: cli_json("show", run["id"], cwd=workspace)["status"] != "running")
    out = cli_json("metrics", run["id"], cwd=workspace)
    by_format = {s["format"]: s for s in out["sources"]}
    loss = by_format["jsonl"]["metrics"]["loss"]
    assert loss["count"] == 4 and loss["first_step"] == 1 and loss["last_step"] == 4
    assert by_format["log"]["metrics"]["val_loss"]["count"] == 2
    text = cli("metrics", run["id"], cwd=workspace, check=True).stdout
    assert "metrics.jsonl (jsonl)" in text and "val_loss" in text


def test_metrics_bad_target_is_one_sentence(workspace):
    proc = cli("metrics", "no-such-thing", cwd=workspace)
    assert proc.returncode == 2 and "neither a file or folder nor a run id" in proc.stderr


def test_recipe_metrics_files_that_appear_later_are_followed(workspace):
    engine = Engine(load_config(workspace / "config.toml"), record_session=False)
    record = engine.launch("late_csv")
    events = drive(engine, lambda: engine.state.runs[record.id].status != "running")  # its files read to the end
    run = engine.state.runs[record.id]
    assert run.metric_formats["total_loss"] == "csv"
    assert list(run.metrics["total_loss"].arrays()[1]) == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert run.metrics["train_loss"].count == 5  # from the log lines
    assert run.progress["epoch"] == {"unit": "epoch", "n": 5, "total": 5}
    assert any(isinstance(e, MetricPoints) and e.format == "csv" for e in events)


def test_metrics_follow_streams_new_points(workspace):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    import selectors

    path = workspace / "live.jsonl"
    path.write_text('{"step": 0, "loss": 1.0}\n')
    proc = subprocess.Popen([sys.executable, "-m", "urbanrun.engine.cli", "metrics", str(path), "--follow", "--json"],
                            cwd=workspace, stdout=subprocess.PIPE, text=True)

    def append(step):
        with open(path, "a") as fh:
            fh.write(json.dumps({"step": step, "loss": 1 / step}) + "\n")

    try:
        # points appended before it started following went into its summary: append until one streams
        waiting, step, deadline = selectors.DefaultSelector(), 0, time.monotonic() + 60
        waiting.register(proc.stdout, selectors.EVENT_READ)
        while not waiting.select(timeout=0.5):
            assert time.monotonic() < deadline, "metrics --follow printed nothing"
            step += 1
            append(step)
        first = json.loads(proc.stdout.readline())["point"]["step"]
        append(step + 1)
        append(step + 2)
        got = [json.loads(proc.stdout.readline())["point"] for _ in range(step + 2 - first)]
        assert [g["step"] for g in got] == list(range(first + 1, step + 3)) and got[-1]["loss"] == 1 / (step + 2)
    finally:
        proc.terminate()
        proc.wait()


def test_metrics_follow_json_prints_no_integer_beyond_2_53(workspace):
    """`metrics --follow --json` printed a JSONL line's whole numbers as they came (a 30-digit loss,
    2^53 + 1): a JSON reader holding float64 gets another number. Every other --json output prints
    such values as floats; the stream does too, and keeps small whole values exact."""
    import selectors
    import subprocess
    import sys

    import jsonschema

    from urbanrun.engine.cli.contract import load_schema

    path = workspace / "live.jsonl"
    path.write_text("")
    proc = subprocess.Popen([sys.executable, "-m", "urbanrun.engine.cli", "metrics", str(path), "--follow", "--json"],
                            cwd=workspace, stdout=subprocess.PIPE, text=True)
    try:  # what is appended before it follows goes into its summary: append until a point streams
        waiting, step, deadline = selectors.DefaultSelector(), 0, time.monotonic() + 60
        waiting.register(proc.stdout, selectors.EVENT_READ)
        while not waiting.select(timeout=0.5):
            assert time.monotonic() < deadline, "metrics --follow printed nothing"
            step += 1
            with open(path, "a") as fh:
                fh.write(f'{{"step": {step}, "loss": {10 ** 30 + step}, "count": {2 ** 53 + 1}, "x": 2.0, "y": 7}}\n')
        line = json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait()
    jsonschema.validate(line, load_schema("metrics"), cls=jsonschema.Draft202012Validator)
    point = line["point"]
    assert point["loss"] == 1e30 and type(point["loss"]) is float, point
    assert point["count"] == 2 ** 53  # as float64 holds 2^53 + 1, as every other view reads it
    assert all(abs(v) <= 2 ** 53 for v in point.values() if type(v) is int), point
    assert (point["x"], point["y"]) == (2, 7) and type(point["x"]) is type(point["y"]) is int, point


def test_progress_and_eta_from_events():
    from urbanrun.engine.core.events import Progress, RunChanged
    from urbanrun.engine.core.state import State, eta_seconds

    state = State()
    state.apply(RunChanged(ts=100.0, run={"id": "r", "status": "running", "started": 100.0}))
    state.apply(Progress(ts=130.0, run_id="r", progress={"unit": "epoch", "n": 3, "total": 10}))
    assert eta_seconds(state.runs["r"], now=130.0) == pytest.approx(70.0)
    assert eta_seconds(state.runs["r"], now=140.0) == pytest.approx(60.0)


def test_metrics_follow_of_a_run_ends_with_the_run(workspace):
    """`metrics RUN --follow` never ended (an agent following a run's metrics hung past its end),
    and never followed a metrics file its recipe's wildcard found only after it started. It
    follows that file from its start, prints the run's last points and ends with the run: exit 0
    if it exited cleanly, else 1."""
    import subprocess
    import sys

    import jsonschema
    import psutil

    from conftest import SCRIPTS, release
    from urbanrun.engine.cli.contract import load_schema

    with open(workspace / "config.toml", "a") as fh:
        fh.write(f'\n[recipes.csv_later]\ncommand = ["{{python}}", "{SCRIPTS}/csv_on_release.py"]\n'
                 f'metrics_files = ["{{run_dir}}/history/*.csv"]\n')
    run_id = cli_json("launch", "csv_later", cwd=workspace)["id"]
    run_dir = workspace / "runs" / run_id
    proc = subprocess.Popen([sys.executable, "-m", "urbanrun.engine.cli", "metrics", run_id, "--follow", "--json"],
                            cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log = str(run_dir / "output.log")  # following: its sources are open; only then the CSV is written
        wait_for(lambda: any(f.path == log for f in psutil.Process(proc.pid).open_files()), what="the follow's start")
        release(run_dir)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, (proc.returncode, out, err)
    lines = [json.loads(line) for line in out.splitlines()]
    for line in lines:
        jsonschema.validate(line, load_schema("metrics"), cls=jsonschema.Draft202012Validator)
    assert [line["point"]["total_loss"] for line in lines if line["source"].endswith("loss.csv")] == [1.0, 0.5, 1 / 3]
    failing = cli_json("launch", "exit_after", "--set", "code=3", "--set", "seconds=0.2", cwd=workspace)["id"]
    assert cli("metrics", failing, "--follow", "--json", cwd=workspace, timeout=120).returncode == 1
