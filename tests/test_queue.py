"""The GPU-aware launch queue: admission as a pure function of the ledger and one NVML reading, then
for real: queued runs' gates (real processes, no urbanrun left open) admitted one after the other as
a recorded GPU's memory frees up, the promise holding until the first run ends, a run that fits
nowhere waiting with its reason, cancellation, reordering, and a damaged ledger. Only the GPU is a
recording (the hardware boundary); the test rewrites it to change the machine."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from conftest import cli, cli_json, wait_for
from urbanrun.engine.cli.contract import load_schema
from urbanrun.engine.runs import queue

GB = 1e9
UUID = "GPU-5d2f0c7e-3c1a-4f0e-9a57-2b8e1f0c9a11"


def gpu(free_gb: float, total_gb: float = 24.0, index: int = 0, uuid: str = UUID) -> dict:
    return {"index": index, "name": "NVIDIA GeForce RTX 3090", "uuid": uuid, "mem_total": total_gb * GB,
            "mem_used": (total_gb - free_gb) * GB, "mem_free": free_gb * GB}


OK = {"available": True, "kind": "ok", "reason": ""}


# -- admission, pure ---------------------------------------------------------------------------------------
def ledger_with(*entries) -> dict:
    ledger = {"waiting": [], "promises": [], "seq": 0}
    for run_id, mem, *rest in entries:
        queue.enqueue(ledger, run_id, mem, *rest, now=0.0)
    return ledger


def test_admission_by_memory_and_the_promise_that_holds_until_memory_shows():
    ledger = ledger_with(("a", 15.0), ("b", 15.0))
    first = queue.try_admit(ledger, "a", OK, [gpu(23.0)], [], now=1.0)
    assert first.admitted and first.gpus[0]["index"] == 0
    assert queue.cuda_env(first.gpus) == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "0"}
    # NVML still shows 23 GB free (a's memory is not visible yet): b must not get the same memory
    second = queue.try_admit(ledger, "b", OK, [gpu(23.0)], [], now=2.0)
    assert not second.admitted and second.reason == "needs 15.0 GB, GPU 0 has 8.0 GB unpromised"
    # a now visibly holds its memory: NVML's free figure alone tells the truth
    procs = [{"gpu": 0, "pid": 4242, "used_mem": 14 * GB}]
    queue.settle(ledger, {"a": {"active": True, "pids": [4242]}, "b": {"queued": True}}, procs, [gpu(9.0)], 3.0)
    assert not queue.try_admit(ledger, "b", OK, [gpu(9.0)], procs, now=3.0).admitted
    # a ends and NVML shows its memory freed: b fits
    states = {"a": {"active": False, "ended": 10.0}, "b": {"queued": True}}
    queue.settle(ledger, states, [], [gpu(23.0)], 10.5, settle_seconds=5.0)
    assert queue.try_admit(ledger, "b", OK, [gpu(23.0)], [], now=10.5).admitted


def test_a_promise_never_seen_in_nvml_outlives_its_run_by_the_settle_delay():
    ledger = ledger_with(("a", 15.0), ("b", 15.0))
    assert queue.try_admit(ledger, "a", OK, [gpu(23.0)], [], now=1.0).admitted
    states = {"a": {"active": False, "ended": 10.0}, "b": {"queued": True}}  # ended before its memory showed
    queue.settle(ledger, states, [], [gpu(23.0)], 10.5, settle_seconds=5.0)
    assert not queue.try_admit(ledger, "b", OK, [gpu(23.0)], [], now=10.5).admitted
    queue.settle(ledger, states, [], [gpu(23.0)], 15.5, settle_seconds=5.0)
    assert queue.try_admit(ledger, "b", OK, [gpu(23.0)], [], now=15.5).admitted


def test_fifo_priority_and_a_run_that_fits_nowhere_never_blocks_the_rest():
    ledger = ledger_with(("huge", 100.0), ("a", 5.0), ("b", 5.0, 1, 3))
    assert queue.position(ledger, "b") == 1  # priority 3 goes first
    waiting = queue.try_admit(ledger, "a", OK, [gpu(23.0)], [], now=1.0)
    assert not waiting.admitted and waiting.reason == "needs 5.0 GB; waiting behind b"
    assert queue.try_admit(ledger, "b", OK, [gpu(23.0)], [], now=1.0).admitted
    assert queue.try_admit(ledger, "a", OK, [gpu(23.0)], [], now=1.0).admitted
    huge = queue.try_admit(ledger, "huge", OK, [gpu(23.0)], [], now=1.0)
    assert not huge.admitted and "fits on no GPU here (the largest has 24.0 GB)" in huge.reason
    no_gpu = queue.try_admit(ledger, "huge", {"available": False, "reason": "no NVIDIA GPU found"}, [], [])
    assert "no GPU to run on (no NVIDIA GPU found)" in no_gpu.reason


def test_several_gpus_exclusive_and_max_per_gpu():
    gpus = [gpu(70.0, 80.0, 0, "GPU-0"), gpu(40.0, 80.0, 1, "GPU-1"), gpu(75.0, 80.0, 2, "GPU-2")]
    ledger = ledger_with(("pair", 30.0, 2), ("solo", 1.0, 1, 0, True), ("third", 1.0, 1, 0, False, 1))
    pair = queue.try_admit(ledger, "pair", OK, gpus, [], now=1.0)
    assert pair.admitted and [g["index"] for g in pair.gpus] == [0, 2]  # the two with most unpromised memory
    solo = queue.try_admit(ledger, "solo", OK, gpus, [{"gpu": 1, "pid": 7, "used_mem": GB}], now=1.0)
    assert not solo.admitted and "in use (the run wants a GPU of its own)" in solo.reason
    behind = queue.try_admit(ledger, "third", OK, gpus, [], now=1.0)
    assert behind.reason == "needs 1.0 GB; waiting behind solo"  # strict queue order
    queue.remove(ledger, "solo")
    third = queue.try_admit(ledger, "third", OK, gpus[1:2], [{"gpu": 1, "pid": 7, "used_mem": GB}], now=1.0)
    assert not third.admitted and "GPU 1 already has 1 run(s) (max_per_gpu)" in third.reason


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "gpus"


def test_nvml_na_per_process_memory_is_unknown_never_zero_held():
    """The recorded RTX 3090 under WDDM: NVML lists the admitted run's process with memory N/A.
    Its promise stays owed in full until a figure is known (its own `gpu_mem`); then the device's
    own free memory decides. The same card with per-process figures settles by NVML alone."""
    from urbanrun.engine.gpu.recorded import RecordedGpuSource

    status, gpus, procs = RecordedGpuSource(FIXTURES / "rtx3090_wddm_1gpu.jsonl").snapshot()
    assert procs and procs[0]["used_mem"] is None and gpus[0]["mem_free"] is not None
    free_gb = gpus[0]["mem_free"] / GB  # ~11 GB: the run's ~14 GB is in the device's used memory
    pid = procs[0]["pid"]
    ledger = ledger_with(("a", 15.0), ("b", 5.0))
    assert queue.try_admit(ledger, "a", status, [{**gpus[0], "mem_free": 25.0 * GB}], [], now=1.0).admitted
    a_state = {"active": True, "pids": [pid], "gpu_mem": None}
    queue.settle(ledger, {"a": a_state, "b": {"queued": True}}, procs, gpus, 2.0)
    assert queue.held_by_run(procs, gpus[0], {pid}) is None
    waiting = queue.try_admit(ledger, "b", status, gpus, procs, now=2.0)
    assert not waiting.admitted and waiting.reason == "needs 5.0 GB, GPU 0 has 0.0 GB unpromised"
    a_state["gpu_mem"] = 13.5 * GB  # the run reports what it holds: its promise is visibly kept
    queue.settle(ledger, {"a": a_state, "b": {"queued": True}}, procs, gpus, 3.0)
    assert queue.unpromised(gpus[0], ledger) == pytest.approx(free_gb * GB)
    assert queue.try_admit(ledger, "b", status, gpus, procs, now=3.0).admitted

    status, gpus, procs = RecordedGpuSource(FIXTURES / "rtx3090_1gpu.jsonl").snapshot()
    ledger = ledger_with(("a", 15.0), ("b", 5.0))
    assert queue.try_admit(ledger, "a", status, [{**gpus[0], "mem_free": 25.0 * GB}], [], now=1.0).admitted
    queue.settle(ledger, {"a": {"active": True, "pids": [pid], "gpu_mem": 1.0}, "b": {"queued": True}},
                 procs, gpus, 2.0)
    assert ledger["promises"][0]["visible_bytes"] == procs[0]["used_mem"]  # NVML's figure wins over the run's
    assert queue.try_admit(ledger, "b", status, gpus, procs, now=2.0).admitted


def test_free_memory_the_device_does_not_report_is_never_assumed():
    ledger = ledger_with(("a", 1.0))
    silent = {"index": 0, "uuid": UUID, "mem_total": 24 * GB, "mem_used": None, "mem_free": None}
    refused = queue.try_admit(ledger, "a", OK, [silent], [{"gpu": 0, "pid": 7, "used_mem": None}], now=1.0)
    assert not refused.admitted and refused.reason == "needs 1.0 GB, GPU 0 reports no free memory figure"
    assert queue.unpromised(silent, ledger) == 0.0
    used_only = {**silent, "mem_used": 20 * GB}  # free = total - used, both reported
    assert queue.device_free(used_only) == 4 * GB
    assert queue.try_admit(ledger, "a", OK, [used_only], [], now=1.0).admitted


def test_reordering_and_a_damaged_ledger(tmp_path):
    with queue.locked(tmp_path) as ledger:
        for run_id in ("a", "b", "c"):
            queue.enqueue(ledger, run_id, 1.0)
        assert queue.move(ledger, "c", -1) and [w["run_id"] for w in queue.order(ledger)] == ["a", "c", "b"]
        assert not queue.move(ledger, "a", -1)
    assert [w["run_id"] for w in queue.order(queue.read(tmp_path))] == ["a", "c", "b"]
    (tmp_path / queue.LEDGER_FILE).write_text("{not json")
    assert queue.read(tmp_path) == {"waiting": [], "promises": [], "seq": 0}


# -- for real: gates, records, the CLI --------------------------------------------------------------------
QUEUE_RECIPES = f"""
[recipes.gpu_job]
command = ["{{python}}", "-c", "import os, sys, time; print('CUDA_VISIBLE_DEVICES=' + os.environ.get('CUDA_VISIBLE_DEVICES', '-'), os.environ.get('CUDA_DEVICE_ORDER'), flush=True); time.sleep(float(sys.argv[1]))"]
memory = {{ fixed_gb = 15.0 }}
[recipes.gpu_job.params.seconds]
type = "float"
positional = true
default = 2.0
"""


@pytest.fixture
def gpu_machine(workspace, monkeypatch):
    (workspace / "config.toml").write_text((workspace / "config.toml").read_text() + QUEUE_RECIPES)
    recording = workspace / "gpu.jsonl"

    def machine(free_gb: float, processes=()):
        recording.write_text(json.dumps({"status": OK}) + "\n" + json.dumps(
            {"t": 0.0, "gpus": [gpu(free_gb)], "processes": list(processes)}) + "\n")

    machine(23.0)
    monkeypatch.setenv("URBANRUN_GPU_RECORDING", str(recording))
    monkeypatch.setenv("URBANRUN_QUEUE_POLL", "0.2")
    monkeypatch.setenv("URBANRUN_QUEUE_SETTLE", "0.5")
    return machine


def show(run_id, workspace):
    return cli_json("show", run_id, cwd=workspace)


def test_two_queued_runs_start_one_after_the_other(workspace, gpu_machine):
    first = cli_json("launch", "gpu_job", "--queue", "--set", "seconds=3", cwd=workspace)
    second = cli_json("launch", "gpu_job", "--queue", "--set", "seconds=0.5", cwd=workspace)
    assert first["status"] == "queued" and first["queue_mem_gb"] == 15.0  # the recipe's estimate
    jsonschema.validate(first, load_schema("launch"))
    wait_for(lambda: show(first["id"], workspace)["status"] == "running", what="the first run to be admitted")
    waiting = wait_for(lambda: (r := show(second["id"], workspace))["queue_reason"] and
                       "unpromised" in r["queue_reason"] and r, what="the second run's reason")
    assert waiting["status"] == "queued" and waiting["queue_position"] == 1
    assert waiting["queue_reason"] == "needs 15.0 GB, GPU 0 has 8.0 GB unpromised"
    listed = cli("ls", cwd=workspace).stdout
    assert "queued #1 (needs 15.0 GB, GPU 0 has 8.0 GB unpromised)" in listed
    done = [wait_for(lambda r=r: (s := show(r["id"], workspace))["status"] == "exited" and s, timeout=60,
                     what=f"{r['id']} to end") for r in (first, second)]
    assert done[1]["started"] >= done[0]["ended"]  # the promise held until the first run ended
    assert done[0]["gpus"] == [0] and done[1]["gpus"] == [0]
    for r in done:
        log = (workspace / "runs" / r["id"] / "output.log").read_text()
        assert "CUDA_VISIBLE_DEVICES=0 PCI_BUS_ID" in log


def test_memory_freeing_up_admits_a_waiting_run(workspace, gpu_machine):
    gpu_machine(7.0, [{"gpu": 0, "pid": 1, "used_mem": 17 * GB}])  # someone else holds 17 GB
    run = cli_json("launch", "gpu_job", "--queue", "--mem", "10", "--set", "seconds=0.2", cwd=workspace)
    wait_for(lambda: show(run["id"], workspace)["queue_reason"] == "needs 10.0 GB, GPU 0 has 7.0 GB unpromised",
             what="the reason")
    gpu_machine(23.0)
    final = wait_for(lambda: (s := show(run["id"], workspace))["status"] == "exited" and s, timeout=60,
                     what="admission once memory is free")
    assert final["exit_code"] == 0


def test_cancel_a_queued_run_and_one_that_fits_nowhere(workspace, gpu_machine):
    huge = cli_json("launch", "gpu_job", "--queue", "--mem", "100", cwd=workspace)
    small = cli_json("launch", "gpu_job", "--queue", "--mem", "1", "--set", "seconds=0.2", cwd=workspace)
    reason = wait_for(lambda: show(huge["id"], workspace)["queue_reason"], what="huge's reason")
    wait_for(lambda: "fits on no GPU here" in show(huge["id"], workspace)["queue_reason"], what="fits-nowhere")
    assert reason
    wait_for(lambda: show(small["id"], workspace)["status"] == "exited", timeout=60, what="small, not blocked")
    killed = cli_json("kill", huge["id"], cwd=workspace)
    assert killed.get("status", killed.get("run", {}).get("status")) == "cancelled"
    final = show(huge["id"], workspace)
    assert final["status"] == "cancelled" and final["started"] is None and final["exit_code"] is None
    jsonschema.validate(final, load_schema("show"))
    assert not (workspace / "runs" / huge["id"] / "child.json").exists()  # the command never started
    assert final["cgroup"] is None or not Path(final["cgroup"]).exists()  # its empty cgroup is removed
    again = cli("kill", huge["id"], cwd=workspace)
    assert again.returncode in (0, 2) and "Traceback" not in again.stderr


def test_a_deleted_ledger_and_a_restart_lose_no_queued_run(workspace, gpu_machine):
    gpu_machine(5.0)
    run = cli_json("launch", "gpu_job", "--queue", "--mem", "10", "--set", "seconds=0.2", cwd=workspace)
    wait_for(lambda: "unpromised" in (show(run["id"], workspace)["queue_reason"] or ""), what="waiting")
    (workspace / "runs" / queue.LEDGER_FILE).unlink()  # damaged; no urbanrun is open (each CLI call ends)
    wait_for(lambda: (workspace / "runs" / queue.LEDGER_FILE).exists() and
             run["id"] in (workspace / "runs" / queue.LEDGER_FILE).read_text(), what="the gate to re-enqueue")
    gpu_machine(23.0)
    wait_for(lambda: show(run["id"], workspace)["status"] == "exited", timeout=60, what="admission")


def test_queue_input_errors_are_one_sentence(workspace, gpu_machine):
    for args, needle in ((["--queue", "--mem", "nan"], "--mem expects"), (["--queue", "--gpus", "0"], "--gpus expects"),
                         (["--mem", "3"], "add --queue"), (["--queue", "--backend", "slurm"], "SLURM has its own queue")):
        proc = cli("launch", "gpu_job", *args, cwd=workspace)
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
    proc = cli("launch", "exit_after", "--queue", cwd=workspace)
    assert proc.returncode == 2 and "has no memory estimate" in proc.stderr
    assert not [p for p in (workspace / "runs").glob("*") if p.is_dir()]  # no run folder (glob: none if no runs/)


WDDM_RECIPE = """
[recipes.wddm_job]
command = ["{python}", "-c", "import json, os, pathlib, time\\nrun = pathlib.Path(os.environ['URBANRUN_RUN_DIR'])\\nwhile not (run / 'report').exists(): time.sleep(0.05)\\nopen(os.environ['URBANRUN_METRICS'], 'a').write(json.dumps({'step': 1, 'gpu_mem': 14e9}) + chr(10))\\nwhile not (run / 'finish').exists(): time.sleep(0.05)"]
"""


def test_a_wddm_run_holding_its_promise_is_known_by_its_own_gpu_mem(workspace, gpu_machine):
    """For real: the first run's process is listed by the recorded NVML with memory N/A. Until the
    run reports `gpu_mem` its promise stays owed (the GPU is not taken for empty); once it does, the
    second run is admitted beside it on the device's own free memory."""
    (workspace / "config.toml").write_text((workspace / "config.toml").read_text() + WDDM_RECIPE)
    first = cli_json("launch", "wddm_job", "--queue", "--mem", "15", cwd=workspace)
    run_dir = workspace / "runs" / first["id"]
    try:
        wait_for(lambda: (run_dir / "child.json").exists(), what="the first run to start")
        child = json.loads((run_dir / "child.json").read_text())["pid"]
        gpu_machine(9.0, [{"gpu": 0, "pid": child, "type": "C", "used_mem": None}])  # WDDM: N/A
        second = cli_json("launch", "gpu_job", "--queue", "--mem", "5", "--set", "seconds=0.2", cwd=workspace)
        wait_for(lambda: show(second["id"], workspace)["queue_reason"]
                 == "needs 5.0 GB, GPU 0 has 0.0 GB unpromised", what="the second run to wait on the first's promise")
        (run_dir / "report").touch()
        done = wait_for(lambda: (s := show(second["id"], workspace))["status"] == "exited" and s, timeout=60,
                        what="the second run admitted beside the first")
        assert show(first["id"], workspace)["status"] == "running" and done["gpus"] == [0]
    finally:
        (run_dir / "finish").touch()
    wait_for(lambda: show(first["id"], workspace)["status"] == "exited", timeout=60, what="the first run to end")


# -- in the TUI: the form's queue toggle, reordering, cancelling; an observation by hand ----------------
async def test_the_tui_queues_reorders_and_cancels(workspace, gpu_machine):
    from test_tui import wait_until

    from urbanrun.engine.core.config import load_config
    from urbanrun.engine.session.loop import Engine
    from urbanrun.tui.app import make_app
    from urbanrun.tui.dialogs import ConfirmKill
    from urbanrun.tui.launch_form import LaunchForm

    gpu_machine(2.0)  # nothing fits: every queued run waits
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        ids = []
        for _ in range(2):
            await pilot.press("l")
            await wait_until(pilot, lambda: isinstance(app.screen, LaunchForm))
            form = app.screen
            form.query_one("#recipe").value = "gpu_job"
            await pilot.pause(0.3)
            form.query_one("#queue").value = True
            await wait_until(pilot, lambda: not form.query_one("#queue-mem").disabled)  # ticking queue enables it
            form.query_one("#queue-mem").value = "abc"
            form.action_launch()  # refused: the field is named and focused
            await pilot.pause(0.2)
            assert isinstance(app.screen, LaunchForm) and app.screen.focused.id == "queue-mem"
            form.query_one("#queue-mem").value = "5"
            form.action_launch()
            await wait_until(pilot, lambda: len(app.state.runs) == len(ids) + 1)
            ids.append(next(r for r in app.state.runs if r not in ids))
        await wait_until(pilot, lambda: all(app.state.runs[i].record.get("queue_reason", "").startswith("needs 5.0 GB")
                                            for i in ids))
        first, second = ids
        assert app.state.runs[first].record["queue_position"] == 1
        app.query_one("RunsTable").wanted = second  # selected at the next redraw (a poll's, late on a busy machine)
        await wait_until(pilot, lambda: app.query_one("RunsTable").selected == second)
        await pilot.press("left_square_bracket")  # the second moves ahead of the first
        await wait_until(pilot, lambda: app.state.runs[second].record.get("queue_position") == 1)
        await pilot.press("k")  # the dialog opens between polls: after the one in flight, on a busy machine
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmKill))
        await pilot.press("y")
        await wait_until(pilot, lambda: app.state.runs[second].status == "cancelled")
        await pilot.press("o")
        await pilot.pause(0.3)
        await pilot.press(*f"disagree: {first} needs a smaller batch first")
        await pilot.press("enter")
        notes = workspace / "pad" / "training-runner"
        await wait_until(pilot, lambda: any("### Cross-agent observations" in p.read_text() for p in notes.glob("*.md")))
        text = "".join(p.read_text() for p in notes.glob("*.md"))
        assert f"[{first}](file://" in text and "disagree:" in text
        engine.kill(first)
        await pilot.press("q")
    engine.close()


def _on_disk(workspace, run_id) -> dict:
    """The record as the gates left it: read from the file, since ls/show would reconcile it."""
    import tomllib
    return tomllib.loads((workspace / "runs" / run_id / "run.toml").read_text())


def test_a_gate_killed_while_queued_never_blocks_the_runs_behind_it(workspace, gpu_machine):
    """The head of the queue loses its gate (SIGKILL, the OOM killer) and no urbanrun is open to
    mark it lost: the run behind it used to wait 'behind' it forever."""
    import os
    import signal

    gpu_machine(5.0)
    head = cli_json("launch", "gpu_job", "--queue", "--mem", "10", cwd=workspace)
    behind = cli_json("launch", "gpu_job", "--queue", "--mem", "10", "--set", "seconds=0.2", cwd=workspace)
    wait_for(lambda: "waiting behind" in (_on_disk(workspace, behind["id"]).get("queue_reason") or ""),
             what="the second run to wait behind the first")
    os.kill(head["pid"], signal.SIGKILL)
    gpu_machine(23.0)
    wait_for(lambda: _on_disk(workspace, behind["id"])["status"] == "running", timeout=60,
             what="the run behind a dead gate to be admitted with no urbanrun open")
    assert _on_disk(workspace, head["id"])["status"] == "queued"  # no gate writes another run's record
    assert cli_json("show", head["id"], cwd=workspace)["status"] == "lost"  # the next look says it
    wait_for(lambda: show(behind["id"], workspace)["status"] == "exited", timeout=60, what="the admitted run's end")


def test_a_queued_run_whose_record_is_deleted_ends_its_gate_and_frees_its_place(workspace, gpu_machine):
    gpu_machine(5.0)
    gone = cli_json("launch", "gpu_job", "--queue", "--mem", "10", cwd=workspace)
    behind = cli_json("launch", "gpu_job", "--queue", "--mem", "10", "--set", "seconds=0.2", cwd=workspace)
    wait_for(lambda: "waiting behind" in (_on_disk(workspace, behind["id"]).get("queue_reason") or ""), what="waiting")
    (workspace / "runs" / gone["id"] / "run.toml").unlink()
    import psutil
    psutil.Process(gone["pid"]).wait(timeout=60)  # the gate ends (not our child: no exit code to see)
    log = (workspace / "runs" / gone["id"] / "output.log").read_text()
    assert "no longer queued" in log and "has no record" in log and "Traceback" not in log
    assert not (workspace / "runs" / gone["id"] / "child.json").exists()
    assert gone["id"] not in (workspace / "runs" / queue.LEDGER_FILE).read_text()
    assert gone["cgroup"] is None or not Path(gone["cgroup"]).exists()  # made for a command that never starts
    gpu_machine(23.0)
    wait_for(lambda: show(behind["id"], workspace)["status"] == "exited", timeout=60, what="the run behind it")


def test_a_ledger_with_fields_of_the_wrong_kind_costs_only_those_entries(workspace, gpu_machine):
    """A hand-edited queue.json (a text seq, a text mem_gb, a promise without one): every gate
    read it and crashed (ValueError, KeyError), so no queued run could ever start again."""
    gpu_machine(5.0)
    run = cli_json("launch", "gpu_job", "--queue", "--mem", "10", "--set", "seconds=0.2", cwd=workspace)
    wait_for(lambda: "unpromised" in (show(run["id"], workspace)["queue_reason"] or ""), what="waiting")
    (workspace / "runs" / queue.LEDGER_FILE).write_text(json.dumps({
        "seq": "abc", "waiting": [{"run_id": run["id"], "mem_gb": "big", "gpus": 1}, {"run_id": "other"}, "x"],
        "promises": [{"run_id": "gone"}, {"run_id": "old", "mem_gb": 1, "gpu_uuid": UUID, "admitted": "noon"}]}))
    listed = cli("ls", cwd=workspace)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    wait_for(lambda: run["id"] in json.dumps(queue.read(workspace / "runs")["waiting"]), what="the gate to re-enqueue")
    gpu_machine(23.0)
    final = wait_for(lambda: (s := show(run["id"], workspace))["status"] == "exited" and s, timeout=60, what="admission")
    assert final["exit_code"] == 0
    log = (workspace / "runs" / run["id"] / "output.log").read_text()
    assert "Traceback" not in log
