"""Lightning versions and W&B run folders belong to the run that created them: three runs of one
recipe with the README's own glob (`{cwd}/lightning_logs/*/metrics.csv`) each follow their own
version_N, also when they run back to back; `urbanrun import` makes one run per version."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from urbanrun.engine.core.config import load_config
from urbanrun.engine.metrics.attribution import belongs, birth, unit_of
from urbanrun.engine.session.loop import Engine

from conftest import SCRIPTS, cli

RECIPE = """
[recipes.lit]
command = ["{python}", "SCRIPTS/lightning_versions.py"]
cwd = "PROJECT"
metrics_files = ["{cwd}/lightning_logs/*/metrics.csv"]
"""


def _engine(workspace: Path) -> tuple[Engine, Path]:
    project = workspace / "project"
    project.mkdir()
    config = workspace / "config.toml"
    config.write_text(config.read_text() + RECIPE.replace("SCRIPTS", str(SCRIPTS)).replace("PROJECT", str(project)))
    return Engine(load_config(config), gpu_source=None), project


def _drain(engine: Engine, run_id: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        engine.poll()
        if engine.state.runs.get(run_id) and engine.state.runs[run_id].status not in ("starting", "running"):
            for _ in range(3):  # the ended run's last files
                engine.poll()
            return
        time.sleep(0.1)
    raise AssertionError(f"{run_id} did not end")


def test_back_to_back_runs_each_follow_their_own_version(workspace):
    engine, project = _engine(workspace)
    ids = []
    for _ in range(3):  # one after the other, each starting right after the last ended
        record = engine.launch("lit", values={})
        ids.append(record.id)
        _drain(engine, record.id)
    for version, run_id in enumerate(ids):
        engine.follow(run_id)
    for _ in range(5):
        engine.poll()
        time.sleep(0.1)
    for version, run_id in enumerate(ids):
        series = engine.state.runs[run_id].metrics["train_loss"]
        values = list(series.values)
        assert values == [version + 1 / (s + 1) for s in range(4)], (run_id, values)  # its own, and only its own
    assert sorted(os.listdir(project / "lightning_logs")) == ["version_0", "version_1", "version_2"]
    engine.close()


def test_a_version_created_after_a_later_run_started_is_the_later_runs(tmp_path):
    version = tmp_path / "lightning_logs" / "version_3"
    version.mkdir(parents=True)
    csv = version / "metrics.csv"
    csv.write_text("epoch,step,train_loss\n0,0,1.0\n")
    created = birth(csv)[0]  # the folder's and its files' oldest time
    assert unit_of(csv) == version and created <= csv.stat().st_mtime
    assert belongs(csv, created - 10, None)  # the run started before: its own
    assert not belongs(csv, created - 10, created - 5)  # a later run started before it appeared
    assert belongs(csv, created - 5, None)
    assert not belongs(csv, created + 1, None)  # it was there before the run started
    os.utime(csv, (created + 100, created + 100))  # a later save by its own run does not make it new
    (version / "hparams.yaml").write_text("lr: 1\n")
    os.utime(version / "hparams.yaml", (created, created))
    os.utime(version, (created, created))
    assert not belongs(csv, created + 50, None)


def test_wandb_folders_and_tensorboard_files_are_dated_by_their_names(tmp_path):
    stamp = time.mktime((2026, 1, 15, 10, 30, 0, 0, 0, -1))
    run = tmp_path / "wandb" / "offline-run-20260115_103000-abcd1234"
    run.mkdir(parents=True)
    assert birth(run) == (stamp, 1.0)
    assert belongs(run, stamp - 0.5, None) and not belongs(run, stamp + 30, None)
    events = tmp_path / "tb" / "events.out.tfevents.1768473000.host.123.0"
    events.parent.mkdir()
    events.write_bytes(b"")
    assert birth(events) == (1768473000.0, 1.0)
    assert not belongs(events, 1768473100.0, None)


def test_import_makes_one_run_per_version(workspace):
    logs = workspace / "lightning_logs"
    for version in range(3):
        folder = logs / f"version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text("epoch,step,train_loss\n" +
                                            "".join(f"0,{s},{version + 1 / (s + 1)}\n" for s in range(5)))
    out = json.loads(cli("import", str(logs), "--json", cwd=workspace, check=True).stdout)
    runs = out["runs"]
    assert len(runs) == 3
    assert [Path(r["metrics_files"][0]).parent.name for r in runs] == ["version_0", "version_1", "version_2"]
    assert all(r["id"].split("-", 2)[-1].startswith("import-lightning_logs-version_") for r in runs)
    for version, run in enumerate(runs):
        series = json.loads(cli("metrics", run["id"], "--json", cwd=workspace, check=True).stdout)
        summary = next(s for s in series["sources"] if s["path"].endswith("metrics.csv"))["metrics"]["train_loss"]
        assert summary["count"] == 5 and summary["first_step"] == 0 and summary["max"] == version + 1.0
