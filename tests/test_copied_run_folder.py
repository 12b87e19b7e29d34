"""A copy of a live run's folder (a backup of the runs folder, `cp -a runs/X elsewhere/runs/`) has the
same id, pid and create time as the original: it named the original's babysitter, so its record
claimed the original's processes and GPU memory, stayed `running`, and a kill from the copy would
stop the original. The copy is told apart by the folder its babysitter was started with."""

from __future__ import annotations

import json
import shutil

import psutil

from conftest import cli, cli_json, wait_for
from urbanrun.engine.gpu.host import run_trees

GB = 1 << 30


def test_a_copied_live_run_folder_claims_nothing_of_the_original(workspace, monkeypatch):
    run = cli_json("launch", "long_sleep", cwd=workspace)
    original = workspace / "runs" / run["id"]
    try:
        wait_for(lambda: "started" in (original / "output.log").read_text(), what="the run to start")
        child = psutil.Process(run["pid"]).children()[0].pid
        backup = workspace / "backup"
        (backup / "runs").mkdir(parents=True)
        copy = backup / "runs" / run["id"]
        shutil.copytree(original, copy, symlinks=True, ignore=shutil.ignore_patterns(".run.toml.lock"))
        recording = workspace / "gpu.jsonl"
        recording.write_text(json.dumps({"status": {"available": True, "kind": "ok", "reason": ""}}) + "\n" + json.dumps(
            {"t": 0.0, "gpus": [{"index": 0, "name": "GPU", "mem_used": 2 * GB, "mem_total": 24 * GB}],
             "processes": [{"gpu": 0, "pid": child, "used_mem": GB}]}) + "\n")
        monkeypatch.setenv("URBANRUN_GPU_RECORDING", str(recording))

        here = ["--runs-dir", str(backup / "runs")]
        copied = cli_json("gpus", *here, cwd=workspace)["processes"]
        assert [(p["pid"], p["run_id"]) for p in copied] == [(child, None)]  # not the copy's
        assert [(p["pid"], p["run_id"]) for p in cli_json("gpus", cwd=workspace)["processes"]] == [(child, run["id"])]
        assert run_trees({run["id"]: (run["pid"], run["pid_create_time"], copy)}) == {}
        assert list(run_trees({run["id"]: (run["pid"], run["pid_create_time"], original)})) == [run["id"]]
        reads = []  # the original's folder, once read from its command line, is not read again; a copy's always is
        real_cmdline = psutil.Process.cmdline
        monkeypatch.setattr(psutil.Process, "cmdline", lambda self: reads.append(self.pid) or real_cmdline(self))
        for _ in range(3):
            assert run_trees({run["id"]: (run["pid"], run["pid_create_time"], copy)}) == {}
            assert list(run_trees({run["id"]: (run["pid"], run["pid_create_time"], original)})) == [run["id"]]
        assert reads == [run["pid"]] * 3
        monkeypatch.setattr(psutil.Process, "cmdline", real_cmdline)

        shown = cli_json("show", run["id"], *here, cwd=workspace)
        assert shown["status"] == "lost" and f"a copy of the run folder {original}" in shown["problem"], shown
        killed = cli("kill", run["id"], *here, cwd=workspace)  # from the copy: nothing of the original is touched
        assert killed.returncode == 0 and "nothing was signalled" in killed.stdout, (killed.stdout, killed.stderr)
        assert psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE
        assert cli_json("show", run["id"], cwd=workspace)["status"] == "running"
    finally:
        cli("kill", run["id"], "--force", cwd=workspace)
    assert cli_json("show", run["id"], cwd=workspace)["status"] == "killed"
