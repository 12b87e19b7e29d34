"""Nothing is lost in reading: a finished run is read to the end whatever the per-poll budget,
only JSON objects become points, and one file that cannot be read costs a poll nothing else."""

from __future__ import annotations

import json
import math

from urbanrun.engine.core.config import load_config
from urbanrun.engine.core.events import Notice, RunChanged
from urbanrun.engine.metrics.sources import MetricSource, read_to_end
from urbanrun.engine.session.loop import Engine
from urbanrun.engine.session.run_end import run_from_files

from conftest import SCRIPTS, cli, cli_json, drive

RECIPE = f"""
[recipes.writer]
command = ["{{python}}", "{SCRIPTS / 'write_metrics.py'}"]
[recipes.writer.params.mode]
type = "string"
positional = true
default = "long"
"""


def _config(workspace):
    with open(workspace / "config.toml", "a") as fh:
        fh.write(RECIPE)
    return load_config(workspace / "config.toml")


def _ended_run(workspace, mode: str):
    """A real run of write_metrics.py watched by an engine until its end has been handled."""
    engine = Engine(_config(workspace), record_session=False, gpu_source=None, host=False)
    record = engine.launch("writer", {"mode": mode})
    events = drive(engine, lambda e=engine: e.state.runs[record.id].status not in ("starting", "running")
                   and e.state.runs[record.id].diagnoses is not None and record.id in e._drained)
    engine.close()
    return engine, engine.store.load(record.id), events


def test_a_line_over_4_mb_and_5_mb_of_log_do_not_stop_reading(tmp_path):
    path = tmp_path / "m.jsonl"
    with open(path, "w") as fh:
        fh.write('{"step": 1, "loss": 1.0}\n')
        fh.write(json.dumps({"step": 2, "loss": 0.0, "blob": "x" * (5 << 20)}) + "\n")
        fh.write('{"step": 3, "loss": 0.5}\n')
    source = MetricSource(path, "jsonl")
    run = read_to_end(source)
    assert list(run.metrics["loss"].arrays()[1]) == [1.0, 0.5]  # the 5 MB line skipped whole
    assert source.skipped == 1

    log = tmp_path / "train.log"
    with open(log, "w") as fh:
        fh.write("".join(f"loading tile {i:07d} of the lattice, nothing to see here\n" for i in range(100_000)))
        fh.write("epoch=1 loss=0.75\n")
    assert log.stat().st_size > 5 << 20
    assert read_to_end(MetricSource(log, "log")).metrics["loss"].last == 0.75


def test_metrics_cli_reports_skipped_lines_and_reads_past_them(workspace):
    path = workspace / "m.jsonl"
    with open(path, "w") as fh:
        fh.write(json.dumps({"step": 1, "loss": 0.0, "blob": "y" * (5 << 20)}) + "\n")
        fh.write('{"step": 2, "loss": 0.5}\nnull\n')
    (source,) = cli_json("metrics", str(path), cwd=workspace)["sources"]
    assert source["skipped_lines"] == 1 and source["bad_records"] == 1
    assert "line 3: not a JSON object but null" in source["first_error"]
    assert source["metrics"]["loss"]["count"] == 1 and source["metrics"]["loss"]["last"] == 0.5
    text = cli("metrics", str(path), cwd=workspace, check=True).stdout
    assert "1 over-long line(s) skipped" in text


def test_engine_cli_and_record_agree_on_a_run_with_huge_lines(workspace):
    engine, record, events = _ended_run(workspace, "long")
    assert record.status == "exited"
    assert (record.loss_name, record.steps, record.loss_last, record.loss_best) == ("loss", 6, 1 / 6, 1 / 6)
    run = engine.state.runs[record.id]
    assert run.metrics["loss"].count == 6 and run.log[-1] == "done"
    assert any(isinstance(e, Notice) and "line(s) over 4 MiB skipped" in e.text for e in events)
    again = run_from_files(engine.store, record)  # what the CLI (doctor, reconcile) sees
    assert list(again.metrics["loss"].arrays()[1]) == list(run.metrics["loss"].arrays()[1])
    by_format = {s["format"]: s for s in cli_json("metrics", record.id, cwd=workspace)["sources"]}
    assert by_format["jsonl"]["metrics"]["loss"]["last_step"] == 6 and by_format["jsonl"]["skipped_lines"] == 1


def test_json_values_that_are_not_objects_are_counted_never_reduced(workspace):
    engine, record, events = _ended_run(workspace, "odd")
    assert record.status == "exited" and record.loss_name == "train/loss" and record.loss_last == 0.25
    notices = [e.text for e in events if isinstance(e, Notice)]
    assert any("5 bad record(s) skipped (first: line 1: not a JSON object but null)" in t for t in notices)
    statuses = [e.run["status"] for e in events if isinstance(e, RunChanged)]
    assert statuses[-1] == "exited" and record.diagnoses is not None


def test_a_file_that_fails_to_read_costs_the_poll_nothing_else(workspace):
    engine, record, events = _ended_run(workspace, "loop")
    failures = [e.text for e in events if isinstance(e, Notice) and e.level == "error"]
    assert any("metrics.jsonl cannot be read (" in t and "symbolic links" in t for t in failures)
    assert len([t for t in failures if "metrics.jsonl" in t]) == 1  # said once, not at every poll
    run = engine.state.runs[record.id]
    assert run.log[-1] == "done" and run.metrics["loss"].last == 0.5  # the log still read
    assert record.status == "exited" and record.loss_last == 0.5  # and the run's end handled
    proc = cli("metrics", record.id, "--json", cwd=workspace)
    assert proc.returncode == 0, proc.stderr
    jsonl = next(s for s in json.loads(proc.stdout)["sources"] if s["format"] == "jsonl")
    assert "symbolic links" in jsonl["error"]


def test_nested_deeper_than_anyone_writes_is_no_crash(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"a":' * 2000 + "1" + "}" * 2000 + '\n{"step": 1, "loss": 2}\n')
    source = MetricSource(path, "jsonl")
    run = read_to_end(source)
    assert run.metrics["loss"].last == 2 and not math.isnan(run.metrics["loss"].last)
