"""Run records: one locked read-modify-write per change (concurrent writers lose nothing), and
tolerant reading (a malformed record is that run's `unreadable` state, never the tool's crash)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, cli, cli_json

from urbanrun.engine.core.errors import StorageError, UserError
from urbanrun.engine.runs.store import RecordError, RunRecord, RunStore

GOOD_ID = "20260101-000000-good-0000"
BAD_ID = "20260101-000001-bad-0000"


def _record(run_id: str, **extra) -> RunRecord:
    return RunRecord(id=run_id, recipe="x", argv=["x"], cwd="/", **extra)


def test_concurrent_writers_in_other_processes_lose_no_update(tmp_path):
    """Four processes each add 40 parameters to one record, one update at a time, and one more
    keeps rewriting an unrelated field from a stale copy: every key lands and the stale copy's
    writes never take one away."""
    store = RunStore(tmp_path)
    store.create(_record(GOOD_ID, status="running"))
    writer = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from urbanrun.engine.runs.store import RunStore
        store, who = RunStore({str(tmp_path)!r}), sys.argv[1]
        if who == "stale":
            record = store.load({GOOD_ID!r})  # read once, written 40 times
            for i in range(40):
                record.diagnosis = f"stale {{i}}"
                store.save(record)
        else:
            for i in range(40):
                store.update({GOOD_ID!r}, lambda r: r.params.update({{f"{{who}}-{{i}}": i}}))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, who]) for who in ("a", "b", "c", "d", "stale")]
    assert [p.wait(timeout=120) for p in procs] == [0] * 5
    final = store.load(GOOD_ID)
    assert len(final.params) == 160
    assert final.params["c-39"] == 39
    assert final.diagnosis == "stale 39" and final.status == "running"


def test_two_copies_saving_different_fields_keep_both(tmp_path):
    store = RunStore(tmp_path)
    store.create(_record(GOOD_ID, status="running"))
    tui, cli_copy = store.load(GOOD_ID), store.load(GOOD_ID)
    cli_copy.kill_requested = 123.0
    store.save(cli_copy)
    tui.diagnosis = "slow input"
    store.save(tui)
    final = store.load(GOOD_ID)
    assert final.kill_requested == 123.0 and final.diagnosis == "slow input"
    assert tui.kill_requested == 123.0  # the saving copy now sees the other writer's change too


def test_an_update_never_overwrites_an_unreadable_record(tmp_path):
    store = RunStore(tmp_path)
    store.create(_record(GOOD_ID))
    path = tmp_path / GOOD_ID / "run.toml"
    path.write_text(path.read_text().replace('status = "starting"', 'status = 7'))
    before = path.read_text()
    with pytest.raises(RecordError, match="field 'status' = 7 is not a text"):
        store.update(GOOD_ID, {"status": "running"})
    assert path.read_text() == before


def _good_run(workspace):
    store = RunStore(workspace / "runs")
    store.root.mkdir(parents=True, exist_ok=True)
    store.create(_record(GOOD_ID, status="exited", exit_code=0, started=1.0, ended=2.0))
    return store


def _write_record(workspace, text: str, run_id: str = BAD_ID):
    run_dir = workspace / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.toml").write_text(text)
    return run_dir


BASE = f'id = "{BAD_ID}"\nrecipe = "x"\nargv = ["x"]\ncwd = "/"\n'


@pytest.mark.parametrize("body, reason", [
    (BASE + 'status = "running"\npid = "abc"\n', "field 'pid' = 'abc' is not a whole number"),
    (BASE + 'status = "running"\npid = 5\npid_create_time = "yesterday"\n', "field 'pid_create_time'"),
    (BASE.replace('argv = ["x"]', 'argv = "python train.py"') + 'status = "exited"\n', "field 'argv'"),
    (BASE + 'status = "exited"\nparams = 5\n', "field 'params' = 5 is not a table"),
    (BASE.replace(BAD_ID, "../escape") + 'status = "running"\n', "its id '../escape' is not its folder's name"),
    ('id = [broken', "is not a valid run record"),
    ('pid = "abc"\n', f"has no `id`; a run record's id is its folder's name ('{BAD_ID}')"),
    (f'id = "{BAD_ID}"\nstatus = "exited"\n', "is missing fields a run record needs"),
])
def test_a_malformed_record_is_that_runs_unreadable_state(workspace, body, reason):
    _good_run(workspace)
    run_dir = _write_record(workspace, body)
    proc = cli("ls", "--all", cwd=workspace)
    assert proc.returncode == 0, proc.stderr
    assert GOOD_ID in proc.stdout and BAD_ID in proc.stdout
    assert "unreadable" in proc.stdout and reason in proc.stderr
    listed = {r["id"]: r for r in cli_json("ls", "--all", cwd=workspace)["runs"]}
    assert listed[GOOD_ID]["status"] == "exited"
    assert listed[BAD_ID]["status"] == "unreadable" and reason in listed[BAD_ID]["problem"]
    for command in ("show", "kill"):
        proc = cli(command, BAD_ID, cwd=workspace)
        assert proc.returncode == 2 and reason in proc.stderr and "Traceback" not in proc.stderr
    assert (run_dir / "run.toml").read_text() == body  # nothing rewritten
    assert not (workspace / "escape").exists() and not (workspace / "runs" / "escape").exists()


def test_a_record_that_is_a_folder_is_unreadable(workspace):
    _good_run(workspace)
    (workspace / "runs" / BAD_ID / "run.toml").mkdir(parents=True)
    proc = cli("ls", "--all", cwd=workspace)
    assert proc.returncode == 0 and "is a folder, not a run record" in proc.stderr
    assert "unreadable" in proc.stdout and GOOD_ID in proc.stdout


@pytest.mark.parametrize("exit_status, reason", [
    ("[0, null]", "holds list"),
    ('"done"', "holds str"),
    ('{"exit_code": "zero"}', "'exit_code' = 'zero' is not a whole number"),
    ("{not json", "cannot be read as the run's exit status"),
])
def test_a_malformed_exit_status_is_that_runs_unreadable_state(workspace, exit_status, reason):
    _good_run(workspace)
    run_dir = _write_record(workspace, BASE + 'status = "running"\npid = 1\npid_create_time = 1.0\nstarted = 1.0\n')
    (run_dir / "exit_status.json").write_text(exit_status)
    listed = {r["id"]: r for r in cli_json("ls", "--all", cwd=workspace)["runs"]}
    assert listed[GOOD_ID]["status"] == "exited"
    assert listed[BAD_ID]["status"] == "unreadable" and reason in listed[BAD_ID]["problem"]
    assert (run_dir / "exit_status.json").read_text() == exit_status  # the evidence is kept
    shown = cli("show", BAD_ID, cwd=workspace)
    assert shown.returncode == 0 and "unreadable" in shown.stdout and reason in shown.stdout


def test_ids_from_a_record_never_name_a_path_outside_the_runs_folder(tmp_path):
    store = RunStore(tmp_path / "runs")
    for bad in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(UserError, match="is not a run id"):
            store.run_dir(bad)
    with pytest.raises(UserError, match="is not a run id"):
        store.create(_record("../escape"))
    assert not (tmp_path / "escape").exists()


def test_a_run_folder_is_never_seen_without_its_record(tmp_path, monkeypatch):
    """Run folders without a record list as unreadable (a record lost), so one being made or
    removed must never be seen so: a listing during a launch's record write, or during the removal
    of a launch that failed, found the folder without its record (a false "has no record")."""
    store = RunStore(tmp_path)
    seen = []
    real_write = RunStore._write

    def write_and_look(self, record, folder=None):
        seen.append(store.ids())  # another process listing while the first record is being written
        real_write(self, record, folder)

    monkeypatch.setattr(RunStore, "_write", write_and_look)
    store.create(_record(GOOD_ID))
    assert seen == [[]] and store.ids() == [GOOD_ID] and store.load(GOOD_ID).id == GOOD_ID
    assert sorted(p.name for p in tmp_path.iterdir()) == [GOOD_ID]  # no draft left beside it

    import shutil
    real_rmtree = shutil.rmtree
    monkeypatch.setattr(shutil, "rmtree", lambda path, **kw: (seen.append(store.ids()), real_rmtree(path, **kw)))
    store.discard(GOOD_ID)
    assert seen[-1] == [] and list(tmp_path.iterdir()) == []

    store.create(_record(GOOD_ID))
    with pytest.raises(StorageError, match="was taken .* by another launch"):  # an id is never reused
        store.create(RunRecord(id=GOOD_ID, recipe="other", argv=["x"], cwd="/"))
    assert store.load(GOOD_ID).recipe == "x" and sorted(p.name for p in tmp_path.iterdir()) == [GOOD_ID]


def test_last_is_a_run_that_lost_its_record_in_the_same_second_as_another(tmp_path):
    """`last` placed a run without a readable record by its id's second, before the fraction of a
    second the other run's record holds: of two launches in one second, `status last` showed the
    other run (seen once in a full test run)."""
    store = RunStore(tmp_path)
    kept, lost = "20260101-000000-x-aaaa", "20260101-000000-x-0000"  # the lost one sorts first by id too
    import time as _time

    second = _time.mktime(_time.strptime("20260101-000000", "%Y%m%d-%H%M%S"))
    store.create(_record(kept, created=second + 0.9))
    store.create(_record(lost, created=second + 0.1))
    (tmp_path / lost / "run.toml").unlink()
    assert store.resolve("last") == lost
