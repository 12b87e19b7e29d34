"""`urbanrun logs RUN --json`: a run's output as numbered lines (the last N, or the last N matching a
search), one object validated against the `logs` schema, the same object the MCP tool run_logs
returns; with --follow, one object a line per batch of new lines; errors as {"error": {...}}."""

from __future__ import annotations

import os

from conftest import cli
from test_agent_attack import agent, error_of, launched


def _ended(workspace, text: str) -> str:
    run_id = launched(workspace, "exit_after", "--set", "seconds=0.1")
    agent("wait", "wait", run_id, "--timeout", "60", cwd=workspace)
    (workspace / "runs" / run_id / "output.log").write_text(text)
    return run_id


def test_lines_tail_search_and_a_last_line_without_its_newline(workspace):
    run_id = _ended(workspace, "epoch 1 loss 0.5\r\n 10%|#  | 1/10\r 90%|#########| 9/10\nTraceback (most recent)\n"
                               "RuntimeError: CUDA out of memory\nno newline at the end")
    whole = agent("logs", "logs", run_id, cwd=workspace)
    assert whole["run"] == run_id and whole["total_lines"] == 5 and whole["search"] is None
    assert whole["path"] == str(workspace / "runs" / run_id / "output.log")
    assert whole["lines"] == [{"line": 1, "text": "epoch 1 loss 0.5"}, {"line": 2, "text": " 90%|#########| 9/10"},
                              {"line": 3, "text": "Traceback (most recent)"},
                              {"line": 4, "text": "RuntimeError: CUDA out of memory"},
                              {"line": 5, "text": "no newline at the end"}]
    assert agent("logs", "logs", run_id, "-n", "2", cwd=workspace)["lines"] == whole["lines"][-2:]
    assert agent("logs", "logs", run_id, "-n", "0", cwd=workspace)["lines"] == []
    found = agent("logs", "logs", run_id, "--search", "cuda|EPOCH", cwd=workspace)
    assert [d["line"] for d in found["lines"]] == [1, 4] and found["search"] == "cuda|EPOCH"
    assert found["total_lines"] == 5
    assert [d["line"] for d in agent("logs", "logs", run_id, "--search", "e", "-n", "1", cwd=workspace)["lines"]] == [5]
    human = cli("logs", run_id, "--search", "cuda", cwd=workspace)
    assert human.returncode == 0 and human.stdout == "RuntimeError: CUDA out of memory\n"


def test_follow_gives_every_line_once_and_ends_with_the_run(workspace):
    run_id = launched(workspace, "exit_after", "--set", "seconds=2")
    batches = agent("logs", "logs", run_id, "--follow", cwd=workspace, lines=True)
    lines = [d for batch in batches for d in batch["lines"]]
    assert [d["text"] for d in lines] == ["working for 2.0s, then exiting with 0", "done"]
    assert [d["line"] for d in lines] == [1, 2] and batches[-1]["total_lines"] == 2
    failing = launched(workspace, "exit_after", "--set", "code=3", "--set", "seconds=0.5")
    agent("logs", "logs", failing, "--follow", cwd=workspace, lines=True, code=1)  # as `logs -f` says it failed


def test_errors_are_one_object_naming_the_problem(workspace):
    run_id = _ended(workspace, "x\n")
    assert "--search is not a valid regular expression" in error_of("logs", run_id, "--search", "(", cwd=workspace)["message"]
    assert error_of("logs", "zzzz", cwd=workspace)["code"] == "run_not_found"
    assert error_of("logs", "../x", cwd=workspace)["code"] == "bad_input"
    assert "-n" in error_of("logs", run_id, "-n", "-1", cwd=workspace)["message"]
    log = workspace / "runs" / run_id / "output.log"
    log.unlink()
    assert agent("logs", "logs", run_id, cwd=workspace) | {"schema_version": 1} == \
        {"schema_version": 1, "run": run_id, "path": str(log), "total_lines": 0, "search": None, "lines": [],
         "skipped_lines": 0}
    os.mkfifo(log)  # it would block a reader forever
    message = error_of("logs", run_id, cwd=workspace)["message"]
    assert str(log) in message and "FIFO" in message, message


def test_a_line_over_4_mib_is_counted_not_passed_off_as_empty(workspace):
    run_id = _ended(workspace, "a\n" + "x" * (5 << 20) + "\nb\n")
    doc = agent("logs", "logs", run_id, cwd=workspace)
    assert doc["lines"] == [{"line": 1, "text": "a"}, {"line": 2, "text": ""}, {"line": 3, "text": "b"}]
    assert doc["skipped_lines"] == 1 and doc["total_lines"] == 3
