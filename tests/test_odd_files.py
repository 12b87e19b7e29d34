"""Files in a run folder that urbanrun did not write: a run.toml or exit_status.json that is a
FIFO, a device, or hundreds of MB. Each is that run's `unreadable` state in one sentence; no
listing blocks on it (a FIFO used to hang `ls` forever) or parses it whole (a 200 MB record took
`ls` a minute and 700 MB), and the other runs are listed as before."""

from __future__ import annotations

import os

import pytest

from conftest import cli, cli_json
from urbanrun.engine.runs.store import RECORD_LIMIT
from test_records import BAD_ID, BASE, GOOD_ID, _good_run


def _fifo(path):
    os.mkfifo(path)


def _device(path):
    os.symlink("/dev/zero", path)  # endless: read whole, it never returns


def _huge(path):
    with open(path, "w") as fh:  # valid TOML of a record, padded far past what urbanrun writes
        fh.write(BASE + 'status = "exited"\n' + "# padding " + "x" * RECORD_LIMIT + "\n")


ODD = [(_fifo, "not a regular file"), (_device, "not a regular file"), (_huge, "over 8,388,608 bytes")]


@pytest.mark.parametrize("make, reason", ODD, ids=["fifo", "device", "huge"])
def test_an_odd_run_record_is_that_runs_problem_and_never_blocks_a_listing(workspace, make, reason):
    _good_run(workspace)
    run_dir = workspace / "runs" / BAD_ID
    run_dir.mkdir()
    make(run_dir / "run.toml")
    proc = cli("ls", "--all", cwd=workspace, timeout=60)
    assert proc.returncode == 0 and GOOD_ID in proc.stdout and "unreadable" in proc.stdout
    assert reason in proc.stderr and str(run_dir / "run.toml") in proc.stderr and "Traceback" not in proc.stderr
    listed = {r["id"]: r for r in cli_json("ls", "--all", cwd=workspace)["runs"]}
    assert listed[GOOD_ID]["status"] == "exited" and reason in listed[BAD_ID]["problem"]
    for command in ("show", "kill", "status"):
        proc = cli(command, BAD_ID, cwd=workspace, timeout=60)
        assert proc.returncode == 2 and reason in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("make, reason", ODD[:2], ids=["fifo", "device"])
def test_an_odd_exit_status_is_that_runs_problem(workspace, make, reason):
    _good_run(workspace)
    run_dir = workspace / "runs" / BAD_ID
    run_dir.mkdir()
    (run_dir / "run.toml").write_text(BASE + 'status = "running"\npid = 1\npid_create_time = 1.0\nstarted = 1.0\n')
    make(run_dir / "exit_status.json")
    listed = {r["id"]: r for r in cli_json("ls", "--all", cwd=workspace)["runs"]}
    assert listed[GOOD_ID]["status"] == "exited"
    assert listed[BAD_ID]["status"] == "unreadable" and reason in listed[BAD_ID]["problem"]


def test_a_runs_folder_that_is_a_file_is_said_by_every_command(workspace):
    (workspace / "runs").write_text("not a folder\n")
    for args in (["ls"], ["ls", "--all", "--json"], ["events"], ["show", "last"], ["status", "1a2b"], ["kill", "last"],
                 ["launch", "exit_after"]):
        proc = cli(*args, cwd=workspace, timeout=60)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "is a file; give a folder" in proc.stderr + proc.stdout and "no runs" not in proc.stdout, args
    assert (workspace / "runs").read_text() == "not a folder\n"


@pytest.mark.parametrize("make", [_fifo, _device], ids=["fifo", "device"])
def test_an_odd_output_log_never_blocks_show_doctor_or_status(workspace, make):
    """output.log replaced by a FIFO or /dev/zero: `doctor RUN` blocked forever on either (the
    FIFO's open, the device's endless read); `show` did too, then (opened without blocking) ended
    in a traceback. Each now answers, the log said to be unreadable where it is shown."""
    _good_run(workspace)
    make(workspace / "runs" / GOOD_ID / "output.log")
    shown = cli("show", GOOD_ID, cwd=workspace, timeout=60)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert "output.log cannot be read (it is not a regular file)" in shown.stdout
    for args in (["doctor", GOOD_ID], ["status", GOOD_ID], ["show", GOOD_ID, "--json"], ["logs", GOOD_ID]):
        proc = cli(*args, cwd=workspace, timeout=60)
        assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr, (args, proc.stderr)
    # and doctor does not say "no problem found" of output it could not read
    found = cli_json("doctor", GOOD_ID, cwd=workspace)["diagnoses"]
    assert [d["kind"] for d in found] == ["log_unreadable"] and "it is not a regular file" in found[0]["summary"]


def test_a_live_runs_log_replaced_by_a_folder_is_said_by_status(workspace):
    """A live run whose output.log became a folder was `running-healthy` with no diagnosis: its
    silence passed for a healthy run's. It is `log_unreadable` (a warning: running-sick), as doctor
    says of an ended run."""
    run_id = cli_json("launch", "long_sleep", cwd=workspace)["id"]
    try:
        log = workspace / "runs" / run_id / "output.log"
        log.unlink()
        log.mkdir()
        status = cli_json("status", run_id, cwd=workspace)
        assert status["verdict"] == "running-sick", status
        (found,) = [d for d in status["diagnoses"] if d["kind"] == "log_unreadable"]
        assert found["summary"] == (f"its output log {log} cannot be read (it is a folder, not a file): only the "
                                    f"run's metrics and trends were diagnosed")
    finally:
        assert cli_json("kill", run_id, cwd=workspace)["status"] == "killed"
