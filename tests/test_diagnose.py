"""Diagnoses on real and format fixtures (tests/fixtures/errors/README.md says which is which),
no false alarm on clean logs, trends (leak), the memory advisor, the OOM relaunch chain end to
end, a swallowed error marked failed, and the doctor/advise CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from urbanrun.engine.diagnosis.advisor import fit, largest_batch
from urbanrun.engine.core.config import DEFAULT_CONFIG, load_config
from urbanrun.engine.diagnosis.rules import diagnose
from urbanrun.engine.session.loop import Engine
from urbanrun.engine.diagnosis import trends

from conftest import cli, cli_json, drive

FIX = Path(__file__).parent / "fixtures"
ERRORS = FIX / "errors"


def _diagnose(name, params=None):
    status = json.loads((ERRORS / f"{name}.json").read_text())
    lines = (ERRORS / f"{name}.log").read_text(errors="replace").splitlines()
    return diagnose(lines, status["exit_code"], status["signal"], params=params or {})


@pytest.mark.parametrize("name, kind, remedy", [
    ("cuda_oom_new", "cuda_oom", "expandable_segments:True"),
    ("cuda_oom_old", "cuda_oom", "--set batch_size=16"),
    ("cuda_oom_capacty", "cuda_oom", "Gradient checkpointing"),
    ("device_mismatch", "device_mismatch", ".to(device)"),
    ("device_mismatch_new", "device_mismatch", ".to(device)"),
    ("pyg_edge_index_float", "edge_index_dtype", "edge_index.long()"),
    ("scatter_int64_old", "edge_index_dtype", "edge_index.long()"),
    ("pyg_edge_index_range", "edge_index_range", "data.validate"),
    ("device_assert", "device_assert edge_index_range", "CUDA_LAUNCH_BLOCKING=1"),
    ("nccl_timeout", "nccl", "NCCL_DEBUG=INFO"),
    ("torchrun_child_failed", "torchrun_child_failed", "rank 1"),
    ("nvml_mismatch", "nvml_mismatch", "reboot"),
    ("driver_too_old", "driver_too_old", "driver"),
    ("host_oom", "host_oom", "dmesg"),
    ("nan_loss", "nan_loss", "clip"),
    ("swallowed_error", "swallowed_error", "Re-raise"),
    ("shape_mismatch", "traceback", "deepest frame in your code"),
    ("interrupted", "interrupted", None),
])
def test_each_fixture_gets_its_kind_and_remedy(name, kind, remedy):
    """The whole list, not only the first: a bare exit status ("no error text") added to an
    explained failure would contradict it."""
    found = _diagnose(name, {"batch_size": 32})
    assert [d.kind for d in found] == kind.split()
    if remedy:
        assert any(remedy in r for r in found[0].remedies), found[0].remedies


def test_oom_facts_and_fragmentation():
    new = _diagnose("cuda_oom_new")[0]
    assert new.facts["tried"] == 2 * 2 ** 30 and new.facts["gpu"] == 0 and new.facts["fragmented"]
    assert "1.12 GiB free of 23.57 GiB" in new.summary
    old = _diagnose("cuda_oom_old")[0]
    assert not old.facts["fragmented"] and "512.00 MiB" in old.summary


def test_oom_remedies_offer_set_only_for_the_recipes_own_parameters():
    # launch refuses a --set of a name the recipe does not have: never advise one
    plain = _diagnose("cuda_oom_capacty", {"batch_size": 32})[0].remedies
    assert not any("--set grad_checkpoint" in r or "--set amp" in r for r in plain), plain
    assert any("torch.utils.checkpoint" in r for r in plain) and any("torch.autocast" in r for r in plain)
    demo = _diagnose("cuda_oom_capacty", {"batch_size": 32, "grad_checkpoint": False, "amp": False})[0].remedies
    assert any("--set grad_checkpoint=true" in r for r in demo) and any("--set amp=true" in r for r in demo)


def test_torchrun_names_the_root_cause_rank_and_its_error():
    d = _diagnose("torchrun_child_failed")[0]
    assert d.facts["rank"] == 1 and d.facts["exit_code"] == 1
    assert "loss went NaN on rank 1" in d.evidence[0]


def test_the_traceback_rule_points_at_the_users_frame():
    d = _diagnose("shape_mismatch")[0]
    assert "mat1 and mat2 shapes cannot be multiplied" in d.summary
    assert "site-packages" not in d.facts["file"]


@pytest.mark.parametrize("name, user_file, line, exception", [
    ("shape_mismatch_windows", r"C:\Users\wim\UrbanRepML\scripts\shape_mismatch.py", 5, "RuntimeError: mat1 and mat2"),
    ("bad_config_windows", r"C:\Users\wim\UrbanRepML\scripts\bad_config.py", 5, "json.decoder.JSONDecodeError"),
    ("bad_config", None, 5, "json.decoder.JSONDecodeError"),
])
def test_windows_library_frames_are_not_the_users(name, user_file, line, exception):
    """Windows prints C:\\...\\Lib\\site-packages\\torch\\... and its stdlib under ...\\Lib\\, with CRLF
    line ends: the deepest frame of the user's own code is still the one named, read as the doctor
    reads a log (splitlines) and as the live follower does (split on LF, the CR kept)."""
    raw = (ERRORS / f"{name}.log").read_bytes()
    assert (b"\r\n" in raw) == name.endswith("_windows")
    status = json.loads((ERRORS / f"{name}.json").read_text())
    text = raw.decode("utf-8")
    for lines in (text.splitlines(), text.split("\n")):
        d = diagnose(lines, status["exit_code"], status["signal"])[0]
        assert d.summary.startswith(exception)
        assert d.facts["file"] == user_file or (user_file is None and d.facts["file"].endswith("/bad_config.py"))
        assert d.facts["line"] == line and "\r" not in "".join(d.evidence)


@pytest.mark.parametrize("log, code", [(ERRORS / "clean_run.log", 0), (FIX / "logs" / "cones_demo_output.log", 0)])
def test_no_false_alarm_on_clean_runs(log, code):
    assert diagnose(log.read_text().splitlines(), code, None) == []


def _series(path):
    points = [json.loads(line) for line in path.read_text().splitlines()]
    return [p["step"] for p in points], [p["mem_allocated_gb"] * 2 ** 30 for p in points]


def test_a_non_finite_metric_other_than_the_loss_is_only_a_warning_naming_it():
    """An fp16 run's grad norm is inf on a skipped step: a warning that names the metric, not the
    NaN-loss error (which would tell an agent to kill a healthy run); a NaN in the loss is that error."""
    lines = (ERRORS / "clean_run.log").read_text().splitlines()
    inf, nan = float("inf"), float("nan")
    found = diagnose(lines, 0, None, metrics={"loss": [0.9, 0.7, 0.6], "grad_norm": [1.2, inf, 1.1]})
    assert [(d.kind, d.severity) for d in found] == [("nan_metric", "warning")]
    assert found[0].summary == "Metric 'grad_norm' became NaN/Inf" and found[0].facts == {"metrics": ["grad_norm"]}
    found = diagnose(lines, 0, None, metrics={"loss": [0.9, nan], "grad_norm": [1.2, inf]})
    assert [(d.kind, d.severity) for d in found] == [("nan_loss", "error")] and "(loss)" in found[0].summary


def test_leak_on_growing_memory_and_not_on_flat():
    found = trends.leak(*_series(FIX / "trends" / "mem_growing.jsonl"), capacity=24 * 2 ** 30, steps_per_s=2.0)
    assert found and found.kind == "leak"
    assert found.facts["slope_mb_per_step"] == pytest.approx(0.002 * 1024, rel=0.05)
    assert "runs out in" in found.summary
    assert trends.leak(*_series(FIX / "trends" / "mem_flat.jsonl"), capacity=24 * 2 ** 30) is None


def test_a_gpu_run_waiting_on_its_cpu_is_input_bound_and_offered_more_workers():
    """The engine's events for a live run on a GPU at 12 % while the run's processes use 100 % of a
    core: a data-loading bottleneck, its remedy a relaunch with more DataLoader workers; at 60 %
    GPU utilisation, or 40 % CPU, no such warning."""
    from urbanrun.engine.core.events import GpuSample, HostSample, MetricPoints, RunChanged
    from urbanrun.engine.core.state import State
    from urbanrun.engine.diagnosis.actions import next_actions
    from urbanrun.engine.diagnosis.run_doctor import live_diagnoses
    from urbanrun.engine.runs.store import RunRecord

    record = RunRecord(id="20260101-000000-cones-0000", recipe="cones", argv=["x"], cwd=".", status="running",
                       started=100.0, params={"workers": 0})
    recipe = load_config(DEFAULT_CONFIG).recipes["cones"]

    def look(util: float, cpu: float) -> list[dict]:
        state = State()
        state.apply_all([RunChanged(ts=100.0, run=record.to_dict()),
                         MetricPoints(ts=101.0, run_id=record.id, points=({"step": 1, "loss": 0.5, "gpu_mem": 6e9},)),
                         GpuSample(ts=101.0, gpus=({"index": 0, "util_gpu": util, "mem_total": 24e9},)),
                         HostSample(ts=101.0, host={"runs": {record.id: {"cpu": cpu, "rss": 1e9}}})])
        return [d.to_dict() for d in live_diagnoses(record, state.runs[record.id], 102.0, state.gpus)]

    bound = look(12.0, 100.0)
    assert [d["kind"] for d in bound] == ["input_bound"]
    assert next_actions(record, bound, recipe, [], "output.log")[0]["set"] == {"workers": 4}
    assert look(60.0, 100.0) == [] and look(12.0, 40.0) == []


def test_advisor_fit_and_largest_batch_within_one_step():
    fixed, per = 1.5, 0.144
    history = [(b, fixed + per * b) for b in (4, 8, 16, 32)]
    f, p = fit(history)
    assert f == pytest.approx(fixed) and p == pytest.approx(per)
    for free in (6.0, 11.0, 24.0, 40.0):
        suggested = largest_batch(f, p, free)
        brute = max(b for b in range(1, 1000) if fixed + per * b <= free * 0.9)
        assert abs(suggested - brute) <= 1
    assert largest_batch(60.0, 0.0 + 1e-9, 24.0) is None


def test_advise_cli_estimate_and_history(workspace):
    config = workspace / "config.toml"
    out = cli_json("advise", "cones", "--gpu-memory", "24", "--config", str(DEFAULT_CONFIG),
                   "--runs-dir", str(workspace / "runs"), cwd=workspace)
    assert out["basis"] == "estimate" and out["batch"] == int((24 * 0.9 - 0.3) // 0.144)
    full = cli_json("advise", "full-area-unet", "--gpu-memory", "24", "--config", str(DEFAULT_CONFIG), cwd=workspace)
    assert full["fits"] is False and "does not fit" in full["text"]
    runs = workspace / "runs"
    for i, (batch, peak_mb) in enumerate([(8, 3000), (16, 5000), (32, 9000)]):
        run = runs / f"20260101-00000{i}-cones-000{i}"
        run.mkdir(parents=True)
        run.joinpath("run.toml").write_text(
            f'id = "{run.name}"\nrecipe = "cones"\nargv = ["x"]\ncwd = "/"\nstatus = "exited"\n'
            f'gpu_mem_peak_mb = {peak_mb}\n[params]\nbatch_size = {batch}\n')
    hist = cli_json("advise", "cones", "--gpu-memory", "24", "--config", str(config), cwd=workspace)
    assert hist["basis"] == "history" and len(hist["points"]) == 3
    per = hist["per_sample_gb"]
    assert per == pytest.approx(250 * 2 ** 20 / 1e9, rel=0.01)
    assert hist["batch"] == int((24 * 0.9 - hist["fixed_gb"]) // per)




def test_advise_never_suggests_more_than_the_recipes_batch_maximum(workspace):
    with open(workspace / "config.toml", "a") as fh:
        fh.write('\n[recipes.capped]\ncommand = ["{python}", "-c", "pass"]\n'
                 'memory = { per_sample_gb = 0.144, fixed_gb = 0.3 }\n'
                 '[recipes.capped.params.batch_size]\ntype = "int"\ndefault = 8\nmin = 1\nmax = 32\n')
    assert cli_json("advise", "capped", "--gpu-memory", "80", cwd=workspace)["batch"] == 32  # 497 would fit
    assert cli_json("advise", "capped", "--gpu-memory", "2", cwd=workspace)["batch"] == int((2 * 0.9 - 0.3) // 0.144)


def test_oom_relaunch_chain_end_to_end(workspace):
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None, record_session=False)
    first = engine.launch("fake_oom")

    def finished():
        runs = engine.state.runs
        return any(r.status == "exited" for r in runs.values()) and len(runs) == 3

    drive(engine, finished)
    runs = sorted((engine.store.load(r) for r in engine.state.runs), key=lambda r: r.created)
    assert [r.params["batch_size"] for r in runs] == [32, 16, 8]
    assert [r.status for r in runs] == ["failed", "failed", "exited"]
    assert runs[0].id == first.id and runs[1].parent == first.id and runs[2].parent == runs[1].id
    assert runs[1].recovery == "batch_size 32 -> 16" and runs[2].recovery == "batch_size 16 -> 8"
    assert runs[0].diagnoses[0]["kind"] == "cuda_oom" and "out of memory" in runs[0].diagnosis
    assert any("relaunched as" in n.text for n in engine.state.notices)


def test_a_swallowed_error_marks_the_run_failed(workspace):
    engine = Engine(load_config(workspace / "config.toml"), gpu_source=None, record_session=False)
    record = engine.launch("swallow")
    drive(engine, lambda: engine.state.runs[record.id].status not in ("starting", "running"))
    saved = engine.store.load(record.id)
    assert saved.exit_code == 0 and saved.status == "failed"
    assert saved.diagnoses[0]["kind"] == "swallowed_error" and "batch_size (64)" in saved.diagnosis
    out = cli_json("doctor", record.id, cwd=workspace)
    assert out["diagnoses"][0]["kind"] == "swallowed_error"
    assert set(out["diagnoses"][0]) >= {"kind", "severity", "summary", "evidence", "remedies"}


def test_doctor_on_files_and_bad_targets(workspace):
    text = cli("doctor", str(ERRORS / "cuda_oom_new.log"), cwd=workspace, check=True).stdout
    assert "cuda_oom" in text and "expandable_segments" in text
    clean = cli("doctor", str(ERRORS / "clean_run.log"), cwd=workspace, check=True).stdout
    assert "no problem found" in clean
    bad = cli("doctor", "nope", cwd=workspace)
    assert bad.returncode == 2 and "neither a log file nor a run id" in bad.stderr
