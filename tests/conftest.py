"""Shared fixtures: a temp workspace with a test config.toml (tiny demo settings, test scripts),
and helpers to run the real CLI as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# CI runs the same generated examples every time (a found case is kept as a test, not left to chance)
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests" / "fixtures" / "scripts"

TEST_CONFIG = """
[urbanrun]
runs_dir = "runs"
kill_grace_seconds = 2

[recipes.cones]
description = "demo, tiny"
command = ["{python}", "-m", "urbanrun.trainers.cones_unet"]
cwd = "{urbanrun}"
env = { OMP_NUM_THREADS = "1" }
[recipes.cones.params.epochs]
type = "int"
default = 2
min = 1
[recipes.cones.params.batch_size]
type = "int"
default = 8
min = 1
[recipes.cones.params.dims]
type = "list"
item_type = "int"
default = [8, 16, 32]
[recipes.cones.params.cones]
type = "int"
default = 16
min = 4
[recipes.cones.params.workers]
type = "int"
default = 0
min = 0

[recipes.forker]
command = ["{python}", "SCRIPTS/forker.py"]
[recipes.forker.params.ignore_term]
type = "bool"
flag = "--ignore-term"
default = false

[recipes.exit_after]
command = ["{python}", "SCRIPTS/exit_after.py"]
[recipes.exit_after.params.code]
type = "int"
positional = true
default = 0
[recipes.exit_after.params.seconds]
type = "float"
positional = true
default = 0.5

[recipes.late_csv]
command = ["{python}", "SCRIPTS/late_csv.py"]
metrics_files = ["{run_dir}/history/*.csv"]

[recipes.fake_oom]
command = ["{python}", "SCRIPTS/fake_oom.py"]
oom_recovery = 3
[recipes.fake_oom.params.batch_size]
type = "int"
default = 32
min = 1
[recipes.fake_oom.params.amp]
type = "bool"
default = false
[recipes.fake_oom.params.grad_checkpoint]
type = "bool"
default = false

[recipes.swallow]
command = ["{python}", "SCRIPTS/swallow.py"]

[recipes.ddp]
command = ["{python}", "SCRIPTS/ddp_train.py"]
backend = "torchrun"
env = { OMP_NUM_THREADS = "1" }
torchrun = { nproc_per_node = 2 }
[recipes.ddp.params.steps]
type = "int"
default = 5
[recipes.ddp.params.sleep]
type = "float"
default = 0.1
[recipes.ddp.params.fail_rank]
type = "int"
default = -1

[recipes.spawn_on_request]
command = ["{python}", "SCRIPTS/spawn_on_request.py"]

[recipes.held]
command = ["{python}", "SCRIPTS/held.py"]
[recipes.held.params.code]
type = "int"
positional = true
default = 3

[recipes.long_sleep]
command = ["{python}", "-c", "import time; print('started', flush=True); time.sleep(120)"]

[recipes.sleeper]
command = ["{python}", "SCRIPTS/exit_after.py", "3", "4"]

[recipes.diverge]
command = ["{python}", "SCRIPTS/diverge.py"]
[recipes.diverge.params.lr]
type = "float"
default = 0.01
min = 0.0
""".replace("SCRIPTS", str(SCRIPTS))


@pytest.fixture(scope="session", autouse=True)
def cone_cache(tmp_path_factory):
    os.environ["URBANRUN_CONE_CACHE"] = str(tmp_path_factory.mktemp("cone-cache"))


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text(TEST_CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("URBANRUN_RUNS_DIR", raising=False)
    return tmp_path


def cli(*args: str, cwd: Path, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
    """Run the real urbanrun CLI in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "urbanrun.engine.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"urbanrun {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def cli_json(*args: str, cwd: Path):
    return json.loads(cli(*args, "--json", cwd=cwd, check=True).stdout)


def release(run_dir: Path) -> None:
    """Let a run of the `held` recipe end (with its code)."""
    (Path(run_dir) / "release").write_text("")


def wait_for(predicate, timeout: float = 90, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def drive(engine, done, timeout: float = 90, interval: float = 0.1) -> list:
    """Poll a real engine until done() (one more poll after), returning every event it gave."""
    events, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        events += engine.poll()
        if done():
            return events + engine.poll()
        time.sleep(interval)
    raise AssertionError(f"the engine never got there in {timeout}s")
