"""A SLURM controller outage, for real: slurmctld is stopped with a job running and started again.
While it is down the job keeps its last known state (never `lost`, however long), the outage is
said once ("SLURM controller unreachable since HH:MM"), local runs go on being followed and
shown; once it is back the job is still tracked and can be killed. The controller is restarted
whatever happens (a finally, and a check that it answers again)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time

import psutil
import pytest

from urbanrun.engine.core.config import load_config
from urbanrun.engine.core.events import Notice
from urbanrun.engine.runs.backends import slurm
from urbanrun.engine.session.loop import Engine

from conftest import cli, drive, wait_for
from test_backends import needs_slurm


def _slurmctld() -> psutil.Process | None:
    for proc in psutil.process_iter(["name", "status"]):
        if proc.info["name"] == "slurmctld" and proc.info["status"] != psutil.STATUS_ZOMBIE:
            return proc
    return None


def _answers() -> bool:
    try:
        return subprocess.run(["squeue", "-h"], capture_output=True, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@contextlib.contextmanager
def controller_stopped():
    """Stop this machine's slurmctld (SIGTERM, as its init script does) and always start it again."""
    ctld = _slurmctld()
    if ctld is None or os.geteuid() != 0 or not shutil.which("slurmctld"):
        pytest.skip("needs the local single-node SLURM of .ci/run (a slurmctld this user can restart)")
    try:
        ctld.terminate()
        psutil.wait_procs([ctld], timeout=30)
        wait_for(lambda: not _answers(), timeout=30, what="the controller to stop answering")
        yield
    finally:
        if _slurmctld() is None:
            subprocess.run(["slurmctld"], check=False, timeout=60)  # daemonizes; recovers its saved state
        wait_for(_answers, timeout=120, what="slurmctld to answer again")  # it recovers its state: slow when loaded


@needs_slurm
def test_a_controller_outage_keeps_the_job_and_the_local_runs(workspace):
    skew = [0.0]  # the engine's clock jumps past the 60 s after which an unknown job would be lost
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None, record_session=False,
                    clock=lambda: time.time() + skew[0])
    job = engine.launch("long_sleep", backend="slurm")
    drive(engine, lambda: engine.state.runs[job.id].status == "running")
    try:
        with controller_stopped():
            local = engine.launch("exit_after", {"code": "0", "seconds": "0.5"})  # a local run during the outage
            events = drive(engine, lambda: engine.state.runs[local.id].status == "exited")
            skew[0] = 600.0
            engine.supervisor.slurm.nudge()  # ask the silent controller again at once
            events += drive(engine, lambda: engine.store.load(job.id).unreachable_since is not None)
            for _ in range(3):
                engine.supervisor.slurm.nudge()
                events += engine.poll()
            down = engine.store.load(job.id)
            assert down.status == "running" and down.ended is None  # last known state, not lost
            outage = [e.text for e in events if isinstance(e, Notice) and "unreachable since" in e.text]
            assert len(outage) == 1 and "SLURM controller unreachable since " in outage[0]
            assert {job.id, local.id} <= set(engine.state.runs)  # local runs are still shown
            assert not engine.supervisor.slurm.reachable
            listing = cli("ls", cwd=workspace)
            assert listing.returncode == 0 and local.id in listing.stdout and job.id in listing.stdout
            assert "SLURM controller unreachable since" in listing.stdout
            refused = cli("kill", job.id, "--grace", "1", cwd=workspace)
            assert refused.returncode == 2 and "did not answer" in refused.stderr and "Traceback" not in refused.stderr
        # back: the job is still tracked, its kill (asked during the outage) goes through; the engine
        # finds the controller again by itself (its back-off: up to 15 s), then the cancel lands
        events = drive(engine, lambda: engine.state.runs[job.id].status not in ("running", "pending"), timeout=120)
        assert any(isinstance(e, Notice) and "answers again" in e.text for e in events)
        final = engine.store.load(job.id)
        assert final.status == "killed" and final.unreachable_since is None
        assert slurm.SlurmClient().state(job.job_id).state == "CANCELLED"
    finally:
        if engine.store.load(job.id).active:
            subprocess.run(["scancel", job.job_id], timeout=30)
        engine.close()


@needs_slurm
def test_a_job_survives_an_outage_and_is_killed_afterwards(workspace):
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None, record_session=False)
    job = engine.launch("long_sleep", backend="slurm")
    drive(engine, lambda: engine.state.runs[job.id].status == "running")
    try:
        with controller_stopped():
            engine.supervisor.slurm.nudge()
            drive(engine, lambda: not engine.supervisor.slurm.reachable)
        engine.supervisor.slurm.nudge()
        drive(engine, lambda: engine.supervisor.slurm.reachable)
        assert engine.store.load(job.id).status == "running"
        engine.kill(job.id, grace=5)
        drive(engine, lambda: engine.state.runs[job.id].status not in ("running", "pending"))
        assert engine.store.load(job.id).status == "killed"
    finally:
        if engine.store.load(job.id).active:
            subprocess.run(["scancel", job.job_id], timeout=30)
        engine.close()


@needs_slurm
async def test_the_tui_keeps_showing_every_run_during_an_outage(workspace):
    from urbanrun.tui.app import make_app
    from urbanrun.tui.runs_table import RunsTable
    from urbanrun.tui.top_bar import top_bar_text

    from test_tui import wait_until

    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None, record_session=False)
    job = engine.launch("long_sleep", backend="slurm")
    drive(engine, lambda: engine.state.runs[job.id].status == "running")
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    try:
        async with app.run_test(size=(200, 45)) as pilot:
            await wait_until(pilot, lambda: job.id in app.state.runs)
            with controller_stopped():
                local = app.source.launch("exit_after", {"code": "0", "seconds": "0.5"})
                engine.supervisor.slurm.nudge()
                await wait_until(pilot, lambda: "unreachable since" in str(
                    app.query_one(RunsTable).get_cell(job.id, "why")))
                await wait_until(pilot, lambda: app.state.runs.get(local.id) and
                                 app.state.runs[local.id].status == "exited")
                top = str(top_bar_text(app, app.state))
                assert "no runs yet" not in top and "1 running" in top and "1 exited" in top
                assert app.state.runs[job.id].status == "running"
            await pilot.press("q")
    finally:
        if engine.store.load(job.id).active:
            subprocess.run(["scancel", job.job_id], timeout=30)
        engine.close()
