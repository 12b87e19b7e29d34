"""The agent contract attacked once more (round 4): only `--json` and the MCP tools, every output
validated against its shipped schema. Each test names the defect it caught."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jsonschema

from conftest import cli
from test_agent_attack import agent, error_of, launched
from urbanrun.engine.cli.contract import load_schema


def valid(doc: dict, schema: str) -> dict:
    jsonschema.validate(doc, load_schema(schema), cls=jsonschema.Draft202012Validator)
    return doc


def imported(workspace: Path, name: str, lines: str = '{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n') -> str:
    folder = workspace / name
    folder.mkdir()
    (folder / "metrics.jsonl").write_text(lines)
    return agent("import", "import", str(folder), cwd=workspace)["runs"][0]["id"]


def test_an_imported_run_ended_cleanly_for_every_command(workspace):
    """`events --run <imported run>` exited 1 (only `exited` counted as a clean end) where `wait`
    exited 0 and the verdict said ended-ok; `logs -f` and `metrics RUN -f` exited 1 too. An
    imported run ended cleanly everywhere; a failed run still exits 1 everywhere."""
    run_id = imported(workspace, "ext")
    failed = launched(workspace, "exit_after", "--set", "code=3", "--set", "seconds=0.1")
    agent("wait", "wait", failed, "--timeout", "60", cwd=workspace)
    for run, code, verdict in ((run_id, 0, "ended-ok"), (failed, 1, "ended-failed")):
        assert agent("wait", "wait", run, "--timeout", "10", cwd=workspace)["verdict"] == verdict
        streamed = agent("events", "events", "--run", run, cwd=workspace, code=code, lines=True)
        assert streamed[-1]["event"] == "ended" and streamed[-1]["verdict"] == verdict
        followed = agent("events", "events", "--run", run, "--follow", cwd=workspace, code=code, lines=True)
        assert followed[-1]["event"] == "ended"
        agent("logs", "logs", run, "-f", cwd=workspace, code=code, lines=True)
        agent("metrics", "metrics", run, "-f", cwd=workspace, code=code, lines=True)
        assert cli("logs", run, "-f", cwd=workspace).returncode == code


def test_ls_lists_runs_made_in_one_second_by_their_creation(workspace):
    """`ls` ordered runs by id, so three runs made in one second went by their ids' random tails
    (ffff, 8888, 0000) while `status last` took the newest by creation time: an agent reading
    `ls --json`'s first run as the newest got another than `last`. Both now order by creation."""
    from urbanrun.engine.runs.store import RunRecord, RunStore

    store, second = RunStore(workspace / "runs"), time.mktime(time.strptime("20261130-120000", "%Y%m%d-%H%M%S"))
    for tail, fraction in (("ffff", 0.1), ("0000", 0.5), ("8888", 0.9)):
        store.create(RunRecord(id=f"20261130-120000-exit_after-{tail}", recipe="exit_after", argv=["true"],
                               cwd=str(workspace), status="exited", exit_code=0, created=second + fraction,
                               started=second + fraction, ended=second + fraction + 0.01))
    listed = [r["id"][-4:] for r in agent("ls", "ls", "--all", cwd=workspace)["runs"]]
    assert listed == ["8888", "0000", "ffff"]
    assert agent("status", "status", "last", cwd=workspace)["id"].endswith(listed[0])
    (workspace / "runs" / "20261130-120000-exit_after-0000" / "run.toml").unlink()  # placed at its second's end
    listed = [(r["id"][-4:], r["status"]) for r in agent("ls", "ls", "--all", cwd=workspace)["runs"]]
    assert listed == [("0000", "unreadable"), ("8888", "exited"), ("ffff", "exited")]
    assert error_of("status", "last", cwd=workspace)["code"] == "unreadable_record"


class Stream:
    """A --follow --json command read line by line, each line validated against its schema."""

    def __init__(self, workspace: Path, schema: str, *args: str):
        self.schema = schema
        self.proc = subprocess.Popen([sys.executable, "-m", "urbanrun.engine.cli", *args, "--json"], cwd=workspace,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[dict] = []

    def until(self, found, what: str) -> dict:
        """Lines until one for which found(line) holds (the stream ending first fails, with its stderr)."""
        while True:
            line = self.proc.stdout.readline()
            assert line, f"the stream ended before {what}: {self.proc.stderr.read()}"
            self.lines.append(valid(json.loads(line), self.schema))
            if found(self.lines[-1]):
                return self.lines[-1]

    def rest(self) -> tuple[int, str]:
        out, err = self.proc.communicate(timeout=60)
        self.lines += [valid(json.loads(line), self.schema) for line in out.splitlines() if line.strip()]
        assert "Traceback" not in err, err
        return self.proc.returncode, err

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)


def notice_of(line: dict, code: str) -> bool:
    return isinstance(line.get("notice"), dict) and line["notice"]["code"] == code


def replace_file(path: Path, text: str) -> None:
    """A new file in `path`'s place (a new inode), as a writer that rotates or rewrites whole does."""
    new = path.with_name(path.name + ".new")
    new.write_text(text)
    os.replace(new, path)


def test_follow_streams_say_a_file_deleted_replaced_or_unreadable(workspace):
    """`metrics RUN -f --json`, `events --follow --json` and `logs -f --json` said nothing when a
    followed file was deleted or replaced (an agent kept waiting on a file that was gone), and
    `metrics RUN -f` crashed (internal_error) on a metrics.jsonl that became a symlink loop. Each
    now prints a notice line with the one `notice` object every stream's schema holds."""
    run_id = launched(workspace, "long_sleep")
    run_dir = workspace / "runs" / run_id
    jsonl, log = run_dir / "metrics.jsonl", run_dir / "output.log"
    jsonl.write_text('{"step": 1, "loss": 0.5}\n')
    metrics = Stream(workspace, "metrics", "metrics", run_id, "-f")
    events = Stream(workspace, "events", "events", "--run", run_id, "--follow")
    logs = Stream(workspace, "logs", "logs", run_id, "-f")
    try:
        import psutil

        from conftest import wait_for

        # the metrics stream prints new points only: add one once it has the file open
        wait_for(lambda: any(f.path == str(jsonl) for f in psutil.Process(metrics.proc.pid).open_files()),
                 what="the metrics stream's look")
        with jsonl.open("a") as f:
            f.write('{"step": 2, "loss": 0.45}\n')
        metrics.until(lambda line: line.get("point", {}).get("step") == 2, "the new point")
        events.until(lambda e: e["event"] == "progress" and e["progress"]["step"] == 2, "the first progress")
        logs.until(lambda d: "lines" in d, "the first lines")
        replace_file(jsonl, '{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n')
        said = metrics.until(lambda line: notice_of(line, "file_replaced"), "the replacement's notice")
        assert said["notice"]["path"] == str(jsonl) and said["notice"]["level"] == "info" and said["run"] == run_id
        assert "replaced" in said["notice"]["message"] and str(jsonl) in said["notice"]["message"]
        assert metrics.until(lambda line: "point" in line, "the new file's points")["point"]["step"] == 1
        told = events.until(lambda e: e["event"] == "notice", "the events' notice")
        assert told["run"] == run_id and told["notice"]["code"] == "file_replaced" and told["notice"]["path"] == str(jsonl)
        jsonl.unlink()
        assert metrics.until(lambda line: "notice" in line, "the deletion's notice")["notice"]["code"] == "file_gone"
        assert events.until(lambda e: e["event"] == "notice", "the events' notice")["notice"]["code"] == "file_gone"
        jsonl.symlink_to(jsonl.name)  # a symlink loop in its place
        loop = metrics.until(lambda line: "notice" in line, "the loop's notice")["notice"]
        assert loop["code"] == "file_unreadable" and loop["level"] == "error" and "symbolic links" in loop["message"]
        assert events.until(lambda e: e["event"] == "notice", "the events' notice")["notice"]["code"] == "file_unreadable"
        replace_file(log, "a new log\n")
        said = logs.until(lambda d: "notice" in d, "the log's notice")
        assert said == {"schema_version": 1, "run": run_id, "notice": said["notice"]}
        assert said["notice"]["code"] == "file_replaced" and said["notice"]["path"] == str(log)
        assert logs.until(lambda d: "lines" in d, "the new log's lines")["lines"][0]["text"] == "a new log"
        agent("kill", "kill", run_id, cwd=workspace)
        for stream in (metrics, events, logs):  # each ends with the run, as before, nothing said twice
            code, _ = stream.rest()
            assert code == 1, (stream.schema, code)
            said = [(line["notice"]["code"], line["notice"]["path"]) for line in stream.lines if "notice" in line]
            assert len(said) == len(set(said)), (stream.schema, said)
    finally:
        for stream in (metrics, events, logs):
            stream.close()


def test_an_unreadable_metrics_file_of_a_run_is_said_not_skipped(workspace):
    """An imported run whose metrics file became a symlink loop: `metrics RUN --json` listed no
    source at all ('no metrics yet') while `status` called the file gone. Its row now carries the
    error, status says it is there but cannot be read, and `events` carries a notice."""
    run_id = imported(workspace, "ext")
    jsonl = workspace / "ext" / "metrics.jsonl"
    jsonl.unlink()
    jsonl.symlink_to(jsonl.name)
    rows = agent("metrics", "metrics", run_id, cwd=workspace)["sources"]
    assert [(r["path"], r["metrics"]) for r in rows] == [(str(jsonl), {})]
    assert rows[0]["error"] == f"{jsonl} cannot be read (Too many levels of symbolic links)."
    evidence = agent("status", "status", run_id, cwd=workspace)["diagnoses"][-1]["evidence"]
    assert evidence == [f"{jsonl} is there but cannot be read (Too many levels of symbolic links)"]
    streamed = agent("events", "events", "--run", run_id, cwd=workspace, lines=True)
    assert [e["notice"]["code"] for e in streamed if e["event"] == "notice"] == ["file_unreadable"]
    assert "cannot be read" in cli("metrics", run_id, cwd=workspace).stdout


def test_saving_defaults_while_config_toml_is_edited_by_hand(workspace, monkeypatch):
    """Saving a recipe's defaults (the launch form's ctrl+s) read config.toml, edited it and wrote
    it back: a hand edit saved in between was lost without a word; a file edited by hand since
    urbanrun read it into one that no longer parses, or without the recipe, raised tomlkit's own
    exception (the TUI's worker catches UserError only: a crash). The hand edit is kept and the
    defaults made again on it; the others are one sentence naming the file, and nothing is written."""
    import tomlkit

    from urbanrun.engine.core.config import load_config, save_recipe_defaults
    from urbanrun.engine.core.errors import UserError

    path = workspace / "config.toml"
    config = load_config(str(path))
    real_dumps, edits = tomlkit.dumps, []

    def dumps_while_edited(doc):  # a person saves the file by hand while urbanrun makes its edit
        if not edits:
            edits.append(path.read_text() + "\n# tuned by hand\n[recipes.swallow.params.seed]\ntype = \"int\"\n")
            path.write_text(edits[0])
        return real_dumps(doc)

    monkeypatch.setattr(tomlkit, "dumps", dumps_while_edited)
    save_recipe_defaults(config, "cones", {"epochs": 3})
    saved = load_config(str(path))
    assert saved.recipe("cones").param("epochs").default == 3 and saved.recipe("swallow").param("seed")
    assert "# tuned by hand" in path.read_text()
    monkeypatch.setattr(tomlkit, "dumps", real_dumps)

    good = path.read_text()
    for broken, sentence in ((good + "\n[recipes.half\n", "no longer parses (line"),
                             (good.replace("[recipes.cones", "[recipes.renamed"), "has no [recipes.cones] table"),
                             (good.replace("[recipes.cones.params.epochs]\n", "[recipes.cones.params]\nepochs = 2\n"
                                           "[recipes.cones.params.unused]\n"), "epochs is not a table"),
                             (good.encode() + b"\n# \xff\n", "is not UTF-8")):
        (path.write_bytes if isinstance(broken, bytes) else path.write_text)(broken)
        try:
            save_recipe_defaults(config, "cones", {"epochs": 4})
        except UserError as exc:
            assert str(exc).startswith(f"{path}: the defaults were not saved") and sentence in str(exc), exc
        else:
            raise AssertionError(f"saved into a file edited to: {sentence}")
        assert (path.read_bytes() if isinstance(broken, bytes) else path.read_text()) == broken  # untouched


def test_one_huge_scratchpad_entry_does_not_lock_out_the_day(workspace):
    """`scratchpad log` (and the MCP tool scratchpad_log) wrote an entry of any size: one that took
    today's notes over the 64 MiB urbanrun reads made every later entry fail (`cannot write the
    scratchpad: it holds over 67,108,864 bytes`), the launches' and kills' auto-log entries
    included, and `scratchpad show` too. An entry over 1 MiB is refused (exit 2), and an entry that
    would take the file over the limit is not written (the file stays readable)."""
    from urbanrun.engine.notes.scratchpad import NOTES_LIMIT

    today = agent("scratchpad", "scratchpad", "show", cwd=workspace)["today"]
    error = error_of("scratchpad", "log", "huge", *["z" * 110_000] * 10, cwd=workspace)
    assert "holds 1,100,014 bytes, over the 1,048,576 an entry may hold" in error["message"], error
    assert not Path(today).exists()
    Path(today).parent.mkdir(parents=True)
    Path(today).write_text("# notes\n" + "n" * (NOTES_LIMIT - 200) + "\n")
    before = Path(today).stat().st_size
    error = error_of("scratchpad", "log", "one line more than fits " + "w" * 300, cwd=workspace, code=1)
    assert "would take it over 67,108,864 bytes" in error["message"] and Path(today).stat().st_size == before
    agent("scratchpad", "scratchpad", "log", "a short note still fits", cwd=workspace)
    assert Path(today).read_text().endswith("a short note still fits\n")
    assert agent("scratchpad", "scratchpad", "show", cwd=workspace)["today"] == today  # still read


def test_a_folder_imported_twice_and_changed_after_its_import(workspace):
    """`import` of a folder already imported made a second run with the same files (every
    comparison showed it twice); a run added to the folder later is imported alone; once the
    folder is moved away, `metrics RUN` said 'no metrics yet' (no row) while status said the file
    was gone: its row now says so too."""
    logs = workspace / "ll" / "lightning_logs"
    (logs / "version_0").mkdir(parents=True)
    (logs / "version_0" / "metrics.csv").write_text("epoch,step,train_loss\n0,1,0.9\n0,2,0.8\n")
    (first,) = agent("import", "import", str(workspace / "ll"), cwd=workspace)["runs"]
    for again in (workspace / "ll", logs / "version_0" / "metrics.csv"):
        error = error_of("import", str(again), cwd=workspace)
        assert error["code"] == "already_imported" and first["id"] in error["message"], error
    (logs / "version_1").mkdir()
    (logs / "version_1" / "metrics.csv").write_text("epoch,step,train_loss\n0,1,0.7\n")
    (second,) = agent("import", "import", str(workspace / "ll"), cwd=workspace)["runs"]
    assert second["metrics_files"] == [str(logs / "version_1" / "metrics.csv")]
    assert len(agent("ls", "ls", "--all", cwd=workspace)["runs"]) == 2
    (workspace / "ll").rename(workspace / "moved")
    rows = agent("metrics", "metrics", first["id"], cwd=workspace)["sources"]
    gone = str(logs / "version_0" / "metrics.csv")
    assert rows == [{"path": gone, "format": "csv", "metrics": {},
                     "error": f"{gone} is gone (moved or deleted since the run was recorded)."}]
    assert agent("status", "status", first["id"], cwd=workspace)["diagnoses"][-1]["evidence"] == [f"{gone} is gone"]


def test_a_recording_from_a_newer_or_damaged_format_is_replayed_with_a_warning(workspace):
    """A recording whose lines hold fields of another kind (a newer urbanrun's format, or damage)
    crashed `--replay` with a traceback (points as an object: KeyError, ts null: TypeError,
    host.runs a number: AttributeError, a JSON list: TypeError); lines of unknown types were
    dropped without a word. Each such line is skipped and said (one warning naming the first);
    a recording without one readable event is one sentence (exit 2)."""
    from conftest import ROOT

    lines = (ROOT / "tests" / "fixtures" / "sessions" / "cones_cpu.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    run_id, ts = first["run"]["id"], first["ts"] + 1
    odd = [{"type": "MetricPoints", "ts": ts, "run_id": run_id, "source": "m", "points": {"a": 1}, "format": "jsonl"},
           {"type": "MetricPoints", "ts": ts, "run_id": run_id, "source": "m", "points": ["x", 5]},
           {"type": "LogLines", "ts": None, "run_id": run_id, "lines": ["x"]},
           {"type": "RunChanged", "ts": ts, "run": [1, 2]},
           {"type": "RunChanged", "ts": ts, "run": {"recipe": "no id"}},
           {"type": "HostSample", "ts": ts, "host": {"runs": 5}},
           {"type": "GpuSample", "ts": ts, "gpus": [{"index": 0}], "processes": [5]},
           {"type": "Diagnosed", "ts": ts, "run_id": run_id, "diagnoses": ["oops"]},
           {"type": "GpuSampleV9", "ts": ts}, [1, 2, 3]]
    recording = workspace / "newer.jsonl"
    recording.write_text("\n".join(lines[:5] + [json.dumps(o) for o in odd] + lines[5:]) + "\n")
    proc = cli("--replay", str(recording), "--headless", "--screenshot", str(workspace / "shot.svg"), cwd=workspace)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{recording}: 10 line(s) are not events this urbanrun reads" in proc.stdout, proc.stdout
    assert "line 6: MetricPoints.points is an object, not tuple[dict, ...] | Points" in proc.stdout
    assert f"{run_id}  cones  exited (exit 0)" in proc.stdout  # the rest replayed
    assert (workspace / "shot.svg").stat().st_size > 0
    recording.write_text('{"type": "GpuSampleV9", "ts": 1}\n')
    proc = cli("--replay", str(recording), "--headless", cwd=workspace)
    assert proc.returncode == 2 and proc.stderr == (
        f"urbanrun: {recording} holds no events; 1 line(s) are not events this urbanrun reads (a newer urbanrun's "
        f"recording, or a damaged one; line 1: unknown event type 'GpuSampleV9'); give a session file from "
        f"runs/sessions/.\n"), proc.stderr


def test_the_tui_opens_over_a_scratchpad_it_cannot_read(workspace):
    """Today's notes over the 64 MiB urbanrun reads (written there by another tool), or a FIFO in
    their place: the TUI's scratchpad pane raised OSError in its worker and the whole app exited
    with a traceback at start. It opens; the pane stays read-only and says why."""
    from conftest import ROOT
    from urbanrun.engine.notes.scratchpad import NOTES_LIMIT

    today = Path(agent("scratchpad", "scratchpad", "show", cwd=workspace)["today"])
    today.parent.mkdir(parents=True)
    recording = ROOT / "tests" / "fixtures" / "sessions" / "cones_cpu.jsonl"
    for make in (lambda: os.truncate(today, NOTES_LIMIT + 1) if today.touch() is None else None,
                 lambda: os.mkfifo(today)):
        make()
        proc = cli("--replay", str(recording), "--headless", "--screenshot", str(workspace / "shot.svg"), cwd=workspace)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
        today.unlink()


def test_a_queued_run_whose_working_folder_goes_while_it_waits(workspace, monkeypatch):
    """A queued run started in its working folder as it was when queued: a folder removed while
    the run waited was still the process's (deleted) cwd, so the run started there, its files
    written into nothing (here: a FileNotFoundError traceback; a folder emptied by hand, then
    removed, takes its outputs with it), and one made again at that path was not used. It now
    fails at admission, never started, saying why; a folder made again is where it runs."""
    from test_queue import OK, QUEUE_RECIPES, gpu

    recording = workspace / "gpu.jsonl"

    def machine(free_gb: float) -> None:
        recording.write_text(json.dumps({"status": OK}) + "\n" + json.dumps({"t": 0.0, "gpus": [gpu(free_gb)],
                                                                               "processes": []}) + "\n")

    project = workspace / "project"
    (workspace / "config.toml").write_text((workspace / "config.toml").read_text() + QUEUE_RECIPES + f"""
[recipes.in_project]
command = ["{{python}}", "-c", "import os; open('out.txt', 'w').write(os.getcwd()); print('wrote', flush=True)"]
cwd = "{project}"
memory = {{ fixed_gb = 15.0 }}
""")
    machine(5.0)  # too little: both wait
    monkeypatch.setenv("URBANRUN_GPU_RECORDING", str(recording))
    monkeypatch.setenv("URBANRUN_QUEUE_POLL", "0.2")
    monkeypatch.setenv("URBANRUN_QUEUE_SETTLE", "0.5")
    project.mkdir()
    gone = launched(workspace, "in_project", "--queue")
    project.rmdir()
    machine(23.0)
    ended = agent("wait", "wait", gone, "--timeout", "60", cwd=workspace)
    assert ended["status"] == "failed" and ended["verdict"] == "ended-failed" and ended["started"] is None
    shown = agent("show", "show", gone, cwd=workspace)
    assert f"its working directory {project} cannot be entered" in shown["problem"]
    assert "never started" in shown["problem"] and not project.exists()
    machine(5.0)
    project.mkdir()
    again = launched(workspace, "in_project", "--queue")
    project.rmdir()
    project.mkdir()  # made again before the run is admitted: it runs there
    machine(23.0)
    assert agent("wait", "wait", again, "--timeout", "60", cwd=workspace)["status"] == "exited"
    assert (project / "out.txt").read_text() == str(project)


def test_scratchpad_entries_carry_no_terminal_control_sequences(workspace):
    """`scratchpad log` (and the MCP tool, and the auto-log's lines from logs) wrote escape
    sequences as they came: an entry could retitle, clear or recolour the terminal of whoever
    `cat`s the shared notes, and a lone CR hid text behind what followed it. Sequences are dropped,
    other control characters shown as U+FFFD; unicode, tabs and line ends are kept."""
    today = Path(agent("scratchpad", "scratchpad", "show", cwd=workspace)["today"])
    agent("scratchpad", "scratchpad", "log", "\x1b]0;owned\x07title \x1b[2J\x1b[31mred\x1b[0m ünï 🚀\tx\r\nbody\rhidden\x7f",
          cwd=workspace)
    text = today.read_text()
    assert "\x1b" not in text and "\r" not in text and "\x7f" not in text and "\x07" not in text
    assert "— title red ünï 🚀\tx\nbody\ufffdhidden\ufffd\n" in text, repr(text)


def test_import_passes_over_urbanruns_own_runs_and_a_symlink_loop(workspace):
    """`import .` in a project imported urbanrun's own runs (runs/<id>/metrics.jsonl) as external
    runs, each then listed twice; and once any imported run's file was a symlink loop, every later
    import crashed (Path.resolve's RuntimeError, internal_error)."""
    run_id = launched(workspace, "exit_after", "--set", "seconds=0.1")
    agent("wait", "wait", run_id, "--timeout", "60", cwd=workspace)
    (workspace / "runs" / run_id / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    error = error_of("import", "runs", cwd=workspace)
    assert error["code"] == "already_imported" and "holds only urbanrun's own runs" in error["message"]
    first = imported(workspace, "ext")
    (workspace / "ext" / "metrics.jsonl").unlink()
    (workspace / "ext" / "metrics.jsonl").symlink_to("metrics.jsonl")
    (workspace / "other").mkdir()
    (workspace / "other" / "m.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    (workspace / "other" / "loop").symlink_to("loop")  # and one inside the folder imported
    runs = agent("import", "import", str(workspace), cwd=workspace)["runs"]
    assert [r["metrics_files"] for r in runs] == [[str(workspace / "other" / "m.jsonl")]]
    assert {r["id"] for r in agent("ls", "ls", "--all", cwd=workspace)["runs"]} == {run_id, first, runs[0]["id"]}
