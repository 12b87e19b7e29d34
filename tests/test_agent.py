"""The agent interface: one run summary everywhere, status/wait/events, JSON errors, run ids,
the live doctor, and every --json output checked against its shipped JSON Schema."""

from __future__ import annotations

import json
import time

import jsonschema
import pytest

from conftest import ROOT, cli, wait_for
from urbanrun.engine.cli.contract import OUTPUTS, build, load_schema
from urbanrun.engine.core.errors import UserError
from urbanrun.engine.runs.store import RunRecord, RunStore

ERRORS = ROOT / "tests" / "fixtures" / "errors"


def valid(name: str, data: dict) -> dict:
    jsonschema.validate(data, load_schema(name), cls=jsonschema.Draft202012Validator)
    return data


def run_json(schema: str, *args, cwd, code: int = 0) -> dict:
    """The real CLI's --json output, its exit code checked, validated against its schema."""
    proc = cli(*args, "--json", cwd=cwd)
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    return valid(schema, json.loads(proc.stdout))


def kinds(diagnoses) -> set[str]:
    return {d["kind"] for d in diagnoses}


# -- the contract ----------------------------------------------------------------------------------
def test_shipped_schemas_are_valid_and_current(workspace):
    for name in OUTPUTS:
        schema = load_schema(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema == build(name), f"schemas/{name}.json is stale: python -m urbanrun.engine.cli.contract --write"
        assert schema["properties"]["schema_version"] == {"const": 1}
    printed = cli("schema", "status", cwd=workspace, check=True).stdout
    assert json.loads(printed) == load_schema("status")
    assert set(cli("schema", cwd=workspace, check=True).stdout.split()) == set(OUTPUTS)
    bad = cli("schema", "nope", "--json", cwd=workspace)
    assert bad.returncode == 2 and valid("error", json.loads(bad.stdout))["error"]["code"] == "unknown_schema"


def test_errors_under_json_are_one_object_on_stdout_with_unchanged_exit_codes(workspace):
    cases = [(["status", "20990101-nosuchrun"], "run_not_found"),
             (["launch", "cones", "--set", "epochs=zero"], "bad_input"),
             (["launch", "cones", "--env", "1BAD=x"], "bad_input"),
             (["wait", "last", "--until", "forever"], "bad_input"),
             (["show", "../etc"], "bad_input"),
             (["status"], "bad_input")]  # argparse's own error
    for args, code in cases:
        proc = cli(*args, "--json", cwd=workspace)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        error = valid("error", json.loads(proc.stdout))["error"]
        assert error["code"] == code, (args, error)
        assert error["message"] and "Traceback" not in proc.stderr
    plain = cli("status", "20990101-nosuchrun", cwd=workspace)  # without --json: the sentence on stderr
    assert plain.returncode == 2 and plain.stdout == "" and "no run '20990101-nosuchrun'" in plain.stderr


def test_static_outputs_match_their_schemas(workspace):
    recipes = run_json("recipes", "recipes", cwd=workspace)
    assert recipes["recipes"]["cones"]["params"]["epochs"]["type"] == "int"
    doctor = run_json("doctor", "doctor", str(ERRORS / "cuda_oom_new.log"), cwd=workspace)
    assert kinds(doctor["diagnoses"]) == {"cuda_oom"}
    run_json("advise", "advise", "cones", "--gpu-memory", "24", cwd=workspace)
    run_json("metrics", "metrics", str(ROOT / "tests" / "fixtures" / "metrics" / "ours.jsonl"), cwd=workspace)
    run_json("scratchpad", "scratchpad", "show", cwd=workspace)
    run_json("scratchpad", "scratchpad", "log", "checked", "the", "schemas", cwd=workspace)
    run_json("scratchpad", "scratchpad", "finish", cwd=workspace)
    run_json("ls", "ls", cwd=workspace)
    imported = run_json("import", "import", str(ROOT / "tests" / "fixtures" / "metrics" / "lightning"), cwd=workspace)
    assert [r["status"] for r in imported["runs"]] == ["imported"]


def test_gpus_output_matches_its_schema(workspace, monkeypatch):
    monkeypatch.setenv("URBANRUN_GPU_RECORDING", str(ROOT / "tests" / "fixtures" / "gpus" / "rtx3090_1gpu.jsonl"))
    gpus = run_json("gpus", "gpus", cwd=workspace)
    assert gpus["status"]["available"] and gpus["gpus"][0]["index"] == 0


# -- run ids ----------------------------------------------------------------------------------------
def test_run_ids_by_prefix_tail_or_last_and_ambiguity_lists_the_candidates(tmp_path):
    store = RunStore(tmp_path)
    ids = ["20261125-174100-cones-a2db", "20261125-180000-cones-77f0", "20261126-090000-sweep-c3d1"]
    for i, run_id in enumerate(ids):
        store.create(RunRecord(id=run_id, recipe="cones", argv=["x"], cwd=".", status="exited", created=100.0 + i))
    assert store.resolve("a2db") == ids[0]  # the unique tail
    assert store.resolve("20261126") == ids[2]  # a unique prefix
    assert store.resolve("last") == ids[2]
    with pytest.raises(UserError) as exc:
        store.resolve("2026")
    assert exc.value.code == "ambiguous_run" and all(i in str(exc.value) for i in ids)
    with pytest.raises(UserError) as exc:
        store.resolve("20261125")
    assert exc.value.code == "ambiguous_run" and ids[2] not in str(exc.value)
    with pytest.raises(UserError) as exc:
        store.resolve("ffff")
    assert exc.value.code == "run_not_found"


# -- one summary everywhere --------------------------------------------------------------------------
def test_a_finished_demo_run_has_one_summary_everywhere(workspace):
    launched = run_json("launch", "launch", "cones", "--set", "epochs=2", "--set", "cones=8", cwd=workspace)
    tail = launched["id"][-4:]
    waited = run_json("wait", "wait", tail, "--timeout", "120", cwd=workspace)
    assert waited["wait"] == {"until": "end", "outcome": "met", "met": True}
    assert waited["verdict"] == "ended-ok" and waited["next_actions"] == []
    p = waited["progress"]
    assert p["epoch"] == p["total_epochs"] == 2 and p["step"] == p["total_steps"] > 0 and p["fraction"] == 1
    assert p["steps_per_second"] > 0 and p["eta_seconds"] is None
    metric = waited["metric"]
    points = [json.loads(line) for line in open(f"{launched['run_dir']}/metrics.jsonl")]
    losses = [(pt["step"], pt["loss"]) for pt in points if "loss" in pt]
    best_step, best = min(losses, key=lambda sl: sl[1])
    assert metric == {"name": "loss", "last": losses[-1][1], "last_step": losses[-1][0], "best": best,
                      "best_step": best_step}
    status = run_json("status", "status", "last", cwd=workspace)
    shown = run_json("show", "show", launched["id"], cwd=workspace)
    listed = run_json("ls", "ls", cwd=workspace)["runs"][0]
    table = cli("ls", cwd=workspace, check=True).stdout
    row = next(line for line in table.splitlines() if line.startswith(launched["id"])).split()
    assert "PROGRESS" in table and row[-3:] == ["100%", f"{metric['last']:.4g}", f"({best:.4g})"]
    for other in (status, shown["summary"], listed["summary"]):
        assert (other["progress"], other["metric"], other["verdict"]) == (p, metric, "ended-ok")
    assert (shown["loss_name"], shown["loss_best"], shown["steps"]) == ("loss", best, losses[-1][0])
    pad = json.loads(cli("scratchpad", "show", "--json", cwd=workspace, check=True).stdout)["today"]
    text = open(pad).read()
    assert f"loss: best {best:.4g}" in text and f"progress: epoch 2/2, step {p['step']}/{p['total_steps']}" in text


def test_wait_times_out_with_exit_3_and_still_prints_the_status(workspace):
    run = run_json("launch", "launch", "long_sleep", cwd=workspace)
    try:
        waited = run_json("wait", "wait", run["id"], "--timeout", "1", cwd=workspace, code=3)
        assert waited["wait"]["outcome"] == "timeout" and waited["active"]
        assert waited["verdict"] == "running-healthy" and waited["progress"]["eta_seconds"] is None
        never = run_json("wait", "wait", run["id"], "--until", "step=5", "--timeout", "0", cwd=workspace, code=3)
        assert never["wait"]["met"] is False
    finally:
        killed = run_json("kill", "kill", run["id"], cwd=workspace)
    assert killed["status"] == "killed"
    after = run_json("wait", "wait", run["id"], "--until", "diagnosis", cwd=workspace, code=1)
    assert after["wait"]["outcome"] == "ended" and after["verdict"] == "ended-failed"


def test_events_and_launch_follow_print_only_json_lines(workspace):
    proc = cli("launch", "cones", "--set", "epochs=2", "--set", "cones=8", "--follow", "--json", cwd=workspace)
    assert proc.returncode == 0, proc.stderr
    lines = [valid("events", json.loads(line)) for line in proc.stdout.splitlines()]
    names = [e["event"] for e in lines]
    assert names[0] == "launched" and names[-1] == "ended" and "progress" in names
    assert lines[-1]["verdict"] == "ended-ok" and lines[-1]["summary"]["progress"]["fraction"] == 1
    again = cli("events", "--run", lines[0]["run"], "--json", cwd=workspace, check=True).stdout.splitlines()
    replayed = [valid("events", json.loads(line)) for line in again]
    assert [e["event"] for e in replayed] == ["launched", "progress", "ended"]
    assert replayed[-1]["summary"]["metric"] == lines[-1]["summary"]["metric"]


def test_status_at_step_n_while_the_demo_runs(workspace):
    run = run_json("launch", "launch", "cones", "--set", "epochs=3", "--set", "cones=8", cwd=workspace)
    mid = run_json("wait", "wait", run["id"], "--until", "step=2", "--timeout", "120", cwd=workspace)
    assert mid["wait"]["met"] and mid["progress"]["step"] >= 2
    if mid["active"]:  # the tiny run may be over already; while it runs, the ETA comes from its rate
        assert mid["progress"]["total_steps"] > mid["progress"]["step"] or mid["progress"]["fraction"] is not None
    run_json("wait", "wait", run["id"], "--timeout", "120", cwd=workspace)


# -- the live doctor --------------------------------------------------------------------------------
def test_a_diverging_run_is_diagnosed_while_it_runs_and_every_view_agrees(workspace):
    run = run_json("launch", "launch", "diverge", cwd=workspace)
    sick = run_json("wait", "wait", run["id"], "--until", "diagnosis", "--timeout", "60", cwd=workspace)
    assert sick["active"] and sick["verdict"] == "running-sick"  # 0.41 -> 27 -> 300 warns while it runs
    assert "diverging" in kinds(sick["diagnoses"]) and "nan_loss" not in kinds(sick["diagnoses"])
    actions = sick["next_actions"]
    assert actions[0] == {"kind": "kill", "run": run["id"], "why": actions[0]["why"]}
    relaunch = next(a for a in actions if a["kind"] == "relaunch")
    assert relaunch["set"] == {"lr": 0.001} and relaunch["launch_args"] == ["diverge", "--set", "lr=0.001"]
    stored = json.loads(cli("show", run["id"], "--json", cwd=workspace, check=True).stdout)
    assert "diverging" in kinds(stored["diagnoses"])  # stored in the run's record while it runs
    (workspace / "runs" / run["id"] / "go").write_text("")
    ended = run_json("wait", "wait", run["id"], "--timeout", "60", cwd=workspace)
    assert {"nan_loss", "diverging"} <= kinds(ended["diagnoses"]) and ended["verdict"] == "ended-failed"
    doctor = run_json("doctor", "doctor", run["id"], cwd=workspace)
    shown = run_json("show", "show", run["id"], cwd=workspace)
    assert kinds(doctor["diagnoses"]) == kinds(shown["diagnoses"]) == kinds(shown["summary"]["diagnoses"]) \
        == kinds(ended["diagnoses"])
    from_log = run_json("doctor", "doctor", str(workspace / "runs" / run["id"] / "output.log"), cwd=workspace)
    assert {"nan_loss", "diverging"} <= kinds(from_log["diagnoses"])  # the log alone says the same
    retry = json.loads(cli("launch", *relaunch["launch_args"], "--json", cwd=workspace, check=True).stdout)
    assert retry["params"]["lr"] == 0.001  # the action is usable as it is
    run_json("kill", "kill", retry["id"], cwd=workspace)


def test_the_engine_diagnoses_nan_the_moment_it_appears(workspace):
    from urbanrun.engine.core.config import load_config
    from urbanrun.engine.session.loop import Engine

    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None, record_session=False, autolog=None)
    record = engine.launch("diverge")
    run_dir = workspace / "runs" / record.id
    events = []
    deadline = time.monotonic() + 60
    while "diverging" not in kinds(getattr(engine.state.runs.get(record.id), "diagnoses", [])):
        assert time.monotonic() < deadline, "no divergence diagnosis"
        events += engine.poll()
        time.sleep(0.05)
    assert engine.state.runs[record.id].status == "running"
    offered = engine.summary(record.id)  # what the TUI gets: the CLI's summary from the engine's state
    assert offered["verdict"] == "running-sick" and offered["next_actions"][0]["kind"] == "kill"
    (run_dir / "go").write_text("")
    wait_for(lambda: engine.poll() is not None and "nan_loss" in kinds(engine.state.runs[record.id].diagnoses),
             timeout=60, interval=0.05, what="the NaN diagnosis")
    assert "nan_loss" in kinds(engine.store.load(record.id).diagnoses)  # stored once, for every view
    wait_for(lambda: engine.poll() is not None and not engine._records[record.id].active, timeout=60)
    engine.close()


def test_doctor_reads_nan_in_train_loss_log_lines(workspace, tmp_path):
    log = tmp_path / "train.log"
    log.write_text("Epoch 1/3 | Train Loss: 0.4123 | Val Loss: 0.4500\nEpoch 2/3 | Train Loss: nan | Val Loss: nan\n")
    found = run_json("doctor", "doctor", str(log), cwd=workspace)["diagnoses"]
    assert found[0]["kind"] == "nan_loss" and "Train Loss: nan" in found[0]["evidence"][0]


def test_events_follow_picks_up_runs_launched_later(workspace):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "urbanrun.engine.cli", "events", "--follow", "--json"],
                            cwd=workspace, stdout=subprocess.PIPE, text=True)
    try:
        run = run_json("launch", "launch", "exit_after", "--set", "code=3", "--set", "seconds=0.3", cwd=workspace)
        seen = []
        while not seen or seen[-1]["event"] != "ended":
            line = proc.stdout.readline()
            assert line, "the event stream ended early"
            event = valid("events", json.loads(line))
            if event["run"] == run["id"]:
                seen.append(event)
        assert seen[0]["event"] == "launched" and seen[-1]["status"] == "failed" and seen[-1]["exit_code"] == 3
        diagnosis = next(e for e in seen if e["event"] == "diagnosis")
        assert diagnosis["diagnosis"]["kind"] == "exit_code" and diagnosis["next_actions"][0]["kind"] == "inspect"
        assert seen[-1]["verdict"] == "ended-failed"
    finally:
        proc.terminate()
        proc.wait()


def test_eta_comes_from_a_smoothed_rate_of_the_runs_own_step_times(tmp_path):
    from urbanrun.engine.session.summary import run_summary

    store = RunStore(tmp_path)
    record = RunRecord(id="20261125-174100-cones-a2db", recipe="cones", argv=["x"], cwd=".", status="running",
                       started=1000.0, params={"epochs": 5, "max_steps": 100})
    store.create(record)
    times = [1000.0 + 0.5 * i for i in range(1, 41)]
    times[20:] = [t + 5.0 for t in times[20:]]  # one slow step (a checkpoint) among 0.5 s steps
    with open(store.run_dir(record.id) / "metrics.jsonl", "w") as fh:
        for step, t in enumerate(times, 1):
            fh.write(json.dumps({"step": step, "epoch": 1 + step // 20, "time": t, "loss": 1.0 / step}) + "\n")
    summary = run_summary(store, store.load(record.id), None, now=times[-1] + 0.1, save=False)
    p = summary["progress"]
    assert p["step"] == 40 and p["total_steps"] == 100 and p["fraction"] == 0.4 and p["epoch"] == 3
    assert p["steps_per_second"] == pytest.approx(2.0, rel=0.01)  # the slow step has faded from the EMA
    assert p["eta_seconds"] == pytest.approx(60 / p["steps_per_second"], rel=0.01)
    average = 40 / (times[-1] - 1000.0)
    assert abs(p["steps_per_second"] - 2.0) < abs(average - 2.0)  # closer to the pace now than the average
    assert summary["metric"] == {"name": "loss", "last": 1 / 40, "last_step": 40.0, "best": 1 / 40,
                                 "best_step": 40.0}


def test_a_run_that_reports_only_epochs_gets_its_fraction_and_eta_from_them(tmp_path):
    """No step totals, no bar: the log's "Epoch N/M" lines (written as each epoch ends) are the progress."""
    from urbanrun.engine.session.summary import run_summary

    store = RunStore(tmp_path)
    record = RunRecord(id="20261125-174100-keras-a2db", recipe="keras", argv=["x"], cwd=".", status="running",
                       started=1000.0)
    store.create(record)
    (store.run_dir(record.id) / "output.log").write_text(
        "".join(f"Epoch {n}/4 | loss: {1 / n:.4f}\n" for n in (1, 2, 3)))
    p = run_summary(store, store.load(record.id), None, now=1300.0, save=False)["progress"]
    assert (p["epoch"], p["total_epochs"], p["total_steps"]) == (3, 4, None)
    assert p["fraction"] == 0.75 and p["eta_seconds"] == pytest.approx(100.0)  # 3 epochs took 300 s


def test_a_live_run_silent_for_over_ten_minutes_is_a_hang_to_kill(workspace):
    """A real run that printed once and went quiet: looked at 11 minutes on (its files' times are
    real; only the summary's clock is moved on), it is a hang, and the first next action stops it."""
    from urbanrun.engine.core.config import load_config
    from urbanrun.engine.session.summary import run_summary

    run = run_json("launch", "launch", "held", cwd=workspace)
    store = RunStore(workspace / "runs")
    try:
        wait_for(lambda: store.load(run["id"]).status == "running", what="the run to start")
        record, config = store.load(run["id"]), load_config(workspace / "config.toml")
        assert "hang" not in [d["kind"] for d in run_summary(store, record, config, save=False)["diagnoses"]]
        summary = run_summary(store, store.load(run["id"]), config, now=time.time() + 660, save=False)
        hang = next(d for d in summary["diagnoses"] if d["kind"] == "hang")
        assert hang["severity"] == "warning" and "No new output or metrics for 11 min" in hang["summary"]
        assert summary["verdict"] == "running-sick" and summary["next_actions"][0]["kind"] == "kill"
    finally:
        cli("kill", run["id"], "--force", cwd=workspace)


def test_progress_events_come_at_most_every_few_seconds(tmp_path):
    from urbanrun.engine.cli.agent import PROGRESS_EVERY, EventStream

    stream = EventStream(RunStore(tmp_path), None, None)
    base = {"id": "r", "active": True, "ended": None, "diagnoses": [], "verdict": "running-healthy", "metric": None,
            "progress": {"step": 1, "epoch": None, "total_epochs": None, "total_steps": 10, "fraction": 0.1,
                         "steps_per_second": 1.0, "eta_seconds": 9.0, "elapsed_seconds": 1.0}}

    def at(now: float, step: int) -> list[str]:
        summary = {**base, "progress": {**base["progress"], "step": step}}
        return [e["event"] for e in stream._changes(summary, now=now)]

    assert at(100.0, 1) == ["progress"]
    assert at(100.0 + PROGRESS_EVERY / 2, 2) == []  # too soon after the last one
    assert at(100.0 + PROGRESS_EVERY, 3) == ["progress"]
    assert at(100.0 + 3 * PROGRESS_EVERY, 3) == []  # nothing new: nothing sent


def test_followed_metrics_lines_match_their_schema(workspace):
    import select
    import subprocess
    import sys

    path = workspace / "live.jsonl"
    path.write_text('{"step": 0, "loss": 1.0}\n')
    proc = subprocess.Popen([sys.executable, "-m", "urbanrun.engine.cli", "metrics", str(path), "--follow", "--json"],
                            cwd=workspace, stdout=subprocess.PIPE, text=True)
    try:
        line, step, deadline = "", 0, time.monotonic() + 120
        while not line:  # append until the follower prints: points it read at start are in no line
            assert time.monotonic() < deadline, "no followed point printed"
            step += 1
            with open(path, "a") as fh:
                fh.write(json.dumps({"step": step, "loss": float("nan") if step == 1 else 1 / step}) + "\n")
            if select.select([proc.stdout], [], [], 1.0)[0]:
                line = proc.stdout.readline()
        point = valid("metrics", json.loads(line))["point"]
        assert point["step"] >= 1 and (point["loss"] == "nan" or point["loss"] == 1 / point["step"])
    finally:
        proc.terminate()
        proc.wait()
