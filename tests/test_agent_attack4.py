"""The agent contract attacked once more (round 4): only `--json` and the MCP tools, every output
validated against its shipped schema. Each test names the defect it caught."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jsonschema

from conftest import cli
from test_agent_attack import agent, error_of, launched
from urbanrun.engine.cli.contract import load_schema


def valid(doc: dict, schema: str) -> dict:
    jsonschema.validate(doc, load_schema(schema), cls=jsonschema.Draft202012Validator)
    return doc


def imported(workspace: Path, name: str, lines: str = '{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n') -> str:
    folder = workspace / name
    folder.mkdir()
    (folder / "metrics.jsonl").write_text(lines)
    return agent("import", "import", str(folder), cwd=workspace)["runs"][0]["id"]


def test_an_imported_run_ended_cleanly_for_every_command(workspace):
    """`events --run <imported run>` exited 1 (only `exited` counted as a clean end) where `wait`
    exited 0 and the verdict said ended-ok; `logs -f` and `metrics RUN -f` exited 1 too. An
    imported run ended cleanly everywhere; a failed run still exits 1 everywhere."""
    run_id = imported(workspace, "ext")
    failed = launched(workspace, "exit_after", "--set", "code=3", "--set", "seconds=0.1")
    agent("wait", "wait", failed, "--timeout", "60", cwd=workspace)
    for run, code, verdict in ((run_id, 0, "ended-ok"), (failed, 1, "ended-failed")):
        assert agent("wait", "wait", run, "--timeout", "10", cwd=workspace)["verdict"] == verdict
        streamed = agent("events", "events", "--run", run, cwd=workspace, code=code, lines=True)
        assert streamed[-1]["event"] == "ended" and streamed[-1]["verdict"] == verdict
        followed = agent("events", "events", "--run", run, "--follow", cwd=workspace, code=code, lines=True)
        assert followed[-1]["event"] == "ended"
        agent("logs", "logs", run, "-f", cwd=workspace, code=code, lines=True)
        agent("metrics", "metrics", run, "-f", cwd=workspace, code=code, lines=True)
        assert cli("logs", run, "-f", cwd=workspace).returncode == code


def test_ls_lists_runs_made_in_one_second_by_their_creation(workspace):
    """`ls` ordered runs by id, so three runs made in one second went by their ids' random tails
    (ffff, 8888, 0000) while `status last` took the newest by creation time: an agent reading
    `ls --json`'s first run as the newest got another than `last`. Both now order by creation."""
    from urbanrun.engine.runs.store import RunRecord, RunStore

    store, second = RunStore(workspace / "runs"), time.mktime(time.strptime("20261130-120000", "%Y%m%d-%H%M%S"))
    for tail, fraction in (("ffff", 0.1), ("0000", 0.5), ("8888", 0.9)):
        store.create(RunRecord(id=f"20261130-120000-exit_after-{tail}", recipe="exit_after", argv=["true"],
                               cwd=str(workspace), status="exited", exit_code=0, created=second + fraction,
                               started=second + fraction, ended=second + fraction + 0.01))
    listed = [r["id"][-4:] for r in agent("ls", "ls", "--all", cwd=workspace)["runs"]]
    assert listed == ["8888", "0000", "ffff"]
    assert agent("status", "status", "last", cwd=workspace)["id"].endswith(listed[0])
    (workspace / "runs" / "20261130-120000-exit_after-0000" / "run.toml").unlink()  # placed at its second's end
    listed = [(r["id"][-4:], r["status"]) for r in agent("ls", "ls", "--all", cwd=workspace)["runs"]]
    assert listed == [("0000", "unreadable"), ("8888", "exited"), ("ffff", "exited")]
    assert error_of("status", "last", cwd=workspace)["code"] == "unreadable_record"
