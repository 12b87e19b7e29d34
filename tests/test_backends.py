"""The torchrun backend (2 CPU workers, gloo) and the slurm backend against a real SLURM
(CI starts one from ../shared/slurm; locally these tests skip without it, unless
URBANRUN_REQUIRE_SLURM=1, which CI sets, turns a missing SLURM into a failure)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil
import pytest

from urbanrun.engine.runs.backends import slurm
from urbanrun.engine.core.config import load_config
from urbanrun.engine.session.loop import Engine
from urbanrun.engine.core.events import LogLines, MetricPoints

from conftest import cli, cli_json, drive, release, wait_for

def _slurm_up() -> bool:
    if not slurm.available():
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(state in out.stdout for state in ("idle", "mix", "alloc"))


needs_slurm = pytest.mark.skipif(not os.environ.get("URBANRUN_REQUIRE_SLURM") and not _slurm_up(),
                                 reason="no SLURM controller answering here (CI starts a real single-node SLURM)")


def _engine(workspace):
    return Engine(load_config(workspace / "config.toml"), gpu_source=None, record_session=False)




def _processes_of(run_id: str) -> list[int]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("URBANRUN_RUN_ID") == run_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


# -- torchrun ---------------------------------------------------------------------------------------
def test_torchrun_ranks_logs_and_the_failing_rank(workspace):
    run = cli_json("launch", "ddp", "--set", "fail_rank=1", cwd=workspace)
    assert run["backend"] == "torchrun" and "--nproc-per-node=2" in run["argv"]
    final = wait_for(lambda: (r := cli_json("show", run["id"], cwd=workspace))["status"] != "running" and r)
    assert final["status"] == "failed"
    log = cli("logs", run["id"], cwd=workspace, check=True).stdout
    assert "[default0]:rank 0/2 step=1" in log and "[default1]:rank 1/2 step=1" in log
    assert "rank 1/2 step=2" in cli("logs", run["id"], "--rank", "1", cwd=workspace, check=True).stdout
    doctor = cli_json("doctor", run["id"], cwd=workspace)["diagnoses"][0]
    assert doctor["kind"] == "torchrun_child_failed" and doctor["facts"]["rank"] == 1
    assert "rank 1 hit a bad batch" in doctor["evidence"][0]


def test_killing_a_torchrun_run_leaves_no_worker(workspace):
    run = cli_json("launch", "ddp", "--set", "steps=1000", cwd=workspace)
    wait_for(lambda: "step=2" in cli("logs", run["id"], cwd=workspace).stdout, what="both workers running")
    workers = _processes_of(run["id"])
    assert len(workers) >= 3  # torchrun's agent and two ranks
    assert cli("kill", run["id"], "--grace", "5", cwd=workspace).returncode == 0
    assert not [p for p in workers if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert cli_json("show", run["id"], cwd=workspace)["status"] == "killed"


# -- slurm ------------------------------------------------------------------------------------------
@needs_slurm
def test_slurm_demo_streams_and_completes(workspace):
    engine = _engine(workspace)
    record = engine.launch("cones", {"epochs": "6"}, backend="slurm")
    assert record.job_id and record.status == "pending"
    events = drive(engine, lambda: engine.state.runs[record.id].status not in ("pending", "running", "starting"))
    running = {e.run_id for e in events if isinstance(e, (LogLines, MetricPoints))}
    assert record.id in running
    statuses = [e.run.get("status") for e in events if getattr(e, "run", {}).get("id") == record.id]
    assert "running" in statuses  # seen running, with its log and metrics streaming, before the end
    final = engine.store.load(record.id)
    assert final.status == "exited" and final.exit_code == 0 and final.job_id == record.job_id
    assert engine.state.runs[record.id].metrics["loss"].count > 0
    assert "#SBATCH --output=" in (engine.store.run_dir(record.id) / "job.sbatch").read_text()


@needs_slurm
def test_slurm_exit_code_and_reattach_after_a_restart(workspace):
    first = _engine(workspace)
    record = first.launch("held", backend="slurm")  # exits 3 once released (a timed run could end unseen)
    drive(first, lambda: first.state.runs[record.id].status == "running")
    first.close()
    release(first.store.run_dir(record.id))
    again = _engine(workspace)  # a new urbanrun on the login node reattaches by job id
    drive(again, lambda: record.id in again.state.runs and again.state.runs[record.id].status
           not in ("pending", "running"))
    final = again.store.load(record.id)
    assert final.status == "failed" and final.exit_code == 3


@needs_slurm
def test_slurm_kill_cancels_and_leaves_no_process(workspace):
    engine = _engine(workspace)
    record = engine.launch("long_sleep", backend="slurm")
    drive(engine, lambda: engine.state.runs[record.id].status == "running" and _processes_of(record.id))
    engine.kill(record.id, grace=10)
    drive(engine, lambda: engine.state.runs[record.id].status not in ("running", "pending"))
    final = engine.store.load(record.id)
    assert final.status == "killed"
    assert slurm.SlurmClient().state(record.job_id).state == "CANCELLED"
    wait_for(lambda: not _processes_of(record.id), what="the job's processes to end")


@needs_slurm
def test_slurm_pending_with_its_reason(workspace):
    run = cli_json("launch", "long_sleep", "--backend", "slurm", "--opt", "cpus_per_task=64", cwd=workspace)
    try:
        shown = wait_for(lambda: (r := cli_json("show", run["id"], cwd=workspace))["pending_reason"] and r)
        assert shown["status"] == "pending" and shown["pending_reason"] in ("PartitionConfig", "Resources",
                                                                           "BadConstraints")
        assert f"pending ({shown['pending_reason']})" in cli("ls", cwd=workspace, check=True).stdout
    finally:
        cli("kill", run["id"], "--grace", "1", cwd=workspace)


def test_slurm_batch_script_quotes_everything(tmp_path):
    script, env = slurm.batch_script("r1", "cones", ["python", "train.py", "--name", "a b; rm -rf /"], "/work dir",
                                     {"X": "$(whoami)"}, tmp_path / "out.log", slurm.options({}, {}, {"gres": "gpu:1"}))
    assert "exec python train.py --name 'a b; rm -rf /'" in script
    assert "#SBATCH --chdir='/work dir'" in script and "#SBATCH --gres=gpu:1" in script
    # the environment travels through sbatch's own, never through the script
    assert "$(whoami)" not in script and env["X"] == "$(whoami)" and "#SBATCH --export=ALL" in script


@pytest.mark.parametrize("job, state, code, signal", [
    ({"job_id": 5, "job_state": "FAILED", "exit_code": 768, "state_reason": "NonZeroExitCode"}, "FAILED", 3, None),
    ({"job_id": 6, "job_state": "CANCELLED", "exit_code": 15}, "CANCELLED", 0, 15),
    ({"job_id": 7, "job_state": ["FAILED"], "exit_code": {"status": ["ERROR"], "return_code": {"set": True,
      "infinite": False, "number": 3}, "signal": {"id": {"set": False, "infinite": False, "number": 0}}}},
     "FAILED", 3, None),
    ({"job_id": 8, "job_state": ["PENDING"], "state_reason": "Resources", "exit_code": {"return_code": 0}},
     "PENDING", 0, None),
])
def test_squeue_json_shapes_of_22_05_and_23_02(job, state, code, signal):
    parsed = slurm.parse_squeue_job(job)
    assert (parsed.state, parsed.exit_code, parsed.signal) == (state, code, signal)


async def test_the_launch_form_offers_the_backend_and_its_options(workspace):
    from urbanrun.tui.app import make_app
    from urbanrun.tui.launch_form import LaunchForm

    engine = _engine(workspace)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    async with app.run_test(size=(160, 45)) as pilot:
        app.push_screen(LaunchForm(engine.config, "ddp", engine.store), app._launch_chosen)
        await pilot.pause(0.5)
        form = app.screen
        assert form.query_one("#backend").value == "torchrun"  # the recipe's backend
        form.query_one("#backend-opts").value = "nproc_per_node=2"
        form.query_one("#f-steps").value = "3"
        await pilot.pause(0.2)
        assert "torchrun --nproc-per-node=2" in str(form.query_one("#command").render())
        form.action_launch()
        for _ in range(600):  # two torchrun ranks importing torch on a loaded 2-core machine: be patient
            await pilot.pause(0.2)
            if app.state.runs and next(iter(app.state.runs.values())).status == "exited":
                break
        (run,) = app.state.runs.values()
        assert run.record["backend"] == "torchrun" and run.record["backend_options"]["nproc_per_node"] == 2
        assert run.status == "exited"
    engine.close()


@needs_slurm
def test_one_squeue_for_all_jobs_and_backoff(workspace):
    engine = _engine(workspace)
    runs = [engine.launch("long_sleep", backend="slurm") for _ in range(2)]
    try:
        drive(engine, lambda: all(engine.state.runs[r.id].status == "running" for r in runs))  # states settle
        client = slurm.SlurmClient(clock=lambda: now[0])
        now = [0.0]
        states = [client.state(r.job_id) for r in runs]
        assert all(states) and client.calls == 1  # both jobs from one squeue --json
        now[0] = 1.0
        client.state(runs[0].job_id)
        assert client.calls == 1  # inside the interval: no new call
        intervals = []
        for _ in range(4):
            now[0] += 60
            client.state(runs[0].job_id)
            intervals.append(client._next - now[0])
        assert intervals[0] < intervals[-1] <= slurm.POLL_MAX  # backs off while nothing changes
    finally:
        for r in runs:
            engine.kill(r.id, grace=1)
        drive(engine, lambda: all(engine.state.runs[r.id].status not in ("pending", "running") for r in runs))


def test_squeue_json_with_its_controller_down_is_not_an_empty_queue():
    captured = (Path(__file__).parent / "fixtures" / "slurm" / "squeue_json_controller_down_22.05.json").read_text()
    assert slurm.squeue_jobs(captured) == "Unspecified error"  # exit 0, an error list and no jobs (real 22.05 output)
    assert slurm.squeue_jobs('{"errors": [], "jobs": []}') == {}  # a controller that answers: really no jobs
    assert slurm.squeue_jobs("slurm_load_jobs error") == "its output is not JSON"
