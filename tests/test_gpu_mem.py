"""GPU memory where NVML cannot see processes (WDDM on every GeForce card under Windows, MIG,
containers): a run's own `gpu_mem` (bytes, in metrics.jsonl) stands in for NVML's per-process
figure in the GPU column, the run's peak and the memory advisor; NVML's figure wins when it has one."""

from __future__ import annotations

import json
import time

from conftest import SCRIPTS, drive, release, wait_for

from urbanrun.engine.core.config import load_config
from urbanrun.engine.core.events import GpuSample, MetricPoints, RunChanged
from urbanrun.engine.core.state import State
from urbanrun.engine.diagnosis import advisor
from urbanrun.engine.gpu.recorded import RecordedGpuSource
from urbanrun.engine.session.loop import Engine
from urbanrun.tui.runs_table import COLUMNS, RunsTable

GIB = 2 ** 30
RECIPE = f"""
[recipes.wddm]
command = ["{{python}}", "{SCRIPTS / 'torch_memory.py'}"]
[recipes.wddm.params.batch_size]
type = "int"
default = 16
flag = "--batch-size"
[recipes.wddm.params.gib]
type = "list"
item_type = "float"
default = [1.0, 3.0, 2.0]
positional = true
separator = " "
"""


def _sample(ts, pid_mem: dict[int, float | None], run_of: dict[int, str]) -> GpuSample:
    procs = tuple({"gpu": 0, "pid": pid, "type": "C", "used_mem": mem, "run_id": run_of.get(pid)}
                  for pid, mem in pid_mem.items())
    return GpuSample(ts=ts, gpus=({"index": 0, "util_gpu": 90, "mem_used": 20 * GIB},), processes=procs)


def test_the_reducer_uses_the_runs_figure_only_while_nvml_has_none():
    state = State()
    state.apply(RunChanged(ts=1, run={"id": "r", "status": "running"}))
    run = state.runs["r"]
    state.apply(_sample(2, {10: None}, {10: "r"}))  # WDDM: the process is listed, its memory N/A
    assert run.gpu_mem == 0 and run.gpu_mem_source == ""
    state.apply(MetricPoints(ts=3, run_id="r", points=({"step": 1, "gpu_mem": 2 * GIB},)))
    assert (run.gpu_mem, run.gpu_mem_peak, run.gpu_mem_source) == (2 * GIB, 2 * GIB, "run")
    state.apply(_sample(4, {10: None}, {10: "r"}))
    state.apply(_sample(5, {}, {}))  # a container: NVML lists no process at all
    assert run.gpu_mem == 2 * GIB  # the run's own figure stands
    for bad in (float("nan"), float("inf"), -5, True, "3G"):
        state.apply(MetricPoints(ts=6, run_id="r", points=({"step": 2, "gpu_mem": bad},)))
    assert run.gpu_mem == 2 * GIB and run.gpu_mem_peak == 2 * GIB
    state.apply(MetricPoints(ts=7, run_id="r", points=({"step": 3, "gpu_mem": 5 * GIB}, {"step": 4, "gpu_mem": 4 * GIB})))
    assert (run.gpu_mem, run.gpu_mem_peak) == (4 * GIB, 5 * GIB)
    assert list(run.gpu_mem_history.values) == [2 * GIB, 5 * GIB, 4 * GIB]

    state.apply(_sample(8, {10: 7 * GIB}, {10: "r"}))  # NVML sees it: NVML wins from now on
    state.apply(MetricPoints(ts=9, run_id="r", points=({"step": 5, "gpu_mem": 1 * GIB},)))
    assert (run.gpu_mem, run.gpu_mem_peak, run.gpu_mem_source) == (7 * GIB, 7 * GIB, "nvml")
    state.apply(_sample(10, {}, {}))  # gone from the GPU
    assert run.gpu_mem == 0


def _watch_to_the_end(workspace, tmp_path, used_mem):
    """Launch the wddm recipe; play a recording where NVML lists its process with `used_mem`; let the
    run end once it has been seen running with all its points and tied to its GPU process."""
    (workspace / "config.toml").write_text((workspace / "config.toml").read_text() + RECIPE)
    config = load_config(workspace / "config.toml")
    probe = Engine(config, record_session=False, gpu_source=None, host=False)
    record = probe.launch("wddm", {})
    path = probe.store.run_dir(record.id) / "child.json"
    child = wait_for(lambda: path.exists() and json.loads(path.read_text())["pid"], what="the run's child")
    recording = tmp_path / "wddm.jsonl"
    rows = [{"status": {"available": True, "kind": "ok", "driver": "552.44", "count": 1}},
            {"t": 0, "gpus": [{"index": 0, "name": "NVIDIA GeForce RTX 3090", "mem_total": 24 * GIB,
                               "mem_used": 6 * GIB, "util_gpu": 97}],
             "processes": [{"gpu": 0, "pid": child, "type": "C", "used_mem": used_mem}]}]
    recording.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    engine = Engine(config, record_session=False, gpu_source=RecordedGpuSource(recording))
    engine.host.interval = 0.1  # the host sample ties processes to runs
    seen_running, table = [], RunsTable()
    gpu_column = [key for key, _ in COLUMNS].index("gpu")

    def watched() -> bool:
        run = engine.state.runs.get(record.id)
        if run is None or run.status != "running" or not run.gpu_mem:
            return False
        seen_running.append(table._cells(engine.state, record.id, time.time())[gpu_column])
        tied = any(p["pid"] == child and p.get("run_id") == record.id for p in engine.state.gpu_processes)
        return tied and run.metrics.get("loss") is not None and run.metrics["loss"].count == 3

    drive(engine, watched)
    release(engine.store.run_dir(record.id))
    drive(engine, lambda: engine.state.runs[record.id].status not in ("running", "starting"))
    return engine, record.id, seen_running, config


def test_a_wddm_run_gets_its_gpu_column_peak_and_advice_from_its_own_figure(workspace, tmp_path):
    engine, run_id, seen_running, config = _watch_to_the_end(workspace, tmp_path, used_mem=None)
    run = engine.state.runs[run_id]
    assert run.status == "exited"
    assert seen_running and set(seen_running) <= {"1.0G", "3.0G", "2.0G"}  # the GPU column, live
    assert run.gpu_mem_peak == 3 * GIB and run.gpu_mem_source == "run"
    saved = engine.store.load(run_id)
    assert saved.gpu_mem_peak_mb == 3072.0  # the run's peak, kept in its record
    recipe = config.recipe("wddm")
    assert advisor.history(engine.store, recipe, "batch_size") == [(16.0, 3 * GIB / advisor.GB)]

    engine.close()


def test_nvmls_own_figure_wins_when_it_has_one(workspace, tmp_path):
    engine, run_id, _, _ = _watch_to_the_end(workspace, tmp_path, used_mem=5 * GIB)
    run = engine.state.runs[run_id]
    assert run.gpu_mem_peak == 5 * GIB and run.gpu_mem_source == "nvml"
    assert engine.store.load(run_id).gpu_mem_peak_mb == 5120.0
    engine.close()


def test_the_advisor_reads_gpu_mem_of_a_run_nobody_watched(workspace):
    """A run that ended while no urbanrun was open has no recorded peak: the advisor reads the
    highest `gpu_mem` in its metrics.jsonl (and the older `mem_peak_gb`, in GiB)."""
    (workspace / "config.toml").write_text((workspace / "config.toml").read_text() + RECIPE)
    config = load_config(workspace / "config.toml")
    engine = Engine(config, record_session=False, gpu_source=None, host=False)
    recipe = config.recipe("wddm")
    for batch, lines in ((8, ['{"step": 1, "gpu_mem": 1073741824}', '{"step": 2, "gpu_mem": 2147483648}', "not json"]),
                         (32, ['{"step": 1, "mem_peak_gb": 6.0}', '{"step": 2, "gpu_mem": NaN}'])):
        record = engine.launch("wddm", {"batch_size": str(batch), "gib": "0"})
        release(engine.store.run_dir(record.id))
        wait_for(lambda: engine.store.read_exit_status(record.id), what="the run to end")
        (engine.store.run_dir(record.id) / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    points = sorted(advisor.history(engine.store, recipe, "batch_size"))
    assert points == [(8.0, 2 * GIB / advisor.GB), (32.0, 6 * GIB / advisor.GB)]
    engine.close()
