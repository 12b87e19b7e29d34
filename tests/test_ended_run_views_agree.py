"""A finished run's figures and diagnoses are stored when it ends; `doctor` read its files again.
After a hand edit of its output (or a leftover process writing to it), `status` (stored) and
`doctor` (re-read) gave two answers, and `ls` a third. Now every view gives the stored answer
while the files are those the run ended with, and the re-read one, labelled `files_changed`,
once they are not."""

from __future__ import annotations

import os

from test_agent_attack import agent, launched

OOM = ("Traceback (most recent call last):\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. "
       "GPU 0 has a total capacity of 23.69 GiB of which 1.00 GiB is free.\n")


def _views(workspace, run_id: str) -> dict[str, tuple]:
    """Each view's diagnoses (kinds) and, where it has one, verdict."""
    out = {}
    for name, summary in (("status", agent("status", "status", run_id, cwd=workspace)),
                          ("wait", agent("wait", "wait", run_id, "--timeout", "5", cwd=workspace)),
                          ("show", agent("show", "show", run_id, cwd=workspace)["summary"]),
                          ("ls", agent("ls", "ls", cwd=workspace)["runs"][0]["summary"]),
                          ("events", [e for e in agent("events", "events", "--run", run_id, cwd=workspace, lines=True,
                                                       code=None) if e["event"] == "ended"][0]["summary"])):
        out[name] = ([d["kind"] for d in summary["diagnoses"]], summary["verdict"])
    out["doctor"] = ([d["kind"] for d in agent("doctor", "doctor", run_id, cwd=workspace)["diagnoses"]], None)
    return out


def _agree(views: dict, kinds: list[str], verdict: str) -> None:
    assert {name: view[0] for name, view in views.items()} == {name: kinds for name in views}, views
    assert {view[1] for name, view in views.items() if name != "doctor"} == {verdict}, views


def test_status_doctor_show_ls_wait_events_agree_before_and_after_a_hand_edit(workspace):
    run_id = launched(workspace, "exit_after", "--set", "seconds=0.1")
    agent("wait", "wait", run_id, "--timeout", "60", cwd=workspace)
    log = workspace / "runs" / run_id / "output.log"
    as_ended, st = log.read_bytes(), log.stat()
    _agree(_views(workspace, run_id), [], "ended-ok")

    with open(log, "a") as fh:  # an OOM pasted into the log after the run ended
        fh.write(OOM)
    views = _views(workspace, run_id)
    _agree(views, ["cuda_oom", "files_changed"], "ended-failed")
    note = agent("status", "status", run_id, cwd=workspace)["diagnoses"][-1]
    assert note["severity"] == "info" and note["evidence"] == [f"{log} changed ({len(as_ended)} -> "
                                                               f"{len(as_ended) + len(OOM)} bytes)"]

    log.write_bytes(as_ended)  # put back as it was, to the nanosecond: the run as it ended
    os.utime(log, ns=(st.st_atime_ns, st.st_mtime_ns))
    _agree(_views(workspace, run_id), [], "ended-ok")

    log.unlink()
    os.mkfifo(log)  # a FIFO where the log was: read by nobody, said by everyone
    _agree(_views(workspace, run_id), ["log_unreadable", "files_changed"], "ended-ok")


def test_an_imported_run_shows_the_same_figures_in_ls_as_in_status(workspace):
    """An imported run never ends through urbanrun, so it had no stored figures: `ls` showed no
    progress and no loss ('-') where `status` showed step 29 and its train_loss."""
    from conftest import ROOT

    (imported,) = agent("import", "import", str(ROOT / "tests" / "fixtures" / "metrics" / "lightning"),
                        cwd=workspace)["runs"]
    status = agent("status", "status", imported["id"], cwd=workspace)
    listed = agent("ls", "ls", cwd=workspace)["runs"][0]["summary"]
    assert status["progress"]["step"] == 29 and status["metric"]["name"] == "train_loss"
    assert (listed["progress"], listed["metric"], listed["metrics"]) == \
        (status["progress"], status["metric"], status["metrics"])


def test_a_log_replaced_by_a_folder_is_said_so(workspace):
    """files_changed said "changed (N -> 4,096 bytes)" of a log replaced by a folder: a folder's
    size is no file's."""
    run_id = launched(workspace, "exit_after", "--set", "seconds=0.1")
    agent("wait", "wait", run_id, "--timeout", "60", cwd=workspace)
    log = workspace / "runs" / run_id / "output.log"
    size = log.stat().st_size
    log.unlink()
    log.mkdir()
    note = agent("status", "status", run_id, cwd=workspace)["diagnoses"][-1]
    assert note["kind"] == "files_changed" and \
        note["evidence"] == [f"{log} is now a folder, not a file ({size:,} bytes when the run ended)"], note
    _agree(_views(workspace, run_id), ["log_unreadable", "files_changed"], "ended-ok")


LIGHTNING = """
[recipes.lightning]
command = ["{python}", "SCRIPTS/lightning_csv.py"]
cwd = "CWD"
metrics_files = ["CWD/lightning_logs/*/metrics.csv"]
[recipes.lightning.params.loss]
type = "float"
positional = true
default = 1.0
"""


def _figures(workspace, run_id: str) -> dict:
    """Each view's last loss and the kinds of its diagnoses."""
    ls = next(r["summary"] for r in agent("ls", "ls", cwd=workspace)["runs"] if r["id"] == run_id)
    out = {}
    for name, summary in (("status", agent("status", "status", run_id, cwd=workspace)),
                          ("show", agent("show", "show", run_id, cwd=workspace)["summary"]), ("ls", ls)):
        out[name] = ((summary["metric"] or {}).get("last"), [d["kind"] for d in summary["diagnoses"]])
    return out


def test_wildcard_metrics_files_are_those_of_the_run_and_their_changes_are_noticed(workspace):
    """A recipe whose metrics_files is a wildcard shared by its runs (Lightning's version_N):
    `status` of the first run read the second run's CSV (loss 0.25) where `ls` showed its own (5),
    and a change to its CSV after its end was noticed by no view (wildcards were not in the end
    record)."""
    from conftest import SCRIPTS

    cwd = workspace / "project"
    cwd.mkdir()
    with open(workspace / "config.toml", "a") as fh:
        fh.write(LIGHTNING.replace("SCRIPTS", str(SCRIPTS)).replace("CWD", str(cwd)))
    first = launched(workspace, "lightning", "--set", "loss=5")
    agent("wait", "wait", first, "--timeout", "60", cwd=workspace)
    second = launched(workspace, "lightning", "--set", "loss=0.25")
    agent("wait", "wait", second, "--timeout", "60", cwd=workspace)
    assert _figures(workspace, first) == {view: (5.0, []) for view in ("status", "show", "ls")}
    assert _figures(workspace, second) == {view: (0.25, []) for view in ("status", "show", "ls")}

    csv = cwd / "lightning_logs" / "version_0" / "metrics.csv"
    with open(csv, "a") as fh:  # a row added to the first run's CSV after its end
        fh.write("0,4,0.5\n")
    assert _figures(workspace, first) == {view: (0.5, ["files_changed"]) for view in ("status", "show", "ls")}
    note = agent("status", "status", first, cwd=workspace)["diagnoses"][-1]
    assert note["evidence"] == [f"{csv} changed ({csv.stat().st_size - 8:,} -> {csv.stat().st_size:,} bytes)"]

    late = cwd / "lightning_logs" / "version_2"  # made after both ended: the later run's, not the first's
    late.mkdir()
    (late / "metrics.csv").write_text("epoch,step,train_loss\n0,1,0.125\n")
    assert _figures(workspace, second)["status"] == (0.125, ["files_changed"])
    assert agent("status", "status", second, cwd=workspace)["diagnoses"][-1]["evidence"] == \
        [f"{late / 'metrics.csv'} appeared ({(late / 'metrics.csv').stat().st_size} bytes)"]
    assert _figures(workspace, first)["status"] == (0.5, ["files_changed"])  # its change only


def test_a_run_that_ended_before_end_files_were_kept_shows_the_same_in_every_view(workspace):
    """A record from before urbanrun kept the files a run ended with: `ls` showed its stored
    diagnoses (none: older rules missed its OOM) while `status` and `doctor` diagnosed its log
    again (cuda_oom). Every view now gives the log's answer, and the record keeps it with the
    files, so a later change is noticed."""
    import tomllib

    import tomli_w

    run_id = launched(workspace, "exit_after", "--set", "seconds=0.1")
    agent("wait", "wait", run_id, "--timeout", "60", cwd=workspace)
    run_dir = workspace / "runs" / run_id
    with open(run_dir / "output.log", "a") as fh:
        fh.write(OOM)
    record = tomllib.loads((run_dir / "run.toml").read_text())
    for key in ("end_files", "summary"):  # as an older urbanrun wrote it
        record.pop(key, None)
    (run_dir / "run.toml").write_text(tomli_w.dumps(record))
    _agree(_views(workspace, run_id), ["cuda_oom"], "ended-failed")
    kept = tomllib.loads((run_dir / "run.toml").read_text())
    assert set(kept["end_files"]) == {"output.log", "metrics.jsonl"} and kept["diagnoses"][0]["kind"] == "cuda_oom"
    with open(run_dir / "output.log", "a") as fh:
        fh.write("a line added later\n")
    _agree(_views(workspace, run_id), ["cuda_oom", "files_changed"], "ended-failed")


def test_ls_of_many_runs_sharing_a_wildcard_reads_each_record_a_few_times(tmp_path):
    """Which run a wildcard's file belongs to depends on when the next run started: asked by each
    finished run of `ls`, every record was read once per such run (18 of 39 runs: 700 reads, 1.0 s
    where the listing took 0.2 s).
    The records are read once for all of them."""
    from urbanrun.engine.cli.runs import runs_with_summaries
    from urbanrun.engine.runs.store import RunRecord, RunStore
    from urbanrun.engine.session.end_files import fingerprint

    store, logs, n = RunStore(tmp_path / "runs"), tmp_path / "lightning_logs", 12
    records = []
    for i in range(n):
        (logs / f"version_{i}").mkdir(parents=True)
        (logs / f"version_{i}" / "metrics.csv").write_text(f"epoch,step,train_loss\n0,1,{i}\n")
        record = RunRecord(id=f"20260101-0000{i:02d}-lightning-{i:04x}", recipe="lightning", argv=["x"],
                           cwd=str(tmp_path), status="exited", exit_code=0, created=1000.0 + 60 * i,
                           started=1000.0 + 60 * i, ended=1030.0 + 60 * i,
                           metrics_files=[str(logs / "*" / "metrics.csv")])
        store.create(record)
        records.append(record)
    for record in records:  # as they ended: each with the files it had then
        record.end_files = fingerprint(store, record)
        store.save(record)
    from urbanrun.engine.metrics import run_files

    reads, walks, real_load, real_walk = [], [], RunStore.load, run_files.expand_globs
    RunStore.load = lambda self, run_id: (reads.append(run_id), real_load(self, run_id))[1]
    run_files.expand_globs = lambda patterns: (walks.append(patterns), real_walk(patterns))[1]
    try:
        listed = runs_with_summaries(RunStore(store.root), None, records)["runs"]
    finally:
        RunStore.load, run_files.expand_globs = real_load, real_walk
    assert len(listed) == n and len(reads) <= 2 * n, len(reads)
    assert len(walks) <= 2, len(walks)  # the runs' one pattern walked once (a `**` one walked 10 times took 2 s)
