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
