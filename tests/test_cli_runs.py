"""End to end through the real CLI: the demo trainer, exit codes, reattach after a SIGKILLed
supervisor, and pid reuse."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil

from conftest import ROOT, cli, cli_json, release, wait_for


def _status(workspace, run_id):
    return cli_json("show", run_id, cwd=workspace)


def test_demo_trainer_runs_to_exit_0_with_falling_loss(workspace):
    run = cli_json("launch", "cones", "--set", "epochs=3", cwd=workspace)
    run_id = run["id"]
    assert run["status"] == "running" and run["pid"] > 0
    assert run["argv"][:3] == [sys.executable, "-m", "urbanrun.trainers.cones_unet"] and "--epochs" in run["argv"]
    assert run["changed"] == {"epochs": 3}
    listed = cli_json("ls", cwd=workspace)["runs"]
    assert [r["id"] for r in listed] == [run_id]
    final = wait_for(lambda: (r := _status(workspace, run_id))["status"] != "running" and r,
                     what="the demo run to end")
    assert final["status"] == "exited" and final["exit_code"] == 0 and final["signal"] is None
    logs = cli("logs", run_id[:18], cwd=workspace, check=True).stdout
    assert "Epoch 3/3 | Train Loss:" in logs and "Training complete" in logs
    assert "\r" not in logs  # tqdm frames collapse to the last one
    points = [json.loads(l) for l in open(os.path.join(final["run_dir"], "metrics.jsonl"))]
    losses = [p["loss"] for p in points if "loss" in p]
    assert len(losses) >= 6
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # the loss falls
    assert {"step", "epoch", "lr", "samples_per_s"} <= set(points[0])


def test_failing_run_records_its_exit_code(workspace):
    run = cli_json("launch", "exit_after", "--set", "code=3", "--set", "seconds=0.2", cwd=workspace)
    final = wait_for(lambda: (r := _status(workspace, run["id"]))["status"] != "running" and r)
    assert final["status"] == "failed" and final["exit_code"] == 3


def test_follow_streams_the_log_and_returns_the_runs_outcome(workspace):
    proc = cli("launch", "exit_after", "--set", "code=0", "--set", "seconds=0.3", "--follow", cwd=workspace)
    assert proc.returncode == 0, proc.stderr
    assert "working for 0.3s" in proc.stdout and "done" in proc.stdout
    assert "exited (code 0)" in proc.stderr


def test_reattach_after_the_supervisor_is_killed(workspace):
    """A urbanrun following a run is SIGKILLed; the run goes on; a new urbanrun shows it running,
    then its real exit code once it ends (the babysitter recorded it)."""
    follower = subprocess.Popen([sys.executable, "-m", "urbanrun.engine.cli", "launch", "held", "--follow"],
                                cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                )
    # killed once the run has started (killed while launching, the run would never start), and the
    # run ends only when released (a timed run could end while a loaded machine starts the next CLI)
    runs = wait_for(lambda: [r for r in cli_json("ls", cwd=workspace)["runs"] if r["status"] == "running"],
                    what="the run to start")
    run_id = runs[0]["id"]
    follower.send_signal(signal.SIGKILL)
    follower.wait()
    again = _status(workspace, run_id)
    assert again["status"] == "running"
    assert psutil.pid_exists(again["pid"])
    release(again["run_dir"])
    final = wait_for(lambda: (r := _status(workspace, run_id))["status"] != "running" and r, what="the run to end")
    assert final["status"] == "failed" and final["exit_code"] == 3  # the held run exits with 3


def test_a_reused_pid_does_not_fool_reattach(workspace):
    """A record says running with the pid of a live process, but another create time: lost."""
    impostor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        run_dir = workspace / "runs" / "20260101-000000-cones-abcd"
        run_dir.mkdir(parents=True)
        created = psutil.Process(impostor.pid).create_time()
        (run_dir / "run.toml").write_text(
            f'id = "20260101-000000-cones-abcd"\nrecipe = "cones"\nargv = ["x"]\ncwd = "/"\n'
            f'status = "running"\npid = {impostor.pid}\npid_create_time = {created - 1000}\nstarted = {time.time() - 60}\n')
        record = _status(workspace, "20260101-000000-cones-abcd")
        assert record["status"] == "lost"
        assert impostor.poll() is None  # and nothing was done to the unrelated process
    finally:
        impostor.kill()
        impostor.wait()
