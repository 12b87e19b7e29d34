"""Every write path under a full or read-only disk: what cannot be written is one sentence naming
the file or folder, and what was there before is intact, nothing of the attempt left behind.

The faults are real: a small tmpfs mounted for the test (root only; skipped elsewhere), filled to
its last byte or to a few pages short."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import cli
from test_storage import fill, mount  # noqa: F401 - the tmpfs fixture


def leave_free(folder: Path, free: int) -> Path:
    """Fill the file system under folder, then give back `free` bytes (whole pages)."""
    filler = fill(folder)
    with open(filler, "r+b") as fh:
        fh.truncate(max(0, os.path.getsize(filler) - free))
    return filler


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def use_scratchpad(workspace: Path, root: Path) -> None:
    with open(workspace / "config.toml", "a") as fh:
        fh.write(f'\n[scratchpad]\nroot = "{root}"\n')


def test_scratchpad_log_on_a_full_disk_leaves_no_folder_and_says_so(workspace, mount):
    """It left the role's dated folder, its lock file and an empty notes file behind, under a
    message saying nothing of the attempt was left behind."""
    runs = mount(size="64k")
    use_scratchpad(workspace, runs / "pad")
    fill(runs)
    before = tree(runs)
    proc = cli("scratchpad", "log", "data loader fixed", cwd=workspace)
    assert proc.returncode == 1, proc
    assert f"cannot write the scratchpad in {runs / 'pad'}: No space left on device" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert tree(runs) == before  # no pad/, no training-runner/, no .urbanrun.lock, no empty .md


def test_scratchpad_entry_torn_by_a_full_disk_is_cut_back(workspace, mount):
    """An entry larger than the space left was appended up to the last byte that fitted: the
    notes ended in half an entry (and every later entry was glued to it)."""
    runs = mount(size="64k")
    use_scratchpad(workspace, runs)
    assert cli("scratchpad", "log", "first entry", cwd=workspace).returncode == 0
    (notes,) = runs.glob("*/*.md")
    before = notes.read_bytes()
    fill(runs)  # the notes' own page still has room for ~4,000 bytes of the entry
    proc = cli("scratchpad", "log", "x" * 20_000, cwd=workspace)
    assert proc.returncode == 1 and "No space left on device" in proc.stderr, proc
    assert notes.read_bytes() == before


def test_scratchpad_save_that_cannot_land_keeps_no_copy_aside(tmp_path, mount):
    """The TUI's save keeps a changed file's version aside before it writes its own; when its own
    write then fails, the aside copy was left behind (and the error said nothing was)."""
    from urbanrun.engine.notes import scratchpad

    runs = mount(size="64k")
    notes = runs / "role" / "2026-11-30.md"
    notes.parent.mkdir()
    notes.write_text("# notes\nchanged by another editor\n")
    before = tree(runs)
    leave_free(runs, 4096)  # room for the aside copy, not for the edit
    with pytest.raises(OSError) as raised:
        scratchpad.save(notes, "# notes\n" + "mine " * 2000, base="# notes\n")
    assert raised.value.errno == 28
    assert [p for p in tree(runs) if not p.endswith(".urbanrun.lock")] == before  # the lock stays: the folder is not new
    assert notes.read_text() == "# notes\nchanged by another editor\n"


def test_a_recording_write_torn_by_a_full_disk_is_cut_back_to_whole_lines(mount):
    """The recording was a buffered text file: a write the disk took in part left half an event
    line, and the next write after room returned was glued to it (both events lost to a replay)."""
    from urbanrun.engine.core.events import Notice
    from urbanrun.engine.session.recorder import Recorder, read_session

    runs = mount(size="64k")
    recorder = Recorder(runs / "sessions")
    recorder.write([Notice(ts=1.0, text="before")])  # the file's first page, mostly free
    before = recorder.path.read_bytes()
    filler = fill(runs)
    with pytest.raises(OSError) as raised:
        recorder.write([Notice(ts=2.0, text="x" * 300) for _ in range(40)])  # more than the page's rest
    assert raised.value.errno == 28
    assert recorder.path.read_bytes() == before
    os.unlink(filler)
    recorder.write([Notice(ts=3.0, text="after")])
    recorder.close()
    assert [e.text for e in read_session(recorder.path)] == ["before", "after"]


QUIET = """
[recipes.quiet]
command = ["{python}", "-c", "import signal, sys; signal.signal(signal.SIGUSR1, lambda *_: sys.exit(3)); print('ready', flush=True); signal.pause()"]
"""


def _quiet_run_on(workspace: Path, runs: Path):
    """An Engine on `runs` with a started `quiet` run (it ends with code 3 on SIGUSR1, writing nothing)."""
    import json

    from urbanrun.engine.core.config import load_config
    from urbanrun.engine.session.loop import Engine
    from conftest import wait_for

    with open(workspace / "config.toml", "a") as fh:
        fh.write(QUIET)
    engine = Engine(load_config(workspace / "config.toml"), runs_dir=runs, gpu_source=None, host=False)
    engine.disk.interval = 0.5
    record = engine.launch("quiet")
    run_dir = runs / record.id
    child = wait_for(lambda: (run_dir / "child.json").exists() and json.loads((run_dir / "child.json").read_text()),
                     what="the babysitter's child")
    wait_for(lambda: "ready" in (run_dir / "output.log").read_text(), what="the run to be ready")
    return engine, record, child["pid"]


def test_engine_says_the_disk_is_full_and_records_a_run_end_once_room_returns(workspace, mount):
    """A run that ends while the disk is full: its babysitter holds the exit status, so it still
    looks running, and nothing said why (a person took it for hung). The engine says the disk is
    full once (StorageStatus and a warning naming the folder), keeps polling, records the end with
    its exit code once room returns, and says that once too."""
    import signal
    import time

    from urbanrun.engine.core.events import Notice, StorageStatus
    from conftest import wait_for

    runs = mount(size="1m")
    engine, record, child = _quiet_run_on(workspace, runs)
    seen = []
    try:
        filler = fill(runs)
        os.kill(child, signal.SIGUSR1)
        wait_for(lambda: seen.extend(engine.poll()) or engine.state.storage.get("full"), what="the disk said full")
        for _ in range(10):  # the run has ended, its end not yet writable: polls go on, it stays running
            seen += engine.poll()
            time.sleep(0.2)
        assert engine.state.runs[record.id].status == "running"
        full = [e.text for e in seen if isinstance(e, Notice) and e.text.startswith("the disk holding")]
        assert len(full) == 1 and f"the disk holding {runs} is full (" in full[0], full
        assert "one that ends meanwhile is recorded once there is room" in full[0]
        os.unlink(filler)
        wait_for(lambda: seen.extend(engine.poll()) or engine.state.runs[record.id].status == "failed",
                 what="the run's end, recorded", timeout=60)
        assert engine.state.runs[record.id].record["exit_code"] == 3
        assert engine.store.load(record.id).status == "failed"
        wait_for(lambda: seen.extend(engine.poll()) or not engine.state.storage.get("full"), what="room again")
        statuses = [e.status["full"] for e in seen if isinstance(e, StorageStatus)]
        assert statuses == [True, False], statuses
    finally:
        engine.kill(record.id, force=True)
        engine.close()


async def test_tui_on_a_full_disk_keeps_working_and_says_so(workspace, mount):
    """The TUI's top bar says the disk is full for as long as it is (a toast goes after 8 s), the
    app keeps polling, and the run's end shows in the table once room returns."""
    import signal

    from urbanrun.tui.app import make_app
    from test_tui import wait_until

    runs = mount(size="1m")
    engine, record, child = _quiet_run_on(workspace, runs)
    app = make_app(engine, scratchpad_dir=workspace / "pad")
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            bar = lambda: str(app.query_one("#top-bar").render())  # noqa: E731
            await wait_until(pilot, lambda: "running" in bar())
            filler = fill(runs)
            os.kill(child, signal.SIGUSR1)
            await wait_until(pilot, lambda: "disk full: " in bar(), shown=bar)
            await pilot.press("?")  # the app answers keys meanwhile
            await pilot.press("escape")
            os.unlink(filler)
            await wait_until(pilot, lambda: "failed" in bar() and "disk full" not in bar(), shown=bar)
    finally:
        engine.kill(record.id, force=True)
        engine.close()


def test_an_uncommitted_diff_too_big_for_the_space_left_is_not_kept_and_the_launch_goes_on(workspace, mount):
    """The run's code.diff was written in place: on a disk with room for the run but not for the
    diff, the diff took every byte left (a cut copy that passed for the whole), and the launch then
    failed for want of room for its record. It is written whole or not at all; the record's hash
    still says which diff it was."""
    import json
    import subprocess

    from conftest import cli_json

    subprocess.run(["git", "init", "-q"], cwd=workspace, check=True)
    (workspace / "model.py").write_text("x = 1\n")
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "model.py"], cwd=workspace, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c"], cwd=workspace, check=True)
    (workspace / "model.py").write_text("".join(f"x{i} = {i}  # an uncommitted line\n" for i in range(12_000)))
    runs = mount(size="1m")
    leave_free(runs, 64 * 1024)  # a run's folder needs a few pages; the diff, ~400 KB, does not fit
    run = cli_json("launch", "long_sleep", "--runs-dir", str(runs), cwd=workspace)
    try:
        run_dir = runs / run["id"]
        assert not (run_dir / "code.diff").exists()
        assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
        shown = cli_json("show", run["id"], "--runs-dir", str(runs), cwd=workspace)
        assert shown["status"] == "running" and shown["git_dirty"] and shown["git_diff_sha"], json.dumps(shown)[:400]
    finally:
        cli("kill", run["id"], "--force", "--runs-dir", str(runs), cwd=workspace)


def test_saving_recipe_defaults_on_a_full_or_read_only_disk_is_one_sentence_and_changes_nothing(
        tmp_path, monkeypatch, mount):
    """The launch form's 'save as defaults': a full disk said '[Errno 28] No space left on device:
    .../.config.toml.x1y2.tmp' (the temp file's name, no advice), and for the packaged config left
    the user's config folder it had made, empty. Now one sentence naming config.toml's folder; the
    file as it was; no folder left."""
    from urbanrun.engine.core.config import load_config, save_recipe_defaults
    from urbanrun.engine.core.errors import StorageError, UserError

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    full = mount(size="64k")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(full / "xdg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    fill(full)
    with pytest.raises(StorageError) as raised:
        save_recipe_defaults(load_config(), "cones", {"batch_size": 48})
    assert str(raised.value).startswith(f"cannot save the defaults of 'cones' to config.toml in {full / 'xdg' / 'urbanrun'}: "
                                        f"No space left on device; free some space")
    assert tree(full) == []  # no xdg/urbanrun folders, no temp file

    read_only = mount(read_only=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(read_only))
    with pytest.raises(UserError) as raised:
        save_recipe_defaults(load_config(), "cones", {"batch_size": 48})
    assert raised.value.code == "not_writable" and "Read-only file system; make it writable" in str(raised.value)


def test_an_exit_status_in_the_way_of_the_babysitter_is_waited_out_not_made_unreadable(workspace):
    """exit_status.json replaced by a folder while the run goes on: the babysitter retries its
    write (and says so in the log), but the first look made the run `unreadable` for good, saved in
    its record: once the folder was gone and the status landed, the exit code was never read. While
    the babysitter lives, the run stays running; its end is then recorded as it happened."""
    import json
    import signal

    from conftest import cli_json, wait_for

    with open(workspace / "config.toml", "a") as fh:
        fh.write(QUIET)
    run = cli_json("launch", "quiet", cwd=workspace)
    run_dir = Path(run["run_dir"])
    child = wait_for(lambda: (run_dir / "child.json").exists() and json.loads((run_dir / "child.json").read_text()),
                     what="the babysitter's child")
    wait_for(lambda: "ready" in (run_dir / "output.log").read_text(), what="the run to be ready")
    (run_dir / "exit_status.json").mkdir()
    try:
        os.kill(child["pid"], signal.SIGUSR1)
        wait_for(lambda: "exit_status.json (Is a directory); retrying" in (run_dir / "output.log").read_text(),
                 what="the babysitter's retry")
        shown = cli_json("show", run["id"], cwd=workspace)
        assert shown["status"] == "running", shown
        (run_dir / "exit_status.json").rmdir()
        wait_for(lambda: (run_dir / "exit_status.json").is_file(), what="the retried exit status")
        shown = cli_json("show", run["id"], cwd=workspace)
        assert (shown["status"], shown["exit_code"]) == ("failed", 3), shown
    finally:
        if (run_dir / "exit_status.json").is_dir():
            (run_dir / "exit_status.json").rmdir()
        cli("kill", run["id"], "--force", cwd=workspace)


def test_a_metrics_line_torn_by_a_full_disk_is_read_once_whole_when_its_rest_lands(mount):
    """A trainer's metrics line cut by the full disk (the kernel takes what fits: a short write; the
    writer's buffer keeps the rest and writes it once there is room): the follower holds the torn
    part, never parses it as a line, and reads the line once, whole, when its end arrives."""
    import json

    from urbanrun.engine.metrics.follower import FileFollower

    runs = mount(size="64k")
    path = runs / "metrics.jsonl"
    first = json.dumps({"step": 1, "loss": 0.5}) + "\n"
    path.write_text(first)
    follower = FileFollower(path)
    assert follower.poll() == [first.rstrip("\n")]
    filler = fill(runs)
    line = (json.dumps({"step": 2, "loss": 0.25, "note": "n" * 6000}) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        taken = os.write(fd, line)  # what fits in the file's last page
        assert 0 < taken < len(line)
        with pytest.raises(OSError):
            os.write(fd, line[taken:])
        assert follower.poll() == [] and follower.pending_line() == line[:taken].decode()
        os.unlink(filler)
        os.write(fd, line[taken:])
    finally:
        os.close(fd)
    assert follower.poll() == [line.decode().rstrip("\n")]
    assert follower.poll() == [] and follower.pending_line() is None


def test_the_demo_cone_cache_on_a_full_disk_keeps_no_half_written_cone(mount):
    """The demo trainer's cone cache: a cone cut by the full disk stayed as '<cone>.<pid>.tmp',
    holding space that every later run (each with its own pid) needed, and piling up."""
    pytest.importorskip("torch")
    from urbanrun.trainers.cone_data import build_cones

    runs = mount(size="256k")
    leave_free(runs, 96 * 1024)  # room for a few cones, not for 64
    for _ in range(2):
        with pytest.raises((OSError, RuntimeError)):  # torch.save says a failed write as RuntimeError
            build_cones(64, seed=0, cache_dir=runs)
    assert [p.name for p in runs.rglob("*.tmp")] == []
    assert not list(runs.rglob("complete"))  # the cache is not marked whole


def test_launch_at_every_level_of_a_nearly_full_disk_leaves_a_whole_run_or_nothing(workspace, mount):
    """Launch with 0 to 7 pages free: the space runs out at a different write each time (the draft
    folder, the record half written, the record's rename, the log, the record after the start).
    Each launch either starts a run whose record is whole, or is one sentence (exit 1) and leaves
    nothing in the runs folder, no hidden '.<id>.creating' draft included."""
    import json

    with open(workspace / "config.toml", "a") as fh:
        fh.write(QUIET)
    outcomes = []
    for pages in range(8):
        runs = mount(size="64k")
        leave_free(runs, pages * 4096)
        proc = cli("launch", "quiet", "--runs-dir", str(runs), "--json", cwd=workspace, timeout=90)
        if proc.returncode == 0:
            run = json.loads(proc.stdout)
            try:
                assert sorted(os.listdir(runs)) == [run["id"]]
                shown = cli("show", run["id"], "--runs-dir", str(runs), "--json", cwd=workspace)
                assert shown.returncode == 0 and json.loads(shown.stdout)["status"] in ("running", "starting")
            finally:
                cli("kill", run["id"], "--force", "--runs-dir", str(runs), cwd=workspace)
        else:
            error = json.loads(proc.stdout)["error"]
            assert proc.returncode == 1 and error["code"] == "disk_full", (pages, proc.stdout, proc.stderr)
            assert "No space left on device" in error["message"] and "Traceback" not in proc.stderr
            assert os.listdir(runs) == [], (pages, os.listdir(runs))  # hidden drafts included
        outcomes.append(proc.returncode)
    assert outcomes[0] == 1 and outcomes[-1] == 0, outcomes  # both ways were taken


def test_auto_logged_entries_refused_by_a_full_disk_are_kept_and_written_once_it_takes_them(workspace, mount):
    """The scratchpad's auto-log on a full disk: a launch's entry was a notice, a run's end entry
    was dropped without a word; both were lost for good. They are kept, said once, and written (each
    once, in order) when the disk has room again."""
    from urbanrun.engine.core.config import load_config
    from urbanrun.engine.core.events import Notice
    from urbanrun.engine.session.loop import Engine
    from conftest import wait_for

    pad = mount(size="64k")
    use_scratchpad(workspace, pad)
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None, host=False)  # runs: not on it
    notices = []
    try:
        filler = fill(pad)
        record = engine.launch("exit_after")  # exits 0 after 0.5 s
        wait_for(lambda: notices.extend(e.text for e in engine.poll() if isinstance(e, Notice))
                 or engine.state.runs[record.id].status == "exited", what="the run's end")
        engine.poll()
        notices += [e.text for e in engine.poll() if isinstance(e, Notice)]
        refused = [t for t in notices if t.startswith("scratchpad entries not written yet: ")]
        assert len(refused) == 1 and "No space left on device" in refused[0], notices
        assert len(engine.autolog.backlog) == 2  # the launch and the end
        os.unlink(filler)
        engine._backlog_next = float("-inf")  # not the 5 s wait
        written = [e.text for e in engine.poll() + engine.poll()
                   if isinstance(e, Notice) and e.text.startswith("scratchpad: ")]
        assert written == [f"scratchpad: the entries kept meanwhile are written, now that {pad} takes them"]
        (notes,) = pad.glob("*/*.md")
        text = notes.read_text()
        assert text.count(f"— launched {record.id}") == 1 and text.count(f"<!-- urbanrun:end:{record.id} -->") == 1
        assert text.index(f"launched {record.id}") < text.index(f"urbanrun:end:{record.id}")
        assert engine.autolog.backlog == []
    finally:
        engine.close()


def test_auto_logged_entries_the_disk_still_refuses_when_urbanrun_ends_are_said_with_their_text(workspace, mount):
    """Entries kept for a full disk lived only in the engine: quitting before the disk had room
    dropped them without a word. close() tries them once more, and says those still refused with
    their text, which urbanrun prints as it ends."""
    from urbanrun.engine.core.config import load_config
    from urbanrun.engine.session.loop import Engine

    pad = mount(size="64k")
    use_scratchpad(workspace, pad)
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None, host=False)
    try:
        filler = fill(pad)
        record = engine.launch("exit_after", values={"seconds": 0.1})
        assert len(engine.autolog.backlog) == 1
    finally:
        said = engine.close()
    assert said.startswith(f"1 scratchpad entry was not written ({pad}") and "No space left on device" in said, said
    assert f"launched {record.id}" in said
    os.unlink(filler)
    # with room again, the kept entry is written at close, and nothing is said
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None, host=False)
    filler = fill(pad)
    second = engine.launch("exit_after", values={"seconds": 0.1})
    os.unlink(filler)
    assert engine.close() is None
    assert f"launched {second.id}" in next(pad.glob("*/*.md")).read_text()


def test_a_folder_where_urbanrun_writes_a_file_is_named(workspace, monkeypatch):
    """A folder in the place of the launch queue's ledger or lock, or of today's notes: the sentence
    said 'cannot prepare the run in RUNS: Is a directory' (which of the folder's files?), and for the
    notes '4 is a folder' (the number of the descriptor it had opened). Now it names the path."""
    monkeypatch.setenv("URBANRUN_GPU_RECORDING", str(Path(__file__).parent / "fixtures" / "gpus" / "a100_8gpu.jsonl"))
    for name in ("queue.json", ".queue.lock"):
        runs = workspace / f"runs-{name}"
        (runs / name).mkdir(parents=True)
        proc = cli("launch", "long_sleep", "--queue", "--mem", "1", "--runs-dir", str(runs), cwd=workspace)
        assert proc.returncode == 2, proc
        assert proc.stderr == (f"urbanrun: cannot prepare the run in {runs}: {runs / name} is a folder where urbanrun "
                               f"writes a file; move it away and try again.\n")
        assert sorted(os.listdir(runs)) in ([name], sorted([name, ".queue.lock"]))  # no run folder
    use_scratchpad(workspace, workspace / "pad")
    import datetime

    notes_folder = workspace / "pad" / "training-runner" / f"{datetime.date.today()}.md"
    notes_folder.mkdir(parents=True)
    proc = cli("scratchpad", "log", "hello", cwd=workspace)
    assert proc.returncode == 2 and f"{notes_folder} is a folder where urbanrun writes a file" in proc.stderr, proc


def test_a_queued_launch_the_disk_stops_leaves_no_place_in_the_queue(workspace, mount, monkeypatch):
    """The queue's ledger took the run's place, then the disk refused the run's start: the run folder
    was removed, its place stayed (counted in every other run's position until a gate dropped it),
    under a sentence saying nothing of the attempt was left behind."""
    import json

    monkeypatch.setenv("URBANRUN_GPU_RECORDING", str(Path(__file__).parent / "fixtures" / "gpus" / "a100_8gpu.jsonl"))
    for pages in range(1, 5):  # the ledger written, then the run's own writes refused
        runs = mount(size="64k")
        leave_free(runs, pages * 4096)
        proc = cli("launch", "long_sleep", "--queue", "--mem", "1", "--runs-dir", str(runs), "--json", cwd=workspace)
        if proc.returncode == 0:
            cli("kill", json.loads(proc.stdout)["id"], "--force", "--runs-dir", str(runs), cwd=workspace)
            continue
        assert "No space left on device" in proc.stdout, proc
        ledger = runs / "queue.json"
        assert not ledger.exists() or json.loads(ledger.read_text())["waiting"] == [], (pages, ledger.read_text())
        assert [p for p in os.listdir(runs) if p not in ("queue.json", ".queue.lock")] == []


def test_an_entry_refused_for_good_holds_up_no_later_entry(tmp_path):
    """An auto-logged entry that would take the day's notes past what urbanrun reads (EFBIG) can
    never be written: it stayed first in the backlog, and every later entry (the next day's too, in a
    new file) waited behind it for the rest of the session. It is set aside, said with its text at
    the end, and the later entries are written."""
    import errno

    from urbanrun.engine.notes import scratchpad
    from urbanrun.engine.notes.autolog import AutoLog
    from urbanrun.engine.notes.scratchpad import NOTES_LIMIT

    settings = scratchpad.Settings(root=tmp_path / "pad", role="runner")
    log = AutoLog(settings)
    today, tomorrow = tmp_path / "today.md", tmp_path / "tomorrow.md"
    today.write_text("# notes\n" + "n" * (NOTES_LIMIT - 300) + "\n")
    with pytest.raises(OSError) as refused:
        log._append(today, "run 1 ended: " + "x" * 400, "end-1", "notes")
    assert refused.value.errno == errno.EFBIG and log.backlog == []
    assert log._append(tomorrow, "run 2 launched", "launch-2", "notes") is True
    assert "run 2 launched" in tomorrow.read_text()
    said = log.left_unwritten()
    assert said.startswith(f"1 scratchpad entry was not written ({today}: the entry would take it over")
    assert "run 1 ended: " + "x" * 400 in said
    assert today.stat().st_size < NOTES_LIMIT  # still readable


def test_the_engine_says_once_that_an_entry_cannot_be_written(workspace, tmp_path):
    import errno

    from urbanrun.engine.core.config import load_config
    from urbanrun.engine.core.events import Notice
    from urbanrun.engine.notes import scratchpad
    from urbanrun.engine.notes.autolog import AutoLog
    from urbanrun.engine.notes.scratchpad import NOTES_LIMIT
    from urbanrun.engine.session.loop import Engine

    log = AutoLog(scratchpad.Settings(root=tmp_path / "pad"))
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None, autolog=log)
    try:
        today = tmp_path / "today.md"
        today.write_text("n" * (NOTES_LIMIT - 10))
        with pytest.raises(OSError) as refused:
            log._append(today, "an entry too big for the day", None, "notes")
        assert refused.value.errno == errno.EFBIG
        for now in (1.0, 2.0):
            engine._write_autolog_backlog(now)
        said = [e.text for e in engine._pending if isinstance(e, Notice) and "cannot be written" in e.text]
        assert said == [f"a scratchpad entry cannot be written ({today}: the entry would take it over "
                        f"{NOTES_LIMIT:,} bytes, more than urbanrun reads there, so it was not written); its text "
                        f"is printed when urbanrun ends"]
    finally:
        engine.close()
