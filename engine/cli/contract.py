"""The JSON contract of the CLI: one JSON Schema per `--json` output, shipped as
engine/cli/schemas/NAME.json and printed by `urbanrun schema NAME`.

The schemas are built here from shared parts (a run, a summary, a diagnosis, an action) and
written to the package by `python -m urbanrun.engine.cli.contract --write`; a test checks the
shipped files are what this module builds. Raise SCHEMA_VERSION (cli/output.py) when a field
changes meaning or goes away; adding a field is compatible.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from urbanrun.engine.cli.output import SCHEMA_VERSION
from urbanrun.engine.core.errors import UserError
from urbanrun.engine.runs.store import STATUSES

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
BASE = "https://urbanrun.invalid/schemas"  # an identifier only; nothing is fetched

NUMBER = {"type": ["number", "null"]}
VALUE = {"type": ["number", "string", "null"], "description": "a number; NaN and infinities as \"nan\", \"inf\", \"-inf\""}
TEXT = {"type": ["string", "null"]}
INT = {"type": ["integer", "null"]}
STRINGS = {"type": "array", "items": {"type": "string"}}


def obj(props: dict, required=None, extra: bool = True, **more) -> dict:
    out = {"type": "object", "properties": props, "required": list(props) if required is None else required}
    if not extra:
        out["additionalProperties"] = False
    out.update(more)
    return out


DIAGNOSIS = obj({"kind": {"type": "string"}, "severity": {"enum": ["error", "warning", "info"]},
                 "summary": {"type": "string"}, "evidence": STRINGS, "remedies": STRINGS,
                 "facts": {"type": "object"}}, required=["kind", "severity", "summary"])
ACTION = {"oneOf": [
    obj({"kind": {"const": "relaunch"}, "recipe": {"type": "string"}, "set": {"type": "object"},
         "env": {"type": "object", "additionalProperties": {"type": "string"}},
         "launch_args": STRINGS | {"description": "argv for `urbanrun launch`"}, "why": {"type": "string"}}),
    obj({"kind": {"const": "kill"}, "run": {"type": "string"}, "why": {"type": "string"}}),
    obj({"kind": {"const": "inspect"}, "file": {"type": "string"}, "line": INT, "why": TEXT}),
]}
PROGRESS = obj({"step": NUMBER, "epoch": NUMBER, "total_epochs": NUMBER, "total_steps": NUMBER,
                "fraction": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                "steps_per_second": NUMBER, "eta_seconds": NUMBER, "elapsed_seconds": NUMBER})
METRIC = {"oneOf": [{"type": "null"}, obj({"name": {"type": "string"}, "last": VALUE, "last_step": NUMBER,
                                           "best": VALUE, "best_step": NUMBER})]}
VERDICT = {"enum": ["running-healthy", "running-sick", "ended-ok", "ended-failed"]}
SUMMARY_PROPS = {
    "id": {"type": "string"}, "recipe": {"type": "string"}, "status": {"type": "string"}, "active": {"type": "boolean"},
    "exit_code": INT, "signal": INT, "started": TEXT, "ended": TEXT, "progress": PROGRESS, "metric": METRIC,
    "metrics": {"type": "object", "additionalProperties": obj(
        {"last": VALUE, "best": VALUE, "best_step": NUMBER, "count": {"type": "integer"}})},
    "gpu_peak_mb": NUMBER, "diagnosis": TEXT, "diagnoses": {"type": "array", "items": DIAGNOSIS}, "verdict": VERDICT,
}
SUMMARY = obj(SUMMARY_PROPS | {"next_actions": {"type": "array", "items": ACTION}},
              required=list(SUMMARY_PROPS))
RUN = obj({"id": {"type": "string"}, "recipe": {"type": "string"}, "argv": STRINGS, "cwd": {"type": "string"},
           "status": {"type": "string", "description": "one of " + ", ".join(STATUSES) + " (more may come)"},
           "backend": {"type": "string"}, "params": {"type": "object"}, "changed": {"type": "object"},
           "env": {"type": "object"}, "pid": INT, "exit_code": INT, "signal": INT, "diagnosis": TEXT,
           "diagnoses": {"type": "array", "items": DIAGNOSIS}, "created": TEXT, "started": TEXT, "ended": TEXT,
           "run_dir": {"type": "string"},
           "problem": TEXT | {"description": "why the run is lost or its record unreadable, or what its babysitter "
                              "could not do (a run object never has a top-level `error`: that is a failure)"},
           "leftovers": {"type": "array", "description": "processes of the run alive after its main process "
                         "ended, or that outlived a kill (then with state and why); `kill` stops them",
                         "items": obj({"pid": {"type": "integer"}, "created": NUMBER, "name": TEXT, "state": TEXT,
                                       "why": TEXT}, required=["pid"])},
           "cgroup": TEXT | {"description": "the run's own cgroup v2 (Linux, where one could be made)"},
           "job_name": TEXT | {"description": "the run's named Job Object (Windows): all its processes"},
           "gpus": {"type": "array", "items": {"type": "integer"},
                    "description": "GPUs the launch queue admitted it to (its CUDA_VISIBLE_DEVICES)"},
           "queue_reason": TEXT | {"description": "why a queued run still waits"},
           "queue_position": INT | {"description": "a queued run's place; 1 starts next"},
           "queue_mem_gb": NUMBER | {"description": "GPU memory per GPU it asked the queue for"},
           "git_commit": TEXT, "git_dirty": {"type": ["boolean", "null"]}, "git_root": TEXT,
           "git_diff_sha": TEXT | {"description": "sha256 of the uncommitted diff at launch (kept as code.diff)"},
           "changes_since_good": {"type": ["object", "null"], "description": (
               "what changed since the recipe's last good run, when this run failed, was diagnosed or ended "
               "clearly worse: headline, reason, last_good, commits [{commit, date, subject, author}], files "
               "{area: [path]}, uncommitted {files, sha256, diff}, params {name: [before, after]}, "
               "failing_frame {file, line, function, exception}, data_loading [{kind, path, summary}]"),
               "properties": {"headline": {"type": "string"}, "reason": {"type": "string"},
                              "last_good": {"type": "string"},
                              "commits": {"type": "array", "items": obj(
                                  {"commit": {"type": "string"}, "date": {"type": "string"},
                                   "subject": {"type": "string"}, "author": {"type": "string"}})},
                              "files": {"type": "object", "additionalProperties": STRINGS}}}},
          required=["id", "recipe", "argv", "cwd", "status", "run_dir"])
ERROR = obj({"error": obj({"code": {"type": "string"}, "message": {"type": "string"}})})
POINT_LINE = obj({"source": {"type": "string"}, "point": {"type": "object", "additionalProperties": VALUE}})
METRICS_SUMMARY = obj({"sources": {"type": "array", "items": obj(
    {"path": {"type": "string"}, "format": {"type": "string"}, "metrics": {"type": "object", "additionalProperties": obj(
        {"count": {"type": "integer"}, "first_step": VALUE, "last_step": VALUE, "last": VALUE, "min": VALUE,
         "min_step": VALUE, "max": VALUE})}, "bad_records": {"type": "integer"}, "error": {"type": "string"}},
    required=["path", "format", "metrics"])}})
NOTICE = obj({"code": {"type": "string", "description": "file_gone, file_replaced, file_rewritten, file_unreadable, "
                                                       "records_skipped (more may come)"},
               "level": {"enum": ["info", "warning", "error"]}, "message": {"type": "string"}, "path": TEXT},
              required=["code", "level", "message"])
NOTICE_LINE = obj({"notice": NOTICE, "run": TEXT}, required=["notice"],
                  description="a line of a --follow stream that is not data: something its reader should know (a "
                              "followed file was deleted, replaced, rewritten or cannot be read; records were "
                              "skipped). Every stream's notice has this top-level `notice` object")
EVENT_BASE = {"event": {"type": "string"}, "run": {"type": "string"}, "ts": TEXT}
EVENT = {"oneOf": [
    obj(EVENT_BASE | {"event": {"const": "launched"}, "recipe": {"type": "string"}, "params": {"type": "object"},
                      "argv": STRINGS, "status": {"type": "string"}}),
    obj(EVENT_BASE | {"event": {"const": "progress"}, "progress": PROGRESS, "metric": METRIC}),
    obj(EVENT_BASE | {"event": {"const": "diagnosis"}, "diagnosis": DIAGNOSIS, "verdict": VERDICT,
                      "next_actions": {"type": "array", "items": ACTION}}),
    obj(EVENT_BASE | {"event": {"const": "ended"}, "status": {"type": "string"}, "exit_code": INT, "signal": INT,
                      "verdict": VERDICT, "summary": SUMMARY}),
    obj(EVENT_BASE | {"event": {"const": "notice"}, "notice": NOTICE}),  # NOTICE_LINE's `notice`, as an event
]}
PARAM = obj({"type": {"type": "string"}, "flag": TEXT, "default": {}, "help": TEXT, "min": NUMBER, "max": NUMBER,
             "choices": {"type": ["array", "null"]}}, required=["type", "default"])
GPU = obj({"index": {"type": "integer"}, "name": TEXT, "mem_used": NUMBER, "mem_total": NUMBER}, required=["index"])

OUTPUTS = {
    "ls": ("runs (`urbanrun ls --json`), each with its summary (no next actions)",
           obj({"runs": {"type": "array", "items": RUN | {"properties": RUN["properties"] | {"summary": SUMMARY},
                                                          "required": RUN["required"] + ["summary"]}}})),
    "show": ("one run's record and summary (`urbanrun show RUN --json`)",
             RUN | {"properties": RUN["properties"] | {"summary": SUMMARY}, "required": RUN["required"] + ["summary"]}),
    "status": ("a run's summary with its verdict and next actions (`urbanrun status RUN --json`)",
               SUMMARY | {"required": SUMMARY["required"] + ["next_actions"]}),
    "wait": ("the status when `urbanrun wait` returns, and how the wait ended",
             SUMMARY | {"properties": SUMMARY["properties"] | {"wait": obj(
                 {"until": {"type": "string"}, "outcome": {"enum": ["met", "ended", "timeout"]},
                  "met": {"type": "boolean"}})}, "required": SUMMARY["required"] + ["next_actions", "wait"]}),
    "events": ("one line of `urbanrun events --json` (and of `launch --follow --json`); `notice` events say what "
               "happened to a watched run's files (deleted, replaced, rewritten, unreadable, records skipped)", EVENT),
    "launch": ("the launched run's record (`urbanrun launch RECIPE --json`)", RUN),
    "import": ("`urbanrun import PATH --json`: one read-only run per training run found (each Lightning "
               "version_N, W&B run or TensorBoard folder)", obj({"runs": {"type": "array", "items": RUN}})),
    "kill": ("the killed run's record (`urbanrun kill RUN --json`)", RUN),
    "metrics": ("`urbanrun metrics --json`: per-metric summary per source; with --follow, one line per point, and a "
                "notice line when a followed file is deleted, replaced, rewritten or cannot be read",
                {"oneOf": [METRICS_SUMMARY, POINT_LINE, NOTICE_LINE]}),
    "doctor": ("`urbanrun doctor RUN_OR_LOG --json`",
               obj({"target": {"type": "string"}, "diagnoses": {"type": "array", "items": DIAGNOSIS},
                    "changes_since_good": {"type": ["object", "null"], "description": "what changed since the "
                                           "recipe's last good run (a run's doctor only)"}},
                   required=["target", "diagnoses"])),
    "advise": ("`urbanrun advise RECIPE --json`: the largest batch that fits",
               obj({"recipe": {"type": "string"}, "basis": {"enum": ["history", "estimate", "none"]},
                    "batch_param": TEXT, "batch": INT, "fits": {"type": ["boolean", "null"]},
                    "available_gb": NUMBER, "text": {"type": "string"}, "gpu": {"type": "string"}})),
    "gpus": ("`urbanrun gpus --json`: NVML status, GPUs and their processes",
             obj({"status": obj({"available": {"type": "boolean"}}), "gpus": {"type": "array", "items": GPU},
                  "processes": {"type": "array", "items": {"type": "object"}}})),
    "recipes": ("`urbanrun recipes --json`: recipes and their typed parameters",
                obj({"recipes": {"type": "object", "additionalProperties": obj(
                    {"description": {"type": "string"}, "command": STRINGS, "cwd": {"type": "string"},
                     "params": {"type": "object", "additionalProperties": PARAM}})}})),
    "scratchpad": ("`urbanrun scratchpad show|log|finish --json`", {"anyOf": [
        obj({"root": {"type": "string"}, "today": {"type": "string"}, "coordinator": {"type": "object"},
             "previous": {"type": "object"}, "open_runs": {"type": "array"}, "unresolved": STRINGS}),
        obj({"path": {"type": "string"}}),
        obj({"draft": {"type": "string"}, "written": {"type": "boolean"}, "path": {"type": "string"}},
            required=["draft", "written"])]}),
    "logs": ("a run's last log lines, or the last of those matching a search, numbered (`urbanrun logs RUN "
             "--json [-n N] [--search REGEX]`, the MCP tool run_logs); with --follow, one such object a line per "
             "batch of new lines, and a notice line when the log is deleted, replaced, rewritten or unreadable",
             {"oneOf": [NOTICE_LINE, obj({"run": {"type": "string"}, "path": {"type": "string"}, "total_lines": {"type": "integer"},
                  "search": TEXT, "lines": {"type": "array", "items": obj({"line": {"type": "integer"},
                                                                          "text": {"type": "string"}})},
                  "skipped_lines": {"type": "integer", "description": "lines over 4 MiB so far: each is in `lines` "
                                    "with an empty text, not its own"}},
                 required=["run", "path", "total_lines", "search", "lines"])]}),
    "series": ("the MCP tool run_metrics: a run's summary and its metrics downsampled (min/max kept)",
               obj({"run": {"type": "string"}, "summary": SUMMARY, "series": {
                   "type": "object", "additionalProperties": obj({"count": {"type": "integer"}, "steps": {
                       "type": "array", "items": {"type": "number"}}, "values": {"type": "array", "items": VALUE}})}})),
    "error": ("any command's error under --json (stdout; exit 2 bad input, 1 failure)", ERROR),
}


def build(name: str) -> dict:
    title, body = OUTPUTS[name]
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"{BASE}/{name}.json",
              "title": f"urbanrun {name}", "description": title}
    versioned = {"schema_version": {"const": SCHEMA_VERSION}}
    if name != "error":  # an agent tells a failure by its top-level `error` object alone
        schema["not"] = {"required": ["error"]}
    if "oneOf" in body or "anyOf" in body:
        schema |= {"type": "object", "required": ["schema_version"], "properties": versioned, **body}
    else:
        schema |= body | {"properties": versioned | body["properties"], "required": ["schema_version"] + body["required"]}
    return schema


def schema_names() -> list[str]:
    return sorted(OUTPUTS)


def load_schema(name: str) -> dict:
    """The shipped schema file for one output."""
    if name not in OUTPUTS:
        raise UserError(f"no schema '{name}'; the schemas are: {', '.join(schema_names())}.", code="unknown_schema")
    return json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))


def write_all() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name in OUTPUTS:
        (SCHEMA_DIR / f"{name}.json").write_text(json.dumps(build(name), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_all()
