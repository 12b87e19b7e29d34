"""Cross-agent observations against a real git repository made here: a good run; a commit by the
stage-2 architect that breaks the model; the failing run's observation names that commit and file;
a dirty tree; a data file removed; a repository-less cwd (no observation, no error); a hand-written
observation; the same object in show/doctor --json, the scratchpad and the session summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from conftest import cli, cli_json
from urbanrun.engine.cli.contract import load_schema

MODEL_OK = '''"""The stage-2 fusion U-Net (a stand-in)."""


def forward(x):
    return x * 0.5
'''
MODEL_BROKEN = '''"""The stage-2 fusion U-Net (a stand-in), now with an attention block."""


def attention(x):
    raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (8x64 and 128x64)")


def forward(x):
    return attention(x) * 0.5
'''
TRAIN = '''import json, os, sys
sys.path.insert(0, os.getcwd())
from stage2_fusion.models import full_area_unet
from stage2_fusion.data import loader

rows = loader.load("data/features.csv")
out = open(os.environ["URBANRUN_METRICS"], "a")
loss = 1.0
for epoch in range(1, 4):
    loss = full_area_unet.forward(loss) * float(os.environ.get("SCALE", "1"))
    print(f"Epoch {epoch}/3 | Train Loss: {loss:.4f}", flush=True)
    out.write(json.dumps({"step": epoch, "loss": loss}) + "\\n"); out.flush()
'''
LOADER = '''def load(path):
    with open(path) as fh:
        return fh.read().splitlines()
'''
LOADER_SHAPE = '''def load(path):
    with open(path) as fh:
        rows = fh.read().splitlines()
    raise ValueError(f"expected features of shape (n, 64), got shape ({len(rows)}, 3)")
'''


def git(repo: Path, *args: str, author: str = "training-runner") -> str:
    env = {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": f"{author}@example.org",
           "GIT_COMMITTER_NAME": author, "GIT_COMMITTER_EMAIL": f"{author}@example.org",
           "HOME": str(repo.parent), "PATH": "/usr/bin:/bin:/usr/local/bin"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def repo(workspace):
    repo = workspace / "UrbanRepML"
    write(repo / "train.py", TRAIN)
    write(repo / "stage2_fusion" / "__init__.py", "")
    write(repo / "stage2_fusion" / "models" / "__init__.py", "")
    write(repo / "stage2_fusion" / "models" / "full_area_unet.py", MODEL_OK)
    write(repo / "stage2_fusion" / "data" / "__init__.py", "")
    write(repo / "stage2_fusion" / "data" / "loader.py", LOADER)
    write(repo / ".gitignore", "/data/\n")
    write(repo / "data" / "features.csv", "a,b,c\n1,2,3\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "stage 2 training script")
    config = workspace / "config.toml"
    config.write_text(config.read_text() + f'''
[recipes.fusion]
command = ["{{python}}", "train.py"]
cwd = "{repo}"
[recipes.fusion.params.lr]
type = "float"
default = 0.01
[recipes.plain]
command = ["{{python}}", "train.py"]
cwd = "{workspace / 'no-repo'}"
''')
    return repo


def launch(workspace: Path, recipe: str, *sets: str) -> dict:
    proc = cli("launch", recipe, "--follow", *[a for s in sets for a in ("--set", s)], cwd=workspace)
    run_id = proc.stderr.split("launched ", 1)[1].split()[0]
    return cli_json("show", run_id, cwd=workspace)


def record_of(shown: dict) -> dict:
    return shown.get("run", shown)


def scratchpad_text(workspace: Path) -> str:
    return "".join(p.read_text() for p in sorted((workspace / ".claude" / "scratchpad").rglob("*.md")))


def test_a_broken_model_commit_is_named_with_its_author_and_file(workspace, repo):
    good = record_of(launch(workspace, "fusion"))
    assert good["status"] == "exited" and good["git_commit"] and good["git_dirty"] is False
    assert good.get("changes_since_good") is None  # a good run has nothing to report

    write(repo / "stage2_fusion" / "models" / "full_area_unet.py", MODEL_BROKEN)
    git(repo, "commit", "-qam", "Add attention to the fusion U-Net", author="stage2-fusion-architect")
    bad = record_of(launch(workspace, "fusion", "lr=0.02"))
    assert bad["status"] == "failed"
    obs = bad["changes_since_good"]
    assert obs.get("last_good") == good["id"] and obs["reason"] == "failed"
    assert obs["headline"].startswith("the error is raised in stage2_fusion/models/full_area_unet.py:5, changed "
                                      "in 1 commit since the last good run")
    assert "stage2-fusion-architect" in obs["headline"]
    assert [c["author"] for c in obs["commits"]] == ["stage2-fusion-architect"]
    assert obs["commits"][0]["subject"] == "Add attention to the fusion U-Net"
    assert obs["files"] == {"model code": ["stage2_fusion/models/full_area_unet.py"]}
    assert obs["params"] == {"lr": [0.01, 0.02]}
    assert obs["failing_frame"]["file"] == "stage2_fusion/models/full_area_unet.py"

    jsonschema.validate(bad, load_schema("show"))
    doctor = cli_json("doctor", bad["id"], cwd=workspace)
    jsonschema.validate(doctor, load_schema("doctor"))
    assert doctor["changes_since_good"]["headline"] == obs["headline"]
    notes = scratchpad_text(workspace)
    assert notes.count("### Cross-agent observations") == 1  # once per run
    assert "full_area_unet.py:5" in notes and "stage2-fusion-architect" in notes
    cli("ls", cwd=workspace)  # a later reconcile writes nothing twice
    assert scratchpad_text(workspace).count("### Cross-agent observations") == 1
    summary = cli_json("scratchpad", "finish", cwd=workspace)
    assert "Cross-agent observations: 1" in summary["draft"]


def test_uncommitted_changes_and_a_removed_data_file(workspace, repo):
    launch(workspace, "fusion")
    write(repo / "stage2_fusion" / "data" / "loader.py", LOADER_SHAPE)  # dirty, never committed
    bad = record_of(launch(workspace, "fusion"))
    assert bad["git_dirty"] is True and bad["git_diff_sha"]
    diff = (Path(bad["run_dir"]) / "code.diff").read_text()
    assert "expected features of shape" in diff
    obs = bad["changes_since_good"]
    assert obs["uncommitted"]["files"] == ["stage2_fusion/data/loader.py"]
    assert obs["headline"].startswith("the error is raised in stage2_fusion/data/loader.py:4, with uncommitted "
                                      "changes at launch")
    assert obs["files"] == {"data loading": ["stage2_fusion/data/loader.py"]}
    assert [d["kind"] for d in obs["data_loading"]] == ["data_shape_error"]

    write(repo / "stage2_fusion" / "data" / "loader.py", LOADER)  # clean again
    (repo / "data" / "features.csv").unlink()  # stage 1's output went missing
    gone = record_of(launch(workspace, "fusion"))
    obs = gone["changes_since_good"]
    assert obs["data_loading"][0]["kind"] == "missing_input"
    assert obs["data_loading"][0]["path"] == "data/features.csv"
    assert obs["headline"] == "data loading: an input file is missing: data/features.csv"


def test_a_run_ending_clearly_worse_is_observed(workspace, repo):
    launch(workspace, "fusion")
    worse = record_of(launch(workspace, "fusion", "lr=0.5"))  # exits 0 but ...
    assert worse["status"] == "exited" and worse.get("changes_since_good") is None  # ... the loss is the same
    (repo / "train.py").write_text(TRAIN.replace('os.environ.get("SCALE", "1")', '"1.5"'))
    git(repo, "commit", "-qam", "scale the loss", author="coordinator")
    worse = record_of(launch(workspace, "fusion"))
    obs = worse["changes_since_good"]
    assert obs["reason"].startswith("ended worse: best loss")
    assert obs["files"] == {"other": ["train.py"]} and obs["commits"][0]["author"] == "coordinator"


def test_a_cwd_outside_any_repository_gives_no_observation_and_no_error(workspace, repo):
    plain = workspace / "no-repo"
    for rel in ("train.py", "stage2_fusion/__init__.py", "stage2_fusion/models/__init__.py",
                "stage2_fusion/data/__init__.py", "stage2_fusion/data/loader.py", "data/features.csv"):
        write(plain / rel, (repo / rel).read_text())
    write(plain / "stage2_fusion" / "models" / "full_area_unet.py", MODEL_OK)
    good = record_of(launch(workspace, "plain"))
    assert good["status"] == "exited" and good["git_commit"] is None
    write(plain / "stage2_fusion" / "models" / "full_area_unet.py", MODEL_BROKEN)
    bad = record_of(launch(workspace, "plain"))
    assert bad["status"] == "failed" and bad.get("changes_since_good") is None
    assert "### Cross-agent observations" not in scratchpad_text(workspace)


def test_an_observation_by_hand_links_the_runs_it_names(workspace, repo):
    run = record_of(launch(workspace, "fusion"))
    out = cli_json("scratchpad", "observe", f"I disagree with the coordinator: {run['id']} shows lr 0.01 is fine",
                   cwd=workspace)
    assert out["runs"] == [run["id"]]
    notes = scratchpad_text(workspace)
    assert "### Cross-agent observations" in notes and "**" in notes
    assert f"[{run['id']}](file://" in notes
    empty = cli("scratchpad", "observe", cwd=workspace)
    assert empty.returncode == 2 and "scratchpad observe needs" in empty.stderr


def test_bad_observe_settings_are_one_sentence(workspace):
    config = workspace / "config.toml"
    config.write_text(config.read_text() + '\n[observe]\nmargin = "a lot"\n')
    proc = cli("recipes", cwd=workspace)
    assert proc.returncode == 2 and "observe.margin" in proc.stderr and "Traceback" not in proc.stderr


def test_area_globs_and_paths():
    from urbanrun.engine.diagnosis.changes import DEFAULT_AREAS, area_of, repo_relative

    assert area_of("models/unet.py", DEFAULT_AREAS) == "model code"
    assert area_of("stage2_fusion/models/full_area_unet.py", DEFAULT_AREAS) == "model code"
    assert area_of("stage1_modalities/loaders/poi_loader.py", DEFAULT_AREAS) == "data loading"
    assert area_of("configs/netherlands.yaml", DEFAULT_AREAS) == "configuration"
    assert area_of("README.md", DEFAULT_AREAS) == "other"
    assert repo_relative("/r/a/b.py", "/r/a", "/r") == "a/b.py"
    assert repo_relative("b.py", "/r/a", "/r") == "a/b.py"
    assert repo_relative("/elsewhere/b.py", "/r/a", "/r") is None
    assert sys.version_info >= (3, 11)


NAN_LATER = '''import json, os, sys, time
sys.path.insert(0, os.getcwd())
from stage2_fusion.models import full_area_unet
out = open(os.environ["URBANRUN_METRICS"], "a")
for step in range(1, 4):
    loss = full_area_unet.forward(float(step))
    print(f"Epoch {step}/60 | Train Loss: {loss:.4f}", flush=True)
    out.write(json.dumps({"step": step, "loss": loss}) + "\\n"); out.flush()
out.write(json.dumps({"step": 4, "loss": float("nan")}) + "\\n"); out.flush()
print("Epoch 4/60 | Train Loss: nan", flush=True)
time.sleep(60)
'''


def test_a_live_error_diagnosis_is_observed_while_the_run_goes_on(workspace, repo):
    from conftest import drive
    from urbanrun.engine.core.config import load_config
    from urbanrun.engine.session.loop import Engine

    launch(workspace, "fusion")  # the last good run
    (repo / "train.py").write_text(NAN_LATER)
    git(repo, "commit", "-qam", "train longer, no clipping", author="coordinator")
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None, record_session=False)
    try:
        record = engine.launch("fusion")
        drive(engine, lambda: (engine.store.load(record.id).changes_since_good or {}).get("reason", "").startswith(
            "diagnosed"), timeout=120)
        live = engine.store.load(record.id)
        assert live.status == "running"  # observed while it goes on, not only at its end
        obs = live.changes_since_good
        assert obs["commits"][0]["author"] == "coordinator" and obs["files"] == {"other": ["train.py"]}
        assert scratchpad_text(workspace).count("### Cross-agent observations") == 1
        engine.kill(record.id, grace=1)
        drive(engine, lambda: not engine.store.load(record.id).active, timeout=60)
        assert scratchpad_text(workspace).count("### Cross-agent observations") == 1  # once per run
    finally:
        engine.close()
