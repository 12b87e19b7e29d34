"""Secrets never in clear in anything urbanrun writes (run.toml, session recordings, the scratchpad,
job.sbatch), found by name and by value shape in env and argv; the run still gets the real values.
Run folders are 0700, recordings and job scripts 0600; SLURM option values cannot inject commands."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import sys
import tomllib

import pytest

from urbanrun.engine.core import redact
from urbanrun.engine.core.config import load_config
from urbanrun.engine.core.errors import UserError
from urbanrun.engine.runs.backends import slurm
from urbanrun.engine.session.loop import Engine

from conftest import SCRIPTS, TEST_CONFIG, cli, drive
from test_backends import needs_slurm


def _alnum(n: int) -> str:
    return "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


def _shapes() -> dict[str, str]:
    """One fresh value of each shape (made at run time: no key-like literal lives in the repository)."""
    upper = "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
    return {
        "openai": "sk-proj-" + _alnum(40), "github_classic": "ghp_" + _alnum(36), "github_oauth": "gho_" + _alnum(36),
        "github_fine": "github_pat_" + _alnum(22) + "_" + _alnum(59), "huggingface": "hf_" + _alnum(34),
        "slack_bot": f"xoxb-{secrets.randbelow(10**12)}-{secrets.randbelow(10**12)}-{_alnum(24)}",
        "slack_user": f"xoxp-{secrets.randbelow(10**12)}-{_alnum(30)}",
        "aws_key_id": "AKIA" + upper, "aws_secret": _alnum(18) + "/" + _alnum(10) + "+" + _alnum(10),
        "random_hex": secrets.token_hex(20), "random_b64": _alnum(32),
    }


# -- the redaction module ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", list(_shapes()))
def test_each_value_shape_is_masked_in_env_and_argv(shape):
    value = _shapes()[shape]
    env = redact.env({"PLAIN_NAME": value, "OMP_NUM_THREADS": "1"})
    assert value not in json.dumps(env) and "***" in env["PLAIN_NAME"] and env["OMP_NUM_THREADS"] == "1"
    argv = redact.argv(["python", "train.py", "--hub", value, f"--remote={value}", "--lr", "3e-3"])
    assert value not in json.dumps(argv) and argv[:3] == ["python", "train.py", "--hub"] and argv[-2:] == ["--lr", "3e-3"]
    assert value not in redact.data({"params": {"hub": value}, "line": f"uploading with {value} now"},
                                    redact.secrets_in(["python", value], {}))


def test_url_credentials_keep_the_url():
    url = "postgres://trainer:Pg-s3cret-pw@db.internal:5432/cones"
    assert redact.value(url) == "postgres://trainer:***@db.internal:5432/cones"
    assert redact.env({"DATABASE_URL": url})["DATABASE_URL"] == "postgres://trainer:***@db.internal:5432/cones"
    assert redact.text(f"connecting to {url}") == "connecting to postgres://trainer:***@db.internal:5432/cones"


@pytest.mark.parametrize("argv, masked", [
    (["p", "--api-key", "plainword"], ["p", "--api-key", "***"]),
    (["p", "--token=plainword"], ["p", "--token=***"]),
    (["p", "--password", "hunter2"], ["p", "--password", "***"]),
    (["p", "--secret", "x"], ["p", "--secret", "***"]),
    (["p", "--hf-token", "abc"], ["p", "--hf-token", "***"]),
])
def test_secret_flags_in_argv(argv, masked):
    assert redact.argv(argv) == masked


@pytest.mark.parametrize("plain", ["experiment_baseline_v2", "res9_cones_batch32_lr3e-3_dims32-64-128",
                                   "ViT-B-16-laion2b_s34b_b88k", "ResNet50_ImageNet1K_V2_weights",
                                   "/home/user/data/UrbanRepML/res9/Cones2024", "urbanrun.trainers.cones_unet",
                                   "20261130-100102-cones-1a2b", "--nproc-per-node=2", "cuda:0", "/data/hf_cache_dir"])
def test_ordinary_values_are_kept(plain):
    assert redact.value(plain) == plain and redact.argv(["python", plain]) == ["python", plain]


def test_names_that_only_look_secret_are_kept():
    env = redact.env({"TOKENIZERS_PARALLELISM": "false", "WANDB_API_KEY": "x", "HF_TOKEN": "y", "OPENAI_KEY": "z"})
    assert env == {"TOKENIZERS_PARALLELISM": "false", "WANDB_API_KEY": "***", "HF_TOKEN": "***", "OPENAI_KEY": "***"}
    assert redact.argv(["p", "--max-tokens", "512"]) == ["p", "--max-tokens", "512"]
    assert redact.text(redact.text("WANDB_API_KEY=abc123")) == "WANDB_API_KEY=***"  # idempotent


# -- every file a real launch writes --------------------------------------------------------------------
LEAKY = """
[recipes.leaky]
command = ["{python}", "SCRIPT", ARGV]
env = ENV
[recipes.leaky.params.hub]
type = "string"
default = ""
[recipes.leaky.params.access_token]
type = "string"
default = ""
"""


def _leaky_workspace(workspace):
    """A recipe whose argv and env carry one secret of every kind; returns (secret cores, argv, env,
    --set values). A core is the part of a value that must never be written."""
    shapes = _shapes()
    password, pg_password = "hunter2-" + _alnum(6), "Pg-" + _alnum(10)
    argv = ["--api-key", shapes["openai"], f"--token={shapes['github_classic']}", "--password", password,
            "--secret", shapes["random_b64"], "--db", f"postgres://trainer:{pg_password}@db.internal:5432/cones",
            "--aws", shapes["aws_secret"]]
    env = {"WANDB_API_KEY": shapes["random_hex"], "MODEL_HUB": shapes["huggingface"], "NOTIFY": shapes["slack_bot"],
           "AWS_ACCESS_KEY_ID": shapes["aws_key_id"], "GH": shapes["github_fine"], "CHAT": shapes["slack_user"],
           "OMP_NUM_THREADS": "1"}
    sets = {"access_token": "gho_plain" + _alnum(8), "hub": shapes["github_oauth"]}
    recipe = (LEAKY.replace("SCRIPT", str(SCRIPTS / "secret_digest.py"))
              .replace("ARGV", ", ".join(json.dumps(a) for a in argv))
              .replace("ENV", "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in env.items())
                       + f", DIGEST_ENV = {json.dumps(','.join(env))} }}"))
    (workspace / "config.toml").write_text(TEST_CONFIG + recipe)
    cores = [v for k, v in shapes.items()] + [password, pg_password, sets["access_token"]]
    return cores, argv, env, sets


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def _assert_nothing_leaked(folders, cores):
    seen = 0
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                seen += 1
                content = path.read_bytes()
                for core in cores:
                    assert core.encode() not in content, f"a secret is in clear in {path}"
    return seen


def _assert_received(log: str, argv: list[str], env: dict[str, str], sets: dict[str, str]):
    """The run got the real values: its output holds each one's digest (never the value)."""
    for value in argv + list(sets.values()):
        assert _digest(value) in log, f"the run did not receive argv item {redact.value(value)}"
    for name, value in env.items():
        assert f"env {name} {_digest(value)}" in log, f"the run did not receive {name}"


def test_a_real_launch_writes_no_secret_anywhere(workspace):
    cores, argv, env, sets = _leaky_workspace(workspace)
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)  # records the session, auto-logs
    record = engine.launch("leaky", sets)
    drive(engine, lambda: engine.state.runs[record.id].status not in ("starting", "running"))
    engine.close()
    via_cli = cli("launch", "leaky", "--set", f"hub={sets['hub']}", "--set", f"access_token={sets['access_token']}",
                  cwd=workspace, check=True).stdout.strip()
    drive_cli = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    drive(drive_cli, lambda: drive_cli.store.load(via_cli).status not in ("starting", "running"))
    drive_cli.close()

    runs, pad = workspace / "runs", workspace / ".claude" / "scratchpad"
    assert _assert_nothing_leaked([runs, pad], cores) >= 8
    final = tomllib.loads((runs / record.id / "run.toml").read_text())
    assert final["status"] == "exited"
    assert final["argv"][2:7] == ["--api-key", "sk-proj-***", "--token=***", "--password", "***"]
    assert "postgres://trainer:***@db.internal:5432/cones" in final["argv"]
    assert final["env"]["WANDB_API_KEY"] == "***" and final["env"]["OMP_NUM_THREADS"] == "1"
    assert final["params"]["access_token"] == "***" and "***" in final["params"]["hub"]
    sessions = list((runs / "sessions").glob("*.jsonl"))
    assert sessions and any("--api-key" in s.read_text() for s in sessions)  # the launch was recorded, masked
    assert "--password '***'" in "".join(p.read_text() for p in pad.rglob("*.md"))  # and auto-logged, masked
    for run_id in (record.id, via_cli):
        _assert_received((runs / run_id / "output.log").read_text(), argv, env, sets)
    # modes: the run folder its owner's only, recordings 0600
    assert stat.S_IMODE((runs / record.id).stat().st_mode) == 0o700
    assert all(stat.S_IMODE(s.stat().st_mode) == 0o600 for s in sessions)
    assert stat.S_IMODE((runs / record.id / "run.toml").stat().st_mode) == 0o600


def test_a_secret_in_a_failed_runs_error_is_masked_in_its_stored_diagnosis_and_the_scratchpad(workspace):
    """The run's own error text quotes a token (a login refused): the diagnosis stored in run.toml
    (read by every view) and auto-logged to the scratchpad masks it, though neither argv nor env
    held it when the record was made; so does an entry an agent writes with `scratchpad log`."""
    token = _shapes()["huggingface"]
    (workspace / "token.txt").write_text(token)
    (workspace / "config.toml").write_text(TEST_CONFIG + """
[recipes.login]
command = ["{python}", "-c", "import pathlib; raise RuntimeError('login refused for ' + pathlib.Path('token.txt').read_text())"]
""")
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None, record_session=False)
    record = engine.launch("login")
    drive(engine, lambda: engine.state.runs[record.id].status not in ("starting", "running")
          and engine.store.load(record.id).diagnoses)
    engine.close()
    stored = (workspace / "runs" / record.id / "run.toml").read_text()
    assert token not in stored
    assert tomllib.loads(stored)["diagnosis"] == "RuntimeError: login refused for hf_***"
    cli("scratchpad", "log", f"retried the upload\nwith {token} this time", cwd=workspace, check=True)
    pad = "".join(p.read_text() for p in (workspace / ".claude" / "scratchpad").rglob("*.md"))
    assert token not in pad
    assert f"{record.id}: traceback" in pad and "login refused for hf_***" in pad and "with hf_*** this time" in pad


def test_a_relaunch_of_a_redacted_run_uses_the_recipe_value_not_the_mask(workspace):
    cores, argv, env, sets = _leaky_workspace(workspace)
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None, record_session=False, autolog=None)
    first = engine.launch("leaky", sets)
    child = engine.relaunch(first.id, {}, "again")
    assert "***" not in child.params.get("access_token", "")  # the default (""), not the literal mask
    drive(engine, lambda: all(engine.state.runs[r].status == "exited" for r in (first.id, child.id)))
    engine.close()


@needs_slurm
def test_slurm_job_script_holds_no_secret_and_the_job_gets_them(workspace):
    cores, argv, env, sets = _leaky_workspace(workspace)
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None)
    record = engine.launch("leaky", sets, backend="slurm")
    drive(engine, lambda: engine.state.runs[record.id].status not in ("pending", "running", "starting"))
    engine.close()
    run_dir = workspace / "runs" / record.id
    script = (run_dir / "job.sbatch").read_text()
    assert '"$URBANRUN_ARG_' in script and "export " not in script
    assert stat.S_IMODE((run_dir / "job.sbatch").stat().st_mode) == 0o600
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert _assert_nothing_leaked([workspace / "runs", workspace / ".claude" / "scratchpad"], cores) >= 5
    assert engine.store.load(record.id).status == "exited"
    _assert_received((run_dir / "output.log").read_text(), argv, env, sets)


# -- SLURM option injection ---------------------------------------------------------------------------
def test_a_newline_in_a_slurm_option_is_refused_before_anything_is_written(workspace):
    out = cli("launch", "long_sleep", "--backend", "slurm", "--opt", "partition=gpu\ntouch X #", cwd=workspace)
    assert out.returncode == 2, out.stderr
    assert "slurm option 'partition'" in out.stderr and "control character" in out.stderr
    assert "Traceback" not in out.stderr and not (workspace / "X").exists()
    assert not list((workspace / "runs").glob("*")) if (workspace / "runs").exists() else True


@pytest.mark.parametrize("config_table, what", [
    ({"extra": ["--constraint=a100\nrm -rf ~"]}, "slurm option 'extra'"),
    ({"account": "proj\r\x1b[2J"}, "slurm option 'account'"),
    ({"time": "1:00:00\u2028touch X"}, "slurm option 'time'"),
])
def test_control_characters_in_any_slurm_option_are_refused(config_table, what):
    with pytest.raises(UserError, match=what):
        slurm.options(config_table, {}, {})


def test_unknown_slurm_option_is_refused(workspace):
    out = cli("launch", "long_sleep", "--backend", "slurm", "--opt", "bogus=1", cwd=workspace)
    assert out.returncode == 2 and "unknown slurm option 'bogus'" in out.stderr


def test_a_newline_in_the_working_directory_cannot_reach_the_job_script(tmp_path):
    with pytest.raises(UserError, match="working directory"):
        slurm.batch_script("r1", "cones", [sys.executable], str(tmp_path / "a\ntouch X #"), {}, tmp_path / "o.log",
                           slurm.options({}, {}, {}))


def test_the_recording_masks_secrets_a_run_prints(tmp_path):
    from urbanrun.engine.core.events import LogLines, Notice
    from urbanrun.engine.session.recorder import Recorder, read_session

    token, password = _shapes()["huggingface"], "Pg-" + _alnum(10)
    plain = tuple(f"Epoch {i}/30 | Train Loss: 0.{i:04d}" for i in range(200))
    recorder = Recorder(tmp_path / "sessions")
    recorder.write([LogLines(ts=1.0, run_id="r", lines=plain),
                    LogLines(ts=2.0, run_id="r", lines=("ok", f"login with {token}", f"db postgres://u:{password}@h/x")),
                    Notice(ts=3.0, text=f"HF_TOKEN={token} rejected")])
    recorder.close()
    content = recorder.path.read_text()
    assert token not in content and password not in content
    events = read_session(recorder.path)
    assert events[0].lines == plain  # lines without a candidate are recorded as they are
    assert events[1].lines == ("ok", "login with hf_***", "db postgres://u:***@h/x")
    assert events[2].text == "HF_TOKEN=*** rejected"
    assert stat.S_IMODE(recorder.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(recorder.path.parent.stat().st_mode) == 0o700
