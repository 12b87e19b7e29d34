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
