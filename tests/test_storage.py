"""Storage faults: a read-only or full runs folder is one sentence naming it (exit 2 for the
user's folder, 1 for a full disk) and leaves no run folder behind; a run that ends while the
disk is full keeps its exit status (the babysitter retries until the write lands).

The faults are real: a small tmpfs mounted for the test (root only; skipped elsewhere)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from conftest import cli, cli_json, wait_for


@pytest.fixture
def mount(tmp_path):
    """mount(size, read_only) -> a fresh tmpfs folder; unmounted after the test."""
    mounted = []

    def make(size: str = "1m", read_only: bool = False):
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}): needs root")
        mounted.append(where)
        (where / "runs").mkdir()
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        return where / "runs"

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder) -> "os.PathLike":
    """Fill the file system under folder to its last byte; returns the filler (delete it to free)."""
    filler = folder.parent / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def test_read_only_runs_folder_is_one_sentence_and_exit_2(workspace, mount):
    runs = mount(read_only=True)
    for args in (["launch", "cones"], ["import", str(workspace / "config.toml")]):
        proc = cli(*args, "--runs-dir", str(runs), cwd=workspace)
        assert proc.returncode == 2, proc
        assert f"cannot create a run folder in {runs}: Read-only file system" in proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert os.listdir(runs) == []


def test_full_runs_folder_is_one_sentence_exit_1_and_no_folder_left(workspace, mount):
    runs = mount()
    fill(runs)
    metrics = workspace / "m.jsonl"
    metrics.write_text('{"step": 1, "loss": 0.5}\n')
    for args in (["launch", "cones"], ["import", str(metrics)]):
        proc = cli(*args, "--runs-dir", str(runs), cwd=workspace)
        assert proc.returncode == 1, proc
        assert f"in {runs}: No space left on device; free some space" in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert os.listdir(runs) == []  # no empty (or half-written) run folder


def test_a_run_that_ends_on_a_full_disk_keeps_its_exit_status(workspace, mount):
    runs = mount()
    # a run that writes nothing as it ends (a print would fail), and ends when told: once the disk is
    # full (a timed one could end before a loaded machine has filled it)
    with open(workspace / "config.toml", "a") as fh:
        fh.write('\n[recipes.quiet]\ncommand = ["{python}", "-c", "import signal, sys; '
                 'signal.signal(signal.SIGUSR1, lambda *_: sys.exit(3)); print(\'ready\', flush=True); '
                 'signal.pause()"]\n')
    run = cli_json("launch", "quiet", "--runs-dir", str(runs), cwd=workspace)
    run_dir = runs / run["id"]
    child = wait_for(lambda: (run_dir / "child.json").exists() and json.loads((run_dir / "child.json").read_text()),
                     what="the babysitter's child")
    wait_for(lambda: "ready" in (run_dir / "output.log").read_text(), what="the run to be ready")
    filler = fill(runs)
    os.kill(child["pid"], signal.SIGUSR1)
    wait_for(lambda: not psutil.pid_exists(child["pid"]) or psutil.Process(child["pid"]).status() == "zombie",
             what="the run's end")
    time.sleep(1.5)  # the babysitter has tried (and failed) to write the exit status by now
    assert not (run_dir / "exit_status.json").exists()
    shown = cli_json("show", run["id"], "--runs-dir", str(runs), cwd=workspace)
    assert shown["status"] == "running"  # not `lost`: its babysitter still holds the exit status
    os.unlink(filler)
    wait_for(lambda: (run_dir / "exit_status.json").exists(), what="the retried exit status")
    shown = cli_json("show", run["id"], "--runs-dir", str(runs), cwd=workspace)
    assert shown["status"] == "failed" and shown["exit_code"] == 3


def test_ls_and_show_on_a_full_disk_show_what_is_known(workspace, mount):
    runs = mount()
    run = cli_json("launch", "long_sleep", "--runs-dir", str(runs), cwd=workspace)
    try:
        wait_for(lambda: "started" in (runs / run["id"] / "output.log").read_text(), what="the run's start")
        filler = fill(runs)
        os.killpg(run["pid"], 9)  # babysitter and child, with no exit status: `ls` finds it lost, and must save that
        proc = cli("ls", "--runs-dir", str(runs), cwd=workspace)
        assert proc.returncode == 0 and run["id"] in proc.stdout, proc.stderr
        assert "its record could not be updated (No space left on device)" in proc.stderr
        os.unlink(filler)
    finally:
        cli("kill", run["id"], "--force", "--runs-dir", str(runs), cwd=workspace)


def test_a_session_recording_on_a_full_disk_pauses_with_a_notice_and_no_event_lost(workspace, mount, monkeypatch):
    from urbanrun.engine.core.config import load_config
    from urbanrun.engine.core.events import Notice, RunChanged, StorageStatus
    from urbanrun.engine.session import loop
    from urbanrun.engine.session.loop import Engine
    from urbanrun.engine.session.recorder import read_session

    monkeypatch.setattr(loop, "WRITE_RETRY_SECONDS", 0.0)  # tried again at every poll
    runs = mount()
    engine = Engine(load_config(workspace / "config.toml"), runs_dir=runs, gpu_source=None, host=False)
    engine.disk.interval = 0  # the disk looked at every poll: its room again is the poll's event
    record = engine.launch("long_sleep")
    try:
        filler = fill(runs)
        first = engine.poll()  # the recording cannot be written: the poll still returns its events
        assert any(isinstance(e, RunChanged) and e.run_id == record.id for e in first)
        assert engine.state.runs[record.id].status == "running"
        notices = [e.text for e in engine.poll() if isinstance(e, Notice)]
        assert sum(t.startswith("session recording paused: ") and "No space left on device" in t
                   for t in notices) == 1, notices
        assert not [e for e in engine.poll() if isinstance(e, Notice) and "recording" in e.text]  # said once
        os.unlink(filler)
        engine.poll()
        resumed = [e.text for e in engine.poll() if isinstance(e, Notice) and "recording" in e.text]
        assert len(resumed) == 1 and resumed[0].startswith("session recording resumed in "), resumed
        raw = engine.recorder.path.read_bytes()
        assert raw.endswith(b"\n")  # whole lines: the torn write was cut back
        recorded = read_session(engine.recorder.path)
        assert len(recorded) == raw.count(b"\n")  # every line an event, none glued to a torn one
        assert [e.status["full"] for e in recorded if isinstance(e, StorageStatus)] == [False]  # what came after
    finally:
        engine.kill(record.id, force=True)
        engine.close()


def test_a_disk_that_fills_between_the_run_folder_and_its_start_ends_launch_with_nothing_left(workspace, mount):
    # room for the run folder and its first record, not for the record's update once the run
    # started: launch stops the run (its babysitter included: it would retry its exit status on
    # this disk forever while launch waited for it) and says so in one sentence
    runs = mount(size="64k")
    filler = fill(runs)
    with open(filler, "r+b") as fh:
        fh.truncate(os.path.getsize(filler) - 4096)  # one page free
    proc = cli("launch", "long_sleep", "--runs-dir", str(runs), cwd=workspace, timeout=60)
    assert proc.returncode == 1, proc
    assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert os.listdir(runs) == []
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(runs) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == [], leftovers


def test_kill_of_a_run_whose_folder_cannot_be_written_still_ends_it(workspace):
    """The run's folder made immutable (chattr +i; a read-only remount is refused while the run
    writes its log): kill ended in a PermissionError traceback and left the run running. The kill
    goes on from memory. It does not say "killed" (exit 0) while the record still says running
    (`ls` then shows it lost): it says what happened, the record's path and what to do, exit 1."""
    run = cli_json("launch", "long_sleep", cwd=workspace)
    run_dir = run["run_dir"]
    wait_for(lambda: "started" in open(os.path.join(run_dir, "output.log")).read(), what="the run to start")
    tree = [run["pid"]] + [p.pid for p in psutil.Process(run["pid"]).children(recursive=True)]
    locked = subprocess.run(["chattr", "+i", run_dir], capture_output=True, text=True)
    if locked.returncode != 0:
        cli("kill", run["id"], cwd=workspace)
        pytest.skip(f"chattr +i is refused here ({locked.stderr.strip()})")
    try:
        proc = cli("kill", run["id"], cwd=workspace, timeout=90)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "its record could not be updated" in proc.stderr and "killed" not in proc.stdout
        assert f"run {run['id']}: no process of it is left, but its record {run_dir}/run.toml could not be " \
               f"updated (Operation not permitted): it still says running" in proc.stderr, proc.stderr
        assert not [pid for pid in tree if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        again = cli("kill", run["id"], "--json", cwd=workspace, timeout=90)  # an agent: the same, as an error object
        error = json.loads(again.stdout)["error"]
        assert again.returncode == 1 and error["code"] == "record_not_saved" and "lost, not killed" in error["message"]
    finally:
        subprocess.run(["chattr", "-i", run_dir], capture_output=True)
        cli("kill", run["id"], "--force", cwd=workspace)


OOM_THEN_SLEEP = """
[recipes.oom_then_sleep]
command = ["{python}", "-c", "import time; print('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.69 GiB of which 1.00 GiB is free.', flush=True); time.sleep(120)"]
"""


def test_status_wait_doctor_events_of_a_live_run_whose_folder_cannot_be_written(workspace):
    """A live run's new diagnosis is stored by the first view that finds it: with its folder
    immutable, status, wait, doctor and events ended in an internal_error traceback. They show the
    diagnosis, say once that the record could not be updated, and exit as usual."""
    import jsonschema

    from urbanrun.engine.cli.contract import load_schema

    with open(workspace / "config.toml", "a") as fh:
        fh.write(OOM_THEN_SLEEP)
    run = cli_json("launch", "oom_then_sleep", cwd=workspace)
    run_dir = run["run_dir"]
    wait_for(lambda: "CUDA out of memory" in open(os.path.join(run_dir, "output.log")).read(), what="the run's output")
    locked = subprocess.run(["chattr", "+i", run_dir], capture_output=True, text=True)
    if locked.returncode != 0:
        cli("kill", run["id"], cwd=workspace)
        pytest.skip(f"chattr +i is refused here ({locked.stderr.strip()})")
    try:
        for args, schema in ((["status"], "status"), (["wait", "--until", "diagnosis", "--timeout", "30"], "wait"),
                             (["doctor"], "doctor"), (["events", "--run"], "events")):  # RUN last
            proc = cli(*args, run["id"], "--json", cwd=workspace)
            assert proc.returncode == 0 and "Traceback" not in proc.stderr, (args, proc.stdout, proc.stderr)
            assert proc.stderr.count("its record could not be updated (Operation not permitted)") == 1, proc.stderr
            docs = [json.loads(line) for line in proc.stdout.splitlines()] if args[0] == "events" \
                else [json.loads(proc.stdout)]
            for doc in docs:
                jsonschema.validate(doc, load_schema(schema), cls=jsonschema.Draft202012Validator)
            kinds = [d["kind"] for doc in docs for d in (
                [doc["diagnosis"]] if doc.get("event") == "diagnosis" else doc.get("diagnoses", []))]
            assert "cuda_oom" in kinds, (args, docs)
    finally:
        subprocess.run(["chattr", "-i", run_dir], capture_output=True)
        cli("kill", run["id"], "--force", cwd=workspace)


def test_kill_of_leftovers_whose_record_cannot_be_written_says_so(workspace):
    """A run that exited 0 and left processes behind: kill stops them, but with its folder
    immutable the record still lists them; kill said "stopped the leftovers" (exit 0)."""
    from test_kill_final import LEAVER, _alive, _cleanup, _pids

    with open(workspace / "config.toml", "a") as fh:
        fh.write(LEAVER)
    run = cli_json("launch", "leaver", "--set", "mode=exit0", cwd=workspace)
    roles = wait_for(lambda: _pids(Path(run["run_dir"])), what="the script's processes")
    left = roles["child"] + roles["daemon"]
    try:
        wait_for(lambda: cli_json("show", run["id"], cwd=workspace)["status"] == "exited", what="the main process's exit")
        locked = subprocess.run(["chattr", "+i", run["run_dir"]], capture_output=True, text=True)
        if locked.returncode != 0:
            pytest.skip(f"chattr +i is refused here ({locked.stderr.strip()})")
        proc = cli("kill", run["id"], "--grace", "1", "--json", cwd=workspace, timeout=90)
        error = json.loads(proc.stdout)["error"]
        assert proc.returncode == 1 and error["code"] == "record_not_saved", (proc.stdout, proc.stderr)
        assert "it still says exited with leftover processes" in error["message"] and "lost" not in error["message"]
        assert [pid for pid in left if _alive(pid)] == []
    finally:
        subprocess.run(["chattr", "-i", run["run_dir"]], capture_output=True)
        _cleanup(left)


def test_free_space_hovering_at_the_line_is_not_a_status_every_check(mount):
    """Full under 64 KiB free, room again only from 256 KiB: a disk that hovers around the line (a run
    writing as another file is deleted) gave 'full' and 'room again' at every 5 s check."""
    from urbanrun.engine.session.disk_space import FULL_BYTES, ROOM_FACTOR, DiskSpace

    runs = mount("1m")
    filler = fill(runs)
    disk = DiskSpace(runs, interval=0)
    assert disk.check(0)["full"] is True
    size = os.path.getsize(filler)
    for free in (FULL_BYTES + 8192, 2 * FULL_BYTES, ROOM_FACTOR * FULL_BYTES - 8192):
        os.truncate(filler, size - free)
        assert disk.check(0) is None, f"{free} bytes freed"  # still full: no 'room again' yet
    os.truncate(filler, size - ROOM_FACTOR * FULL_BYTES - 65536)
    assert disk.check(0)["full"] is False
    os.truncate(filler, size - FULL_BYTES - 65536)  # fills a little again, above the line: no status
    assert disk.check(0) is None
