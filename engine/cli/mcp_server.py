"""`urbanrun mcp`: a Model Context Protocol server over stdio, on the official `mcp` SDK
(the optional extra `urbanrun[agent]`).

Its tools call the same functions as the CLI and return the same objects, as structured
content whose output schema is the CLI's JSON Schema for it (engine/cli/schemas/). A launch is a
recipe from config.toml with typed parameters checked like the launch form's; never a command.
Bad input (a UserError) comes back as an MCP error result naming the problem, not a crash.
"""

from __future__ import annotations

import math
import functools
import inspect
import re
import typing
from typing import Annotated, Any

from urbanrun.engine.cli.contract import load_schema
from urbanrun.engine.cli.output import versioned
from urbanrun.engine.core.config import Config
from urbanrun.engine.core.errors import CommandFailed, UserError
from urbanrun.engine.runs.store import RunStore
from urbanrun.engine.runs.supervisor import Supervisor

MAX_LOG_LINES = 2000
MAX_POINTS = 2000
INSTRUCTIONS = """urbanrun launches, watches, diagnoses and kills training runs. The loop: launch_run (a recipe
and typed params) -> wait_run (until end, diagnosis or step=N) -> run_status / diagnose_run (verdict and
next_actions: each relaunch action's `set` and `env` go straight back into launch_run) -> scratchpad_log
what you did and why. Run ids: the full id, a unique prefix, the 4-hex tail, or `last`."""


class Tools:
    """The tools' bodies: plain functions over the run store (tested through the SDK's client)."""

    def __init__(self, config: Config, store: RunStore):
        self.config, self.store = config, store
        self.sup = Supervisor(config, store)

    def list_runs(self, all: bool = False) -> dict:
        """Runs (active and the 20 most recent; all=true: every run), each with its summary."""
        from urbanrun.engine.cli.runs import listed, runs_with_summaries

        return runs_with_summaries(self.store, self.config, listed(self.store, self.sup, all)[0])

    def run_status(self, run: str) -> dict:
        """A run's progress, ETA, primary metric, GPU peak, diagnoses, verdict and next actions."""
        from urbanrun.engine.cli.agent import RunWatch

        watch = RunWatch(self.store, self.sup, self.config, self.store.resolve(run))
        try:
            return watch.look()
        finally:
            watch.close()

    def wait_run(self, run: str, until: str = "end", timeout: float = 600.0) -> dict:
        """Block until the run ends (until="end"), is diagnosed ("diagnosis") or reaches a step
        ("step=N"), or `timeout` seconds pass; the status then, with wait.outcome met|ended|timeout."""
        from urbanrun.engine.cli.agent import parse_until, wait_for

        kind, target = parse_until(until)
        if not 0 <= timeout < math.inf:
            raise UserError(f"timeout expects seconds >= 0, not {timeout}.")
        summary, outcome = wait_for(self.store, self.sup, self.config, self.store.resolve(run), kind, target, timeout)
        return {**summary, "wait": {"until": until, "outcome": outcome, "met": outcome == "met"}}

    def launch_run(self, recipe: str, params: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                   backend: str | None = None) -> dict:
        """Launch a recipe of config.toml (see its parameters in the urbanrun://recipes text or
        `urbanrun recipes`) with typed params, checked like the launch form; env: extra variables."""
        from urbanrun.engine.cli.runs import _autolog

        for name in (env or {}):
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
                raise UserError(f"env: '{name}' is not an environment variable name.")
        record = self.sup.launch(recipe, values=dict(params or {}), backend=backend,
                                 env={str(k): str(v) for k, v in (env or {}).items()})
        _autolog(self.config).launched(record)
        return record.to_json(self.store.run_dir(record.id))

    def kill_run(self, run: str, force: bool = False) -> dict:
        """Stop a run's whole process tree (a graceful stop, the grace period, a hard kill); returns its final record."""
        from urbanrun.engine.cli.runs import kill_and_wait

        run_id = self.store.resolve(run)
        record, _ = kill_and_wait(self.store, self.sup, self.config, run_id, force=force)
        return record.to_json(self.store.run_dir(run_id))

    def run_logs(self, run: str, lines: int = 100, search: str | None = None) -> dict:
        """The last `lines` lines of a run's output, or with `search` (a regular expression, case
        insensitive) the last `lines` lines that match it; each with its line number."""
        from urbanrun.engine.cli.logs import log_lines, pattern_of

        if not 0 < lines <= MAX_LOG_LINES:
            raise UserError(f"lines expects 1..{MAX_LOG_LINES}, not {lines}.")
        pattern_of(search, "search")  # a bad expression: one sentence, before the run is looked up
        run_id = self.store.resolve(run)
        return log_lines(run_id, self.store.log_path(self.store.load(run_id)), lines, search)

    def run_metrics(self, run: str, names: list[str] | None = None, max_points: int = 500) -> dict:
        """A run's summary and its metric series, each downsampled to at most max_points points
        (the min and max of each bucket are kept, so spikes and NaN survive)."""
        import time

        from urbanrun.engine.metrics.run_files import read_run
        from urbanrun.engine.session.summary import run_summary

        if not 2 <= max_points <= MAX_POINTS:
            raise UserError(f"max_points expects 2..{MAX_POINTS}, not {max_points}.")
        run_id = self.store.resolve(run)
        record = self.store.load(run_id)
        state = read_run(self.store, record, time.time())
        unknown = sorted(set(names or ()) - set(state.metrics))
        if unknown:
            raise UserError(f"run {run_id} has no metric {', '.join(unknown)} (it has: "
                            f"{', '.join(state.metrics) or 'none yet'}).")
        series = {}
        for name in names or list(state.metrics):
            s = state.metrics[name]
            steps, values = s.view(max_points)
            series[name] = {"count": s.count, "steps": steps.tolist(), "values": values.tolist()}
        return {"run": run_id, "summary": run_summary(self.store, record, self.config, run=state), "series": series}

    def diagnose_run(self, run: str) -> dict:
        """What went wrong (or is going wrong) with a run: each diagnosis with evidence and remedies."""
        from urbanrun.engine.cli.doctor import doctor

        what, found = doctor(self.store.resolve(run), self.store, self.config)
        return {"target": what, "diagnoses": [d.to_dict() for d in found]}

    def advise_batch(self, recipe: str, gpu_memory_gb: float | None = None, gpu: int | None = None) -> dict:
        """The largest batch size of a recipe that fits a GPU's free memory (or gpu_memory_gb)."""
        from urbanrun.engine.cli.doctor import advice

        return advice(self.config, self.store, recipe, gpu, gpu_memory_gb)

    def gpus(self) -> dict:
        """The GPUs now (memory, utilisation, temperature, power) and their processes with run ids."""
        from urbanrun.engine.cli.gpus import gpu_snapshot

        return gpu_snapshot(self.store)

    def scratchpad_log(self, text: str) -> dict:
        """Append a dated entry to today's scratchpad (what was done and why; the first line is its heading)."""
        from urbanrun.engine.cli.scratchpad import log_entry
        from urbanrun.engine.notes import scratchpad

        return {"path": str(log_entry(scratchpad.settings_from(self.config), text))}

    def scratchpad_read(self) -> dict:
        """Today's scratchpad path, the coordinator's and your previous notes, open runs, unresolved items."""
        from urbanrun.engine.notes import scratchpad

        return scratchpad.show(scratchpad.settings_from(self.config), self.store)


TOOL_SCHEMAS = {"list_runs": "ls", "run_status": "status", "wait_run": "wait", "launch_run": "launch",
                "kill_run": "kill", "run_logs": "logs", "run_metrics": "series", "diagnose_run": "doctor",
                "advise_batch": "advise", "gpus": "gpus", "scratchpad_log": "scratchpad",
                "scratchpad_read": "scratchpad"}
READ_ONLY = {"list_runs", "run_status", "wait_run", "run_logs", "run_metrics", "diagnose_run", "advise_batch",
             "gpus", "scratchpad_read"}


def build_server(config: Config, store: RunStore):
    try:
        import anyio
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
        from mcp_types import ToolAnnotations
    except ImportError:
        raise UserError("`urbanrun mcp` needs the MCP SDK: pip install 'urbanrun[agent]' (or pip install mcp).") \
            from None
    tools = Tools(config, store)
    server = MCPServer("urbanrun", instructions=INSTRUCTIONS, log_level="WARNING")
    for name, schema_name in TOOL_SCHEMAS.items():
        body = getattr(tools, name)
        server.add_tool(_threaded(body, anyio, ToolError, output_type(schema_name)), name=name,
                        description=inspect.cleandoc(body.__doc__), structured_output=True,
                        annotations=ToolAnnotations(readOnlyHint=name in READ_ONLY, destructiveHint=name == "kill_run"))
    return server


def output_type(schema_name: str):
    """The tools' return annotation for one CLI output: a pydantic root model whose JSON Schema is
    the shipped file (the SDK publishes it as the tool's outputSchema) and whose validation is
    that schema's (the SDK validates every result against it before it is sent)."""
    import jsonschema
    from pydantic import AfterValidator, RootModel, WithJsonSchema

    schema = load_schema(schema_name)
    validator = jsonschema.Draft202012Validator(schema)

    def conforms(value: dict) -> dict:
        problem = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if problem is not None:
            where = "/".join(str(p) for p in problem.absolute_path) or "the result"
            raise ValueError(f"the {schema_name} output breaks its schema at {where}: {problem.message}")
        return value

    root = Annotated[dict[str, Any], AfterValidator(conforms), WithJsonSchema(schema)]
    return type(f"{schema_name.capitalize()}Output", (RootModel[root],), {"__module__": __name__})


def _threaded(body, anyio, tool_error, output):
    """The tool as a coroutine with the body's typed signature and `output` as its return type: the
    body runs in a worker thread (a wait must not stop the server answering), its result
    versioned; a user's mistake becomes the tool's error result."""

    async def tool(**kwargs):
        try:
            result = await anyio.to_thread.run_sync(functools.partial(body, **kwargs))
        except (UserError, CommandFailed) as exc:
            raise tool_error(f"{exc.code}: {exc}") from None
        return versioned(result)

    hints = typing.get_type_hints(body)
    signature = inspect.signature(body)
    tool.__signature__ = signature.replace(
        parameters=[p.replace(annotation=hints.get(p.name, Any)) for p in signature.parameters.values()],
        return_annotation=output)
    tool.__name__, tool.__doc__ = body.__name__, body.__doc__
    return tool


def cmd_mcp(args, config: Config, store: RunStore, sup) -> int:
    server = build_server(config, store)
    try:
        server.run("stdio")
    except KeyboardInterrupt:
        pass
    return 0

