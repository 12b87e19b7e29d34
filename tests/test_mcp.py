"""`urbanrun mcp`, driven by the MCP SDK's own client over stdio: launch the demo, wait, read its
metrics, diagnose a failing recipe and relaunch it with the remedy, kill a long run, and get
error results (never a crash) for bad input. Every structured result is checked against the
tool's published output schema, which is the CLI's."""

from __future__ import annotations

import os
import sys

import jsonschema
import pytest

from conftest import ROOT
from urbanrun.engine.cli.contract import load_schema
from urbanrun.engine.cli.mcp_server import TOOL_SCHEMAS

mcp = pytest.importorskip("mcp")
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402


def server(workspace) -> Client:
    env = {"URBANRUN_CONE_CACHE": os.environ["URBANRUN_CONE_CACHE"],
           "URBANRUN_GPU_RECORDING": str(ROOT / "tests" / "fixtures" / "gpus" / "rtx3090_1gpu.jsonl")}
    return Client(StdioServerParameters(command=sys.executable, args=["-m", "urbanrun.engine.cli", "mcp"],
                                        cwd=str(workspace), env=env), read_timeout_seconds=180)


async def call(client: Client, tool: str, **arguments) -> dict:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    data = result.structured_content
    jsonschema.validate(data, load_schema(TOOL_SCHEMAS[tool]), cls=jsonschema.Draft202012Validator)
    return data


async def error(client: Client, tool: str, **arguments) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error and result.structured_content is None
    return result.content[0].text


async def test_the_training_runner_loop_over_mcp(workspace):
    async with server(workspace) as client:
        listed = (await client.list_tools()).tools
        assert {t.name for t in listed} == set(TOOL_SCHEMAS)
        for tool in listed:
            assert tool.output_schema == load_schema(TOOL_SCHEMAS[tool.name]) and tool.description
        assert (await call(client, "list_runs"))["runs"] == []

        run = await call(client, "launch_run", recipe="cones", params={"epochs": 2, "cones": 8, "batch_size": 2})
        assert run["params"]["epochs"] == 2 and run["status"] in ("starting", "running")
        done = await call(client, "wait_run", run=run["id"][-4:], until="end", timeout=120)
        assert done["wait"]["outcome"] == "met" and done["verdict"] == "ended-ok"
        metrics = await call(client, "run_metrics", run="last", names=["loss"], max_points=4)
        loss = metrics["series"]["loss"]
        assert set(metrics["series"]) == {"loss"} and loss["count"] == 8  # 4 steps an epoch: more than asked for
        assert len(loss["values"]) <= 4 and loss["steps"][0] == 1 and loss["steps"][-1] == 8  # the ends kept
        assert metrics["summary"]["metric"] == done["metric"]
        logs = await call(client, "run_logs", run=run["id"], lines=5, search=r"Train Loss")
        assert [line["text"][:10] for line in logs["lines"]] == ["Epoch 1/2 ", "Epoch 2/2 "]

        failed = await call(client, "launch_run", recipe="fake_oom", params={"batch_size": 32})
        await call(client, "wait_run", run=failed["id"], timeout=60)
        diagnosed = await call(client, "diagnose_run", run=failed["id"])
        assert diagnosed["diagnoses"][0]["kind"] == "cuda_oom"
        status = await call(client, "run_status", run=failed["id"])
        assert status["verdict"] == "ended-failed"
        remedy = next(a for a in status["next_actions"] if a["kind"] == "relaunch")
        assert remedy["set"] == {"batch_size": 16}
        retry = await call(client, "launch_run", recipe=remedy["recipe"], params=remedy["set"], env=remedy["env"])
        assert retry["params"]["batch_size"] == 16

        long = await call(client, "launch_run", recipe="long_sleep")
        killed = await call(client, "kill_run", run=long["id"])
        assert killed["status"] == "killed" and killed["problem"] is None
        assert (await call(client, "kill_run", run=long["id"]))["ended"] == killed["ended"]  # twice: as it was

        await call(client, "scratchpad_log", text="relaunched fake_oom with batch_size=16\nafter a CUDA OOM")
        notes = await call(client, "scratchpad_read")
        assert "relaunched fake_oom with batch_size=16" in open(notes["today"]).read()
        advice = await call(client, "advise_batch", recipe="cones", gpu_memory_gb=24)
        assert advice["gpu"] == "a 24 GB GPU (as given)" and advice["text"]
        assert (await call(client, "gpus"))["gpus"][0]["name"]
        assert len((await call(client, "list_runs", all=True))["runs"]) == 4


async def test_bad_input_is_an_error_result_and_the_server_goes_on(workspace):
    async with server(workspace) as client:
        assert "run_not_found" in await error(client, "run_status", run="20990101-nosuchrun")
        assert "unknown recipe" in await error(client, "launch_run", recipe="rm -rf /")
        assert "has no parameter 'command'" in await error(client, "launch_run", recipe="cones",
                                                            params={"command": "sh"})
        assert "at least 1" in await error(client, "launch_run", recipe="cones", params={"epochs": 0})
        assert "is positional, so it needs a value" in await error(client, "launch_run", recipe="exit_after",
                                                                   params={"seconds": None})  # NaN sent as null
        assert "not an environment variable" in await error(client, "launch_run", recipe="cones",
                                                           env={"A B": "x"})
        assert "--until expects" in await error(client, "wait_run", run="last", until="forever")
        assert "--until expects" in await error(client, "wait_run", run="last", until="step=-1")
        assert "timeout expects" in await error(client, "wait_run", run="last", timeout=-1)
        assert "not a run id" in await error(client, "run_status", run="")
        assert "no 'last' run" in await error(client, "kill_run", run="last")
        assert "not a run id" in await error(client, "run_logs", run="../etc")
        assert "not a valid regular expression" in await error(client, "run_logs", run="x", search="(")
        assert (await call(client, "list_runs"))["runs"] == []  # still answering


async def test_every_tool_publishes_the_cli_schema_and_the_sdk_holds_results_to_it(workspace):
    """In process: the SDK derives each outputSchema from the tool's return type (no private SDK
    state), equal to `urbanrun schema NAME`; a result that breaks it is an error, never sent."""
    import json

    from conftest import cli
    from urbanrun.engine.cli.mcp_server import build_server
    from urbanrun.engine.core.config import load_config
    from urbanrun.engine.runs.store import RunStore

    config = load_config(workspace / "config.toml")
    server = build_server(config, RunStore(config.runs_dir))
    async with Client(server) as client:
        for tool in (await client.list_tools()).tools:
            printed = json.loads(cli("schema", TOOL_SCHEMAS[tool.name], cwd=workspace, check=True).stdout)
            assert tool.output_schema == printed == load_schema(TOOL_SCHEMAS[tool.name]), tool.name
        assert (await call(client, "list_runs"))["runs"] == []

    # a result that breaks its schema (a log line without its number) is refused before it is sent
    from mcp.server.mcpserver import MCPServer

    from urbanrun.engine.cli.mcp_server import output_type

    def run_logs(run: str) -> dict:
        return {"schema_version": 1, "run": run, "path": "output.log", "total_lines": 1, "search": None,
                "lines": [{"text": "Epoch 1/2"}]}

    run_logs.__annotations__["return"] = output_type("logs")  # (this file's annotations are strings)
    bare = MCPServer("contract")
    bare.add_tool(run_logs, structured_output=True)
    async with Client(bare) as client:
        assert (await client.list_tools()).tools[0].output_schema == load_schema("logs")
        result = await client.call_tool("run_logs", {"run": "x"})
        assert result.is_error and result.structured_content is None
        assert result.content[0].text == "Error executing tool run_logs"  # the SDK keeps the detail server-side
    with pytest.raises(ValueError, match="the logs output breaks its schema at lines/0: 'line' is a required"):
        output_type("logs").model_validate(run_logs("x"))


async def test_a_run_folder_without_its_record_is_listed_and_said_over_mcp(workspace):
    """As `ls` and `status` say it: listed as unreadable with the sentence, every tool on it an
    error result naming the folder, the server still answering."""
    lost = workspace / "runs" / "20200101-000000-cones-0bad"
    lost.mkdir(parents=True)
    (lost / "output.log").write_text("Epoch 1/2\n")
    async with server(workspace) as client:
        (listed,) = (await call(client, "list_runs", all=True))["runs"]
        assert listed["id"] == lost.name and listed["status"] == "unreadable" and "has no record" in listed["problem"]
        for tool, arguments in (("run_status", {}), ("diagnose_run", {}), ("kill_run", {}), ("run_logs", {}),
                                ("run_metrics", {}), ("wait_run", {"timeout": 1})):
            text = await error(client, tool, run="0bad", **arguments)
            assert "unreadable_record: " in text and f"{lost} are untouched" in text, (tool, text)
        assert not (lost / "run.toml").exists()
