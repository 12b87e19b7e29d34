"""The contract attacked as an agent uses it: only `--json`, every output validated against its
schema, every failure one `{"error": {...}}` object on stdout with exit 2 (bad input) or 1, and no
successful output carrying a top-level `error` (an agent tells a failure by that key alone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import jsonschema

from conftest import cli
from urbanrun.engine.cli.contract import load_schema


def agent(schema: str, *args, cwd, code: int | None = 0, lines: bool = False):
    """The real CLI as an agent runs it: its exit code, its stdout parsed and validated (an error
    object against the error schema, anything else against `schema`)."""
    proc = cli(*args, "--json", cwd=cwd)
    docs = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()] if lines \
        else [json.loads(proc.stdout)]
    for doc in docs:
        failed = isinstance(doc.get("error"), dict)
        jsonschema.validate(doc, load_schema("error" if failed else schema), cls=jsonschema.Draft202012Validator)
        assert failed or "error" not in doc, doc
    if code is not None:
        assert proc.returncode == code, (args, proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    return docs if lines else docs[0]


def error_of(*args, cwd, code: int = 2) -> dict:
    doc = agent("error", *args, cwd=cwd, code=code)
    assert set(doc) == {"schema_version", "error"}, doc
    return doc["error"]


def launched(cwd, *args) -> str:
    return agent("launch", "launch", *args, cwd=cwd)["id"]


def test_bad_run_references(workspace):
    first = launched(workspace, "exit_after", "--set", "seconds=0.1")
    second = launched(workspace, "exit_after", "--set", "seconds=0.1")
    for ref, code in [("", "bad_input"), ("..", "bad_input"), ("../runs", "bad_input"), ("a/b", "bad_input"),
                      (first[:8], "ambiguous_run"), ("abcd", "run_not_found"), (first[:-4] + "zzzz", "run_not_found")]:
        for command in ("status", "show", "wait", "kill", "doctor"):
            error = error_of(command, ref, cwd=workspace)
            assert error["code"] == code, (command, ref, error)
    ambiguous = error_of("status", first[:8], cwd=workspace)["message"]
    assert first in ambiguous and second in ambiguous  # the candidates, to pick from
    assert "an empty name" in error_of("doctor", "", cwd=workspace)["message"]  # not ". is a folder"
    assert agent("status", "status", first[-4:], cwd=workspace)["id"] == first  # the unique tail works
    assert agent("events", "events", "--run", "zzzz", cwd=workspace, code=2, lines=True)[0]["error"]["code"] == \
        "run_not_found"


def test_wait_on_an_ended_run_and_past_its_end(workspace):
    run_id = launched(workspace, "cones", "--set", "epochs=2", "--set", "cones=8")
    done = agent("wait", "wait", run_id, "--timeout", "120", cwd=workspace)
    assert done["wait"] == {"until": "end", "outcome": "met", "met": True} and done["verdict"] == "ended-ok"
    again = agent("wait", "wait", run_id, "--timeout", "0", cwd=workspace)  # already ended: met at once
    assert again["wait"]["outcome"] == "met" and again["progress"] == done["progress"]
    steps = done["progress"]["step"]
    past = agent("wait", "wait", run_id, "--until", f"step={steps + 1}", "--timeout", "5", cwd=workspace, code=1)
    assert past["wait"] == {"until": f"step={steps + 1}", "outcome": "ended", "met": False}
    reached = agent("wait", "wait", run_id, "--until", f"step={steps}", cwd=workspace)
    assert reached["wait"]["outcome"] == "met"
    for until in ("step=-1", "step=nan", "step=inf", "step=", "step=ten", "epoch=2", "step=1e300", "step=2.5"):
        assert "--until expects" in error_of("wait", run_id, "--until", until, cwd=workspace)["message"]


def test_bad_launches_are_refused_and_leave_nothing(workspace):
    cases = [(["nosuch"], "unknown recipe 'nosuch'"),
             (["cones", "--set", "epochs=abc"], "must be a whole number"),
             (["cones", "--set", "epochs=1.5"], "must be a whole number"),
             (["cones", "--set", "epochs=99999999999999999999999"], "between"),  # TOML holds 64-bit integers
             (["cones", "--set", "epochs"], "--set expects NAME=VALUE"),
             (["cones", "--set", "nosuch=1"], "has no parameter 'nosuch'"),
             (["cones", "--set", "dims=8,x"], "must be a whole number"),
             (["diverge", "--set", "lr=nan"], "must be a finite number"),
             (["fake_oom", "--set", "amp=maybe"], "must be true or false"),
             (["cones", "--env", "A B=1"], "--env expects NAME=VALUE")]
    for args, sentence in cases:
        error = error_of("launch", *args, cwd=workspace)
        assert error["code"] == "bad_input" and sentence in error["message"], (args, error)
    runs = workspace / "runs"
    assert not runs.exists() or not [p for p in runs.iterdir() if p.name != "sessions"]


def test_kill_twice(workspace):
    run_id = launched(workspace, "long_sleep")
    first = agent("kill", "kill", run_id, cwd=workspace)
    assert first["status"] == "killed" and first["problem"] is None
    second = agent("kill", "kill", run_id, cwd=workspace)  # nothing left to stop: the record as it is
    assert second["status"] == "killed" and second["ended"] == first["ended"]
    forced = agent("kill", "kill", run_id, "--force", cwd=workspace)
    assert forced["status"] == "killed"
    waited = agent("wait", "wait", run_id, "--until", "step=5", "--timeout", "5", cwd=workspace, code=1)
    assert waited["wait"]["outcome"] == "ended" and waited["verdict"] == "ended-failed"


def test_an_unreadable_record(workspace):
    run_id = launched(workspace, "exit_after", "--set", "seconds=0.1")
    agent("wait", "wait", run_id, "--timeout", "60", cwd=workspace)
    record = workspace / "runs" / run_id / "run.toml"
    record.write_text(record.read_text()[:40] + "\n[[[torn")
    for args in (["status", run_id], ["show", run_id], ["wait", run_id, "--timeout", "1"], ["kill", run_id],
                 ["doctor", run_id], ["metrics", run_id]):
        error = error_of(*args, cwd=workspace)
        assert "run.toml is not a valid run record" in error["message"], (args, error)
    streamed = agent("events", "events", "--run", run_id, cwd=workspace, code=2, lines=True)  # not silence
    assert len(streamed) == 1 and "not a valid run record" in streamed[0]["error"]["message"]
    listed = agent("ls", "ls", "--all", cwd=workspace)["runs"]
    assert [(r["id"], r["status"]) for r in listed] == [(run_id, "unreadable")]
    assert "not a valid run record" in listed[0]["problem"]


def test_torn_and_null_metrics_lines(workspace):
    run_id = launched(workspace, "exit_after", "--set", "seconds=0.1")
    agent("wait", "wait", run_id, "--timeout", "60", cwd=workspace)
    (workspace / "runs" / run_id / "metrics.jsonl").write_text(
        '{"step": 1, "loss": 0.5, "time": 1000}\n'
        'null\n'
        '{"step": null, "loss": null}\n'
        '[1, 2, 3]\n'
        '"text"\n'
        '\x00\x00\n'
        '{"step": 2, "loss": 0.25, "time": 1001}\n'
        '{"step": 3, "loss": NaN, "time": 1002}\n'
        '{"step": 4, "loss": 0.2, "ti')  # torn: being written
    status = agent("status", "status", run_id, cwd=workspace)
    assert status["metric"] == {"name": "loss", "last": "nan", "last_step": 3, "best": 0.25, "best_step": 2}
    assert status["progress"]["step"] == 3
    assert "nan_loss" in {d["kind"] for d in agent("doctor", "doctor", run_id, cwd=workspace)["diagnoses"]}
    agent("show", "show", run_id, cwd=workspace)
    agent("ls", "ls", cwd=workspace)
    agent("metrics", "metrics", run_id, cwd=workspace)


def test_events_follow_while_runs_start_and_end(workspace):
    stream = subprocess.Popen([sys.executable, "-m", "urbanrun.engine.cli", "events", "--follow", "--json"],
                              cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def next_event() -> dict:
        line = stream.stdout.readline()
        assert line, stream.stderr.read()
        event = json.loads(line)
        jsonschema.validate(event, load_schema("events"), cls=jsonschema.Draft202012Validator)
        return event

    try:
        long = launched(workspace, "long_sleep")
        # following, the stream's first look lists the active runs only: the quick runs start once it has
        # said something (the long run's launch), or a loaded machine could end them before that look
        events = [next_event()]
        quick = [launched(workspace, "exit_after", "--set", f"code={code}", "--set", "seconds=0.5")
                 for code in (0, 3)]
        agent("kill", "kill", long, cwd=workspace)
        for run_id in quick:
            agent("wait", "wait", run_id, "--timeout", "60", cwd=workspace)
        deadline = time.monotonic() + 60
        ended = {e["run"] for e in events if e["event"] == "ended"}
        while ended != {*quick, long}:  # each run's `ended` reaches the stream (a few seconds late at most)
            assert time.monotonic() < deadline, f"events ended for {ended} only"
            events.append(next_event())
            if events[-1]["event"] == "ended":
                ended.add(events[-1]["run"])
    finally:
        stream.terminate()
        stream.wait(10)
    for run_id in (*quick, long):
        mine = [e["event"] for e in events if e["run"] == run_id]
        assert mine.count("launched") == 1 and mine.count("ended") == 1 and mine[0] == "launched", (run_id, mine)
    final = {e["run"]: e for e in events if e["event"] == "ended"}
    assert [final[r]["status"] for r in (*quick, long)] == ["exited", "failed", "killed"]
    assert [final[r]["verdict"] for r in (*quick, long)] == ["ended-ok", "ended-failed", "ended-failed"]


def test_empty_and_ambiguous_references_and_odd_runs_folders(workspace):
    """`events --run ""` streamed every run (an empty id taken as none given); `metrics` took ""
    for the current folder and an ambiguous prefix for "neither a file nor a run id" (without the
    candidates); a FIFO as the runs folder was called "a file"."""
    first = launched(workspace, "exit_after", "--set", "seconds=0.1")
    launched(workspace, "exit_after", "--set", "seconds=0.1")
    assert agent("events", "events", "--run", "", cwd=workspace, code=2, lines=True)[0]["error"]["code"] == "bad_input"
    assert "not an empty name" in error_of("metrics", "", cwd=workspace)["message"]
    runs = sorted(p.name for p in (workspace / "runs").iterdir())
    for empty in ("", "  "):  # imported the current folder as a run
        assert "not an empty name" in error_of("import", empty, cwd=workspace)["message"]
    assert sorted(p.name for p in (workspace / "runs").iterdir()) == runs
    ambiguous = error_of("metrics", first[:8], cwd=workspace)
    assert ambiguous["code"] == "ambiguous_run" and first in ambiguous["message"]
    assert error_of("metrics", "zzzz", cwd=workspace)["code"] == "run_not_found"
    os.mkfifo(workspace / "fifo")
    for args in (["ls"], ["status", "last"], ["launch", "exit_after"]):
        message = error_of(*args, "--runs-dir", str(workspace / "fifo"), cwd=workspace)["message"]
        assert message == f"the runs folder {workspace / 'fifo'} is a FIFO (named pipe); give a folder " \
                          f"(--runs-dir or URBANRUN_RUNS_DIR).", (args, message)


def test_an_error_for_a_reader_that_went_away_keeps_its_exit_code(workspace):
    """`urbanrun status zzzz --json | true`: printing the error object into the closed pipe raised
    BrokenPipeError inside the error handler: two tracebacks and exit 1 instead of 2."""
    for args in (["status", "zzzz", "--json"], ["status", "zzzz"], ["ls", "--json"]):
        proc = subprocess.Popen([sys.executable, "-m", "urbanrun.engine.cli", *args], cwd=workspace,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.stdout.close()  # the reader is gone before anything is written
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == (0 if args[0] == "ls" else 2) and "Traceback" not in err, (args, proc.returncode, err)


def test_a_run_folder_without_its_record_is_listed_and_said_by_every_command(workspace):
    """A run folder whose run.toml is gone (removed by hand, or a launch that died before writing
    it) was invisible: `ls` left it out and `status <its id>` said there was no such run. It lists
    as unreadable with one sentence naming the folder, every command says that sentence, nothing is
    written into it, and the other runs are untouched; a folder of the user's own is no run."""
    kept = launched(workspace, "exit_after", "--set", "seconds=0.1")
    lost = launched(workspace, "exit_after", "--set", "seconds=0.1")
    for run_id in (kept, lost):
        agent("wait", "wait", run_id, "--timeout", "60", cwd=workspace)
    runs = workspace / "runs"
    (runs / lost / "run.toml").unlink()
    died = runs / "20200101-000000-cones-0bad"  # a launch that died before its record: an empty folder
    died.mkdir()
    (runs / "my-notes").mkdir()  # not a run: neither named as one nor holding a run's files
    before = {p: sorted(x.name for x in (runs / p).iterdir()) for p in (lost, died.name)}

    listed = agent("ls", "ls", "--all", cwd=workspace)["runs"]
    # newest first by creation; a run without its record counts as its id's second's end, so the later
    # launch comes first even when both share a second
    assert [(r["id"], r["status"]) for r in listed] == [(lost, "unreadable"), (kept, "exited"),
                                                         (died.name, "unreadable")]
    problem = next(r for r in listed if r["id"] == lost)["problem"]
    assert f"{runs / lost} are untouched" in problem and "has no record" in problem
    human = cli("ls", cwd=workspace)
    assert human.returncode == 0 and f"run '{lost}' has no record" in human.stderr and lost in human.stdout
    for args in (["status", lost[-4:]], ["show", lost], ["doctor", lost], ["kill", lost], ["wait", lost],
                 ["logs", lost], ["metrics", lost], ["status", "last"], ["status", "0bad"]):
        error = error_of(*args, cwd=workspace)
        assert error["code"] == "unreadable_record" and "has no record" in error["message"], (args, error)
    assert lost in error_of("status", "last", cwd=workspace)["message"]  # the newest launch, not an older run
    streamed = agent("events", "events", "--run", lost, cwd=workspace, code=2, lines=True)
    assert streamed[0]["error"]["code"] == "unreadable_record"
    assert {e["run"] for e in agent("events", "events", cwd=workspace, lines=True)} == {kept}  # the rest stream
    assert f"run '{lost}' has no record" in cli("events", "--json", cwd=workspace).stderr  # said, as by ls
    assert agent("status", "status", kept, cwd=workspace)["verdict"] == "ended-ok"
    assert {p: sorted(x.name for x in (runs / p).iterdir()) for p in (lost, died.name)} == before


def test_a_run_folder_moved_away_while_it_is_waited_on(workspace):
    """`wait` on a live run whose folder is moved away meanwhile said "has no record …; its other
    files in <that folder> are untouched": a folder that is not there. It says the run is gone
    with its folder, and how to get it back; put back, the run is seen and stopped again."""
    run_id = launched(workspace, "long_sleep")
    folder, away = workspace / "runs" / run_id, workspace / "elsewhere"
    waiting = subprocess.Popen([sys.executable, "-m", "urbanrun.engine.cli", "wait", run_id, "--timeout", "120",
                                "--json"], cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import psutil

        from conftest import wait_for

        log = str(folder / "output.log")  # the wait follows the run's log once it has found the run: then move it
        wait_for(lambda: any(f.path == log for f in psutil.Process(waiting.pid).open_files()), what="the wait's look")
        folder.rename(away)
        out, err = waiting.communicate(timeout=120)
        error = json.loads(out)["error"]
        assert waiting.returncode == 2 and error["code"] == "run_not_found" and "Traceback" not in err, (out, err)
        assert error["message"] == (f"run '{run_id}' is gone: its folder {folder} was moved or removed, and its record "
                                    f"with it, so urbanrun no longer sees the run; put the folder back to watch or "
                                    f"stop it."), error
    finally:
        waiting.kill()
        if away.exists():
            away.rename(folder)
    assert agent("kill", "kill", run_id, cwd=workspace)["status"] == "killed"


def test_events_follow_goes_on_when_one_watched_run_folder_goes_away(workspace):
    """`events --follow` of every run ended with exit 2 and an error line once one watched run's
    folder was moved away: the other runs' events (here the kill of the second) never came. The
    gone run is said on stderr, as `ls` says it, and the stream goes on."""
    gone, other = launched(workspace, "long_sleep"), launched(workspace, "long_sleep")
    stream = subprocess.Popen([sys.executable, "-m", "urbanrun.engine.cli", "events", "--follow", "--json"],
                              cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    folder, away = workspace / "runs" / gone, workspace / "elsewhere"
    try:
        seen = []
        while {e["run"] for e in seen if e["event"] == "progress"} != {gone, other}:  # both watched
            line = stream.stdout.readline()
            assert line, stream.stderr.read()
            seen.append(json.loads(line))
        folder.rename(away)
        agent("kill", "kill", other, cwd=workspace)
        while True:
            line = stream.stdout.readline()
            assert line, stream.stderr.read()  # the stream ended before the other run's end came
            event = json.loads(line)
            jsonschema.validate(event, load_schema("events"), cls=jsonschema.Draft202012Validator)
            if event["event"] == "ended" and event["run"] == other:
                break
        assert event["status"] == "killed" and stream.poll() is None  # and it goes on
    finally:
        stream.terminate()
        _, err = stream.communicate(timeout=30)
        if away.exists():
            away.rename(folder)
        agent("kill", "kill", gone, cwd=workspace)
    assert f"run '{gone}' is gone: its folder {folder} was moved or removed" in err and "Traceback" not in err, err
