"""A metric point's step is a whole number from 0 to 2^53 (engine/metrics/steps.py): a point with
a NaN, infinite, negative, fractional or absurd (1e300) step or epoch is a bad record, counted and
named by its source, and every view (status, show, ls, metrics, events, wait) agrees on the rest."""

from __future__ import annotations

import re

from conftest import cli
from test_agent_attack import agent
from urbanrun.engine.cli.output import plain
from urbanrun.engine.metrics.sources import MetricSource, read_to_end

GOOD = ['{"step": 1, "loss": 0.5, "time": 1000}', '{"step": 2, "loss": 0.3, "time": 1002}']
BAD = ['{"step": 1e300, "loss": 0.01, "time": 1001}', '{"step": NaN, "loss": 0.02, "time": 1001}',
       '{"step": -3, "loss": 0.03, "time": 1001}', '{"step": 1.5, "loss": 0.04, "time": 1001}',
       '{"step": 10000000000000000000000000000000000000000, "loss": 0.05, "time": 1001}',
       '{"epoch": 1e300, "loss": 0.06, "time": 1001}', '{"step": Infinity, "loss": 0.07, "time": 1001}']
LONG_NUMBER = re.compile(r"\d{17,}")  # a step printed as a 300-digit integer (or any over 2^53)

SCRIPT = """import os, shutil, sys
shutil.copyfile(sys.argv[1], os.environ["URBANRUN_METRICS"])
print("wrote the metrics", flush=True)
"""


def test_bad_steps_are_bad_records_in_every_view(workspace):
    (workspace / "odd_steps.py").write_text(SCRIPT)
    (workspace / "lines.jsonl").write_text("\n".join([GOOD[0], *BAD, GOOD[1]]) + "\n")
    with open(workspace / "config.toml", "a") as fh:
        fh.write(f'\n[recipes.odd_steps]\ncommand = ["{{python}}", "{workspace / "odd_steps.py"}", '
                 f'"{workspace / "lines.jsonl"}"]\n')
    run_id = agent("launch", "launch", "odd_steps", cwd=workspace)["id"]
    waited = agent("wait", "wait", run_id, "--timeout", "60", cwd=workspace)
    expected = {"name": "loss", "last": 0.3, "last_step": 2, "best": 0.3, "best_step": 2}
    status = agent("status", "status", run_id, cwd=workspace)
    shown = agent("show", "show", run_id, cwd=workspace)
    listed = agent("ls", "ls", cwd=workspace)["runs"][0]
    ended = [e for e in agent("events", "events", "--run", run_id, cwd=workspace, lines=True) if e["event"] == "ended"]
    for summary in (waited, status, shown["summary"], listed["summary"], ended[0]["summary"]):
        assert summary["metric"] == expected, summary
        assert summary["progress"]["step"] == 2 and summary["metrics"]["loss"]["count"] == 2, summary
    metrics = agent("metrics", "metrics", run_id, cwd=workspace)["sources"][0]
    assert metrics["bad_records"] == len(BAD) and metrics["first_error"] == \
        "step 1e+300 is not a whole number from 0 to 2^53", metrics
    assert metrics["metrics"]["loss"]["count"] == 2 and metrics["metrics"]["loss"]["last_step"] == 2
    for args in (["status", run_id], ["show", run_id], ["ls"], ["metrics", run_id], ["events", "--run", run_id]):
        out = cli(*args, "--json", cwd=workspace).stdout
        assert not LONG_NUMBER.search(out), (args, LONG_NUMBER.search(out).group()[:40])
    human = cli("metrics", run_id, cwd=workspace).stdout
    assert f"{len(BAD)} bad record(s) skipped (first: step 1e+300 is not a whole number" in human


def test_a_bad_step_inside_a_block_of_one_layout(tmp_path):
    """The JSONL fast path parses lines of one layout as a block of columns: a bad step there is
    dropped and counted as when each line is parsed alone."""
    good = [f'{{"step": {i}, "loss": {1 / (i + 1):.6f}, "time": {1000 + i}}}' for i in range(200)]
    lines = good[:100] + ['{"step": 1e300, "loss": 0.5, "time": 1100}', '{"step": -1, "loss": 0.5, "time": 1100}',
                          '{"step": 7.5, "loss": 0.5, "time": 1100}'] + good[100:]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(lines) + "\n")
    source = MetricSource(path, "jsonl")
    series = read_to_end(source).metrics["loss"]
    assert series.count == 200 and series.last_step == 199 and max(series.steps) == 199
    assert source.bad == 3 and source.first_error == "step 1e+300 is not a whole number from 0 to 2^53"


def test_json_output_never_prints_an_integer_beyond_2_53():
    assert plain({"step": 1e300, "total_steps": 10 ** 40, "epoch": 2.0, "last_step": 2 ** 53}) == \
        {"step": 1e300, "total_steps": 1e40, "epoch": 2, "last_step": 2 ** 53}
    assert plain({"total_steps": 10 ** 400}) == {"total_steps": None}
