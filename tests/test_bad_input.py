"""Bad input gets one clear sentence, exit 2, and writes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import cli


def _runs(workspace):
    runs = workspace / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.exists() else []


@pytest.mark.parametrize("args, words", [
    (["launch", "nope"], "unknown recipe 'nope'"),
    (["launch", "cones", "--set", "batch_size=abc"], "parameter 'batch_size': must be a whole number, not 'abc'"),
    (["launch", "cones", "--set", "epochs=0"], "parameter 'epochs': must be at least 1, not 0"),
    (["launch", "cones", "--set", "dims=8,x"], "parameter 'dims': must be a whole number"),
    (["launch", "cones", "--set", "nosuch=1"], "has no parameter 'nosuch'"),
    (["launch", "cones", "--set", "epochs"], "--set expects NAME=VALUE"),
    (["show", "20990101-nosuchrun"], "no run '20990101-nosuchrun'"),
    (["show", "../etc"], "is not a run id"),
    (["logs", "a/b"], "is not a run id"),
    (["kill", "..", "--force"], "is not a run id"),
    (["launch"], "the following arguments are required: recipe"),
])
def test_bad_input_is_one_sentence_and_exit_2(workspace, args, words):
    proc = cli(*args, cwd=workspace)
    assert proc.returncode == 2, proc
    assert words in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert _runs(workspace) == []


def test_broken_config_names_file_and_line(workspace):
    (workspace / "config.toml").write_text('[recipes.x]\ncommand = = ["a"]\n')
    proc = cli("ls", cwd=workspace)
    assert proc.returncode == 2 and "config.toml is not valid TOML" in proc.stderr and "line 2" in proc.stderr


def test_invalid_recipe_value_names_line_and_key(workspace):
    (workspace / "config.toml").write_text(
        '[recipes.x]\ncommand = ["{python}"]\n\n[recipes.x.params.epochs]\ntype = "int"\nmin = 1\ndefault = 0\n')
    proc = cli("launch", "x", cwd=workspace)
    assert proc.returncode == 2
    assert "config.toml line 4: recipes.x.params.epochs: 'default' must be at least 1, not 0." in proc.stderr


def test_missing_working_directory_is_a_clear_error_at_launch(workspace):
    proc = cli("launch", "full-area-unet", "--config", str(__import__("urbanrun.engine.core.config").engine.core.config.DEFAULT_CONFIG),
               "--runs-dir", str(workspace / "runs"), cwd=workspace)
    assert proc.returncode == 2
    assert "working directory" in proc.stderr and "does not exist" in proc.stderr and "[paths]" in proc.stderr
    assert _runs(workspace) == []


def test_unknown_placeholder_is_caught_at_load(workspace):
    (workspace / "config.toml").write_text('[recipes.x]\ncommand = ["{pyhton}", "t.py"]\n')
    proc = cli("ls", cwd=workspace)
    assert proc.returncode == 2 and "config.toml line 2: recipes.x.command: unknown placeholder {pyhton}" in proc.stderr


def test_corrupt_run_record_is_reported_and_others_still_listed(workspace):
    bad = workspace / "runs" / "20260101-000000-x-0000"
    bad.mkdir(parents=True)
    (bad / "run.toml").write_text("id = [broken")
    proc = cli("ls", "--all", cwd=workspace)
    assert proc.returncode == 0
    assert "is not a valid run record" in proc.stderr
    assert (bad / "run.toml").read_text() == "id = [broken"  # nothing lost


# -- the inputs of issue #12: each one sentence (exit 2), or it works ------------------------------
LONG = "a" * 5000


@pytest.mark.parametrize("args, words", [
    (["metrics", LONG], "File name too long"),
    (["doctor", LONG], "File name too long"),
    (["import", LONG], "File name too long"),
    (["show", LONG], "is not a run id"),
    (["logs", LONG], "is not a run id"),
    (["gpus", "-l", "nan"], "argument -l/--loop: expects a number > 0"),
    (["gpus", "-l", "inf"], "not 'inf'"),
    (["gpus", "-l", "0"], "not '0'"),
    (["kill", "x", "--grace", "nan"], "argument --grace: expects a number >= 0"),
    (["advise", "cones", "--gpu-memory", "nan"], "argument --gpu-memory: expects a number > 0"),
    (["logs", "x", "-n", "-1"], "argument -n/--lines: expects a whole number >= 0"),
    (["--replay", "x.jsonl", "--speed", "inf"], "argument --speed"),
    (["launch", "cones", "--backend", "torchrun", "--opt", "bogus=1"],
     "--opt: 'bogus' is not a torchrun option; known: nproc_per_node"),
    # an empty positional value was left out of the command line: the script got its next value in its place
    (["launch", "exit_after", "--set", "code="], "parameter 'code': is positional, so it needs a value (its default "
                                                 "is 0: leave the parameter out to use it)."),
])
def test_issue_12_inputs_are_one_sentence(workspace, args, words):
    proc = cli(*args, cwd=workspace)
    assert proc.returncode == 2, proc
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and len(proc.stderr) < 600  # a 5,000-character name is cut
    assert _runs(workspace) == []


@pytest.mark.parametrize("extra, words", [
    ('\n[recipes.p5]\ncommand = ["true"]\nparams = 5\n', "recipes.p5.params: must be a table of parameters"),
    ('\n[recipes.c]\ncommand = ["true"]\ncwd = 3\n', "recipes.c.cwd: must be a path string"),
    ('\n[recipes.m]\ncommand = ["true"]\nmemory = { per_sample_gb = nan }\n', "recipes.m.memory: must be a table"),
    ('\n[scratchpad]\npattern = "{bogus}"\n', "scratchpad.pattern: unknown placeholder {bogus}"),
    ('\n[scratchpad]\npattern = "{0}.md"\n', "scratchpad.pattern:"),
    ('\n[scratchpad]\npattern = "../../{date}.md"\n', "scratchpad.pattern: must name a file under the scratchpad root"),
    ('\n[scratchpad]\nrole = 5\n', "scratchpad.role: must be a string"),
    ('\n[scratchpad]\nlog = "launch"\n', "scratchpad.log: must be a list of event names"),
    ('\n[recipes.t]\ncommand = ["true"]\nmetric_files = ["a.csv"]\n',  # a typo'd setting did nothing, silently
     "recipes.t.metric_files: is not a recipe setting (known: description, command, cwd"),
])
def test_bad_config_values_are_one_sentence_with_the_line(workspace, extra, words):
    with open(workspace / "config.toml", "a") as fh:
        fh.write(extra)
    proc = cli("ls", cwd=workspace)
    assert proc.returncode == 2 and words in proc.stderr and " line " in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1


def test_settings_and_tables_urbanrun_does_not_read_are_refused(workspace):
    """`kill_grace_secnds = 30` or `[recipe.x]` (singular) were read as nothing at all: the kill
    kept its default grace, the recipe did not exist, and nothing said why."""
    text = (workspace / "config.toml").read_text()
    for edited, words in ((text.replace("kill_grace_seconds = 2", "kill_grace_seconds = 2\nkill_grace_secnds = 30"),
                           "line 5: urbanrun.kill_grace_secnds: is not a setting of urbanrun (known: runs_dir, "
                           "kill_grace_seconds)."),
                          (text + '\n[recipe.x]\ncommand = ["true"]\n',
                           "recipe: is not a table of config.toml (known: urbanrun, paths, scratchpad")):
        (workspace / "config.toml").write_text(edited)
        proc = cli("ls", cwd=workspace)
        assert proc.returncode == 2 and words in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_a_nan_kill_grace_in_the_config_is_refused(workspace):
    text = (workspace / "config.toml").read_text().replace("kill_grace_seconds = 2", "kill_grace_seconds = nan")
    (workspace / "config.toml").write_text(text)
    proc = cli("ls", cwd=workspace)
    assert proc.returncode == 2 and "urbanrun.kill_grace_seconds: must be a number of seconds >= 0" in proc.stderr


@pytest.mark.parametrize("content, words", [
    (None, "does not exist"),
    ("garbage\n", "line 1 is not an NVML reading"),
    ("[1, 2]\n", "line 1 is not an NVML reading (not a JSON object)"),
    ('{"type": "GpuStatus", "status": 5}\n', "'status' is not an object"),
    ("FOLDER", "is a folder, not a regular file"),
    ("FIFO", "is a FIFO (named pipe), not a regular file"),
])
def test_a_bad_gpu_recording_is_one_sentence(workspace, content, words):
    import os

    path = workspace / "gpus.jsonl"
    if content == "FOLDER":
        path.mkdir()
    elif content == "FIFO":
        os.mkfifo(path)
    elif content is not None:
        path.write_text(content)
    env = {**os.environ, "URBANRUN_GPU_RECORDING": str(path)}
    for args in (["gpus"], ["advise", "cones"]):
        proc = subprocess.run([sys.executable, "-m", "urbanrun.engine.cli", *args], cwd=workspace, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "URBANRUN_GPU_RECORDING" in proc.stderr and words in proc.stderr, proc.stderr


@pytest.mark.parametrize("kind", ["fifo", "socket", "device"])
def test_only_regular_files_are_read(workspace, kind):
    """FIFOs, sockets and devices are refused at once with a sentence (timeout=20: a hang fails)."""
    import os
    import socket

    if kind == "fifo":
        target = workspace / "pipe.jsonl"
        os.mkfifo(target)
        words = "is a FIFO (named pipe), not a regular file"
    elif kind == "socket":
        target = workspace / "sock.log"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(target))
        words = "is a socket, not a regular file"
    else:
        target = "/dev/zero"
        words = "/dev/zero is a character device, not a regular file"
    for args in (["metrics", str(target)], ["doctor", str(target)], ["import", str(target)],
                 ["--replay", str(target), "--headless"]):
        proc = cli(*args, cwd=workspace, timeout=20)
        assert proc.returncode == 2 and words in proc.stderr and proc.stderr.count("\n") == 1, (args, proc.stderr)
    assert _runs(workspace) == []


def test_a_fifo_inside_a_folder_is_passed_over(workspace):
    import os

    folder = workspace / "logs"
    folder.mkdir()
    os.mkfifo(folder / "live.jsonl")
    (folder / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    out = json.loads(cli("metrics", str(folder), "--json", cwd=workspace, timeout=20, check=True).stdout)
    assert [s["path"] for s in out["sources"]] == [str(folder / "metrics.jsonl")]
    proc = cli("import", str(folder), cwd=workspace, timeout=20, check=True)
    assert "1 metrics file(s)" in proc.stdout


def test_metrics_of_the_root_folder_works(workspace):
    proc = cli("metrics", "/", "--json", cwd=workspace, timeout=120)
    assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode == 0:
        assert isinstance(json.loads(proc.stdout)["sources"], list)
    else:
        assert "no metrics files found under /" in proc.stderr


def test_logs_stream_a_big_log_in_bounded_memory(workspace):
    """`logs` used to hold the whole log (about 6x its size); now it streams it, and -n reads
    from the end. A 5 MB line without a newline is skipped (an empty line in its place)."""
    from conftest import cli_json, wait_for

    run = cli_json("launch", "exit_after", "--set", "seconds=0", cwd=workspace)
    wait_for(lambda: cli_json("show", run["id"], cwd=workspace)["status"] != "running", what="the run's end")
    log = workspace / "runs" / run["id"] / "output.log"
    line = "step 000000 loss 0.5 " + "." * 80 + "\n"
    with open(log, "a") as fh:
        for _ in range(6):
            fh.write(line * 100_000)  # 10 MB a time, 60 MB in all
        fh.write("x" * (5 << 20) + "\nthe end\nno newline")
    size_mb = log.stat().st_size / 2 ** 20
    measure = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE); "
               "lines = p.stdout.split(b'\\n'); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, "
               "p.returncode, len(lines), lines[-4:])")
    out = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "urbanrun.engine.cli", "logs", run["id"]],
                         cwd=workspace, capture_output=True, text=True, timeout=300).stdout
    rss_mb, code, rest = out.split(" ", 2)
    assert code == "0" and rest.endswith("[b'', b'the end', b'no newline', b'']\n"), out
    assert int(rss_mb) < size_mb, f"logs held {rss_mb} MB for a {size_mb:.0f} MB log"
    tail = cli("logs", run["id"], "-n", "2", cwd=workspace, check=True).stdout
    assert tail == "the end\nno newline\n"


@pytest.mark.parametrize("kind, words", [("fifo", "is a FIFO (named pipe), not a regular file"),
                                         ("device", "is a character device"), ("folder", "is a folder")])
def test_a_config_that_is_not_a_regular_file_is_refused_at_once(workspace, kind, words):
    import os

    target = {"fifo": workspace / "c.toml", "device": "/dev/zero", "folder": workspace}[kind]
    if kind == "fifo":
        os.mkfifo(target)
    proc = cli("--config", str(target), "ls", cwd=workspace, timeout=20)
    assert proc.returncode == 2 and f"config file {target} {words}" in proc.stderr


def test_a_nul_character_in_a_command_is_refused_before_anything_is_written(workspace):
    with open(workspace / "config.toml", "a") as fh:
        fh.write('\n[recipes.nul]\ncommand = ["{python}", "-c", "print(1)\\u0000"]\n')
    proc = cli("launch", "nul", cwd=workspace)
    assert proc.returncode == 2 and "holds a NUL character" in proc.stderr and "Traceback" not in proc.stderr
    assert _runs(workspace) == []


def test_a_byte_that_is_not_utf8_in_launch_arguments_is_refused_before_anything_is_written(workspace):
    """`--env NOTE=caf\xe9` typed in a Latin-1 terminal: the record could not be written (an internal
    UnicodeEncodeError with a traceback) and an empty run folder was left behind."""
    proc = subprocess.run([sys.executable, "-m", "urbanrun.engine.cli", "launch", "exit_after", "--env",
                           b"NOTE=caf\xe9", "--json"], cwd=workspace, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert error["code"] == "bad_input" and "'caf?' holds a byte that is not UTF-8" in error["message"]
    assert _runs(workspace) == []
    latin1 = os.path.join(os.fsencode(workspace), b"caf\xe9")  # a project folder named in Latin-1
    os.mkdir(latin1)
    shutil.copy(workspace / "config.toml", os.fsdecode(latin1))
    proc = subprocess.run([sys.executable, "-m", "urbanrun.engine.cli", "launch", "exit_after"], cwd=latin1,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "caf?' holds a byte that is not UTF-8" in proc.stderr, proc.stderr
    assert not os.path.exists(os.path.join(latin1, b"runs")) or os.listdir(os.path.join(latin1, b"runs")) == []


def test_import_of_a_folder_whose_name_is_not_utf8_is_one_sentence_and_imports_nothing(workspace):
    folder = os.path.join(os.fsencode(workspace), b"caf\xe9", b"lightning_logs", b"version_0")
    os.makedirs(folder)
    with open(os.path.join(folder, b"metrics.csv"), "w") as fh:
        fh.write("epoch,step,train_loss\n0,1,0.5\n")
    proc = subprocess.run([sys.executable, "-m", "urbanrun.engine.cli", "import", os.path.join(os.fsencode(workspace),
                           b"caf\xe9")], cwd=workspace, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "caf? has a name that is not UTF-8" in proc.stderr
    assert _runs(workspace) == []


def test_a_very_long_import_name_still_makes_a_valid_run_id(workspace):
    (workspace / "m.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    proc = cli("import", str(workspace / "m.jsonl"), "--name", "n" * 3000, cwd=workspace, check=True)
    (run_id,) = _runs(workspace)
    assert len(run_id) < 100 and run_id in proc.stdout


def test_a_forced_run_id_collision_draws_another_id_or_says_so(workspace, monkeypatch):
    """Two launches in the same second that draw the same suffix: the second draws again; when
    every draw is taken, one sentence (a fault of chance, not of the input: exit 1 in the CLI)."""
    import secrets

    from urbanrun.engine.core.config import load_config
    from urbanrun.engine.core.errors import StorageError
    from urbanrun.engine.runs.store import RunStore
    from urbanrun.engine.runs.supervisor import Supervisor

    draws = iter(["aaaa", "aaaa", "bbbb"] + ["aaaa"] * 40)
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(draws))
    config = load_config(workspace / "config.toml")
    sup = Supervisor(config, RunStore(workspace / "runs"), clock=lambda: 1_800_000_000.0)
    first = sup.launch("exit_after", {"seconds": "0"})
    second = sup.launch("exit_after", {"seconds": "0"})
    assert first.id.endswith("-aaaa") and second.id.endswith("-bbbb")
    with pytest.raises(StorageError, match="no free run id for 'exit_after' .* 20 drawn, all taken; launch again"):
        sup.launch("exit_after", {"seconds": "0"})
    assert len(_runs(workspace)) == 2


def test_a_scratchpad_root_that_cannot_be_written_is_one_sentence(workspace):
    with open(workspace / "config.toml", "a") as fh:
        fh.write('\n[scratchpad]\nroot = "/proc/no-such-folder"\n')
    proc = cli("scratchpad", "log", "hello", cwd=workspace)
    assert proc.returncode == 2 and "cannot write the scratchpad in /proc/no-such-folder" in proc.stderr
    assert "set [scratchpad] root in" in proc.stderr and "Traceback" not in proc.stderr
    launched = cli("launch", "exit_after", "--set", "seconds=0", cwd=workspace)
    assert launched.returncode == 0 and "Traceback" not in launched.stderr  # the scratchpad never undoes a launch


def test_nan_reaching_the_engine_by_other_doors_is_refused(workspace):
    """The same checks for agents (MCP tools) and the TUI as for the CLI's flags: nan and inf are
    no number of seconds or gigabytes; a log that became a FIFO is refused, not waited on."""
    import os
    import threading

    from urbanrun.engine.cli.doctor import advice
    from urbanrun.engine.cli.mcp_server import Tools
    from urbanrun.engine.core.config import load_config
    from urbanrun.engine.core.errors import UserError
    from urbanrun.engine.runs.store import RunStore
    from urbanrun.engine.runs.supervisor import Supervisor

    config = load_config(workspace / "config.toml")
    store = RunStore(workspace / "runs")
    record = Supervisor(config, store).launch("long_sleep")
    try:
        with pytest.raises(UserError, match="grace"):
            Supervisor(config, store).request_kill(record.id, grace=float("nan"))
        with pytest.raises(UserError, match="gpu-memory"):
            advice(config, store, "cones", gpu_memory=float("nan"))
        tools = Tools(config, store)
        with pytest.raises(UserError, match="timeout"):
            tools.wait_run(record.id, timeout=float("nan"))
        log = store.run_dir(record.id) / "output.log"
        log.unlink()
        os.mkfifo(log)
        outcome = []

        def read_logs():
            try:
                tools.run_logs(record.id)
            except UserError as exc:
                outcome.append(str(exc))

        reader = threading.Thread(target=read_logs, daemon=True)
        reader.start()
        reader.join(60)  # a guard, not a timing: an open() of the FIFO would block here for good
        assert not reader.is_alive() and "is a FIFO" in outcome[0]
    finally:
        Supervisor(config, store).request_kill(record.id, force=True)
