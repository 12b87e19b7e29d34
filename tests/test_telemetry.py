"""GPU and host telemetry. No GPU here: the absence is a state with its reason. Recorded NVML
readings (the hardware boundary) drive the rest: nvidia-smi style output, runs tied to GPU
processes, the peak in the run record; NVML's own error classes give the failure states."""

from __future__ import annotations

import itertools
import json
import time
from types import SimpleNamespace

import pynvml
import pytest

from urbanrun.engine.core.config import load_config
from urbanrun.engine.session.loop import Engine
from urbanrun.engine.gpu.smi_format import query_csv
from urbanrun.engine.gpu.recorded import RecordedGpuSource
from urbanrun.engine.gpu.nvml import NvmlSource, describe_init_error

from conftest import ROOT, cli, drive, release, wait_for

FIX = ROOT / "tests" / "fixtures" / "gpus"


def test_no_gpu_here_is_a_state_not_a_crash(workspace):
    proc = cli("gpus", cwd=workspace)
    assert proc.returncode == 0 and "no NVIDIA GPU found" in proc.stdout
    query = cli("gpus", "--query-gpu=memory.used,memory.total", "--format=csv", cwd=workspace)
    assert query.returncode == 1 and query.stdout == "" and "no NVIDIA GPU found" in query.stderr
    engine = Engine(load_config(workspace / "config.toml"), record_session=False)
    engine.poll()
    assert engine.state.gpu_status["available"] is False
    assert "no NVIDIA GPU found" in engine.state.gpu_status["reason"]


@pytest.mark.parametrize("error, kind, words", [
    (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "no_driver", "no NVIDIA GPU found"),
    (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "no_driver", "driver is not loaded"),
    (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "nvml_mismatch", "Driver/library version mismatch"),
    (pynvml.NVML_ERROR_NO_PERMISSION, "permission", "no permission"),
])
def test_nvml_init_errors_become_states(error, kind, words):
    status = describe_init_error(pynvml, pynvml.NVMLError(error))
    assert status["available"] is False and status["kind"] == kind and words in status["reason"]


def test_recorded_8_gpu_node_in_nvidia_smi_layout(workspace, monkeypatch):
    monkeypatch.setenv("URBANRUN_GPU_RECORDING", str(FIX / "a100_8gpu.jsonl"))
    out = cli("gpus", "--query-gpu=index,name,memory.used,memory.total,utilization.gpu,temperature.gpu,"
                      "power.draw,power.limit,fan.speed,pstate", "--format=csv", cwd=workspace, check=True).stdout
    lines = out.splitlines()
    assert lines[0] == ("index, name, memory.used [MiB], memory.total [MiB], utilization.gpu [%], temperature.gpu, "
                        "power.draw [W], power.limit [W], fan.speed [%], pstate")
    last = json.loads((FIX / "a100_8gpu.jsonl").read_text().splitlines()[-1])
    g0 = last["gpus"][0]
    assert lines[1] == (f"0, NVIDIA A100-SXM4-80GB, {g0['mem_used'] // 2**20} MiB, 81920 MiB, {g0['util_gpu']} %, "
                        f"{g0['temp']}, {g0['power_w']:.2f} W, 400.00 W, [N/A], P0")
    assert len(lines) == 9
    bare = cli("gpus", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits", cwd=workspace).stdout
    assert bare.splitlines()[0] == f"0, {g0['mem_used'] // 2**20}"
    table = cli("gpus", cwd=workspace, check=True).stdout
    assert "Driver Version: 550.90.07" in table and "CUDA Version: 12.4" in table
    assert table.count("NVIDIA A100-SXM4-80GB") == 8 and "MiB / 81920MiB" in table
    assert "(not on this host)" in table  # the recording's pids are another machine's
    as_json = json.loads(cli("gpus", "--json", cwd=workspace, check=True).stdout)
    assert len(as_json["gpus"]) == 8 and as_json["status"]["driver"] == "550.90.07"


def test_unknown_query_field_and_bad_format(workspace, monkeypatch):
    monkeypatch.setenv("URBANRUN_GPU_RECORDING", str(FIX / "rtx3090_1gpu.jsonl"))
    bad = cli("gpus", "--query-gpu=memory.usd", "--format=csv", cwd=workspace)
    assert bad.returncode == 2 and 'Field "memory.usd" is not a valid field to query' in bad.stderr
    bad = cli("gpus", "--query-gpu=index", "--format=tsv", cwd=workspace)
    assert bad.returncode == 2 and "is not a valid format" in bad.stderr


def test_gpu_processes_are_tied_to_runs_and_the_peak_lands_in_the_record(workspace, tmp_path):
    config = load_config(workspace / "config.toml")
    probe = Engine(config, record_session=False, gpu_source=None, host=False)
    record = probe.launch("held", {"code": "0"})  # it runs until the recording has been played
    path = probe.store.run_dir(record.id) / "child.json"
    child = wait_for(lambda: path.exists() and json.loads(path.read_text())["pid"], what="the run's child")
    gib = 2 ** 30
    recording = tmp_path / "gpu.jsonl"
    gpu = {"index": 0, "name": "NVIDIA GeForce RTX 3090", "mem_total": 24 * gib, "util_gpu": 90, "mem_used": 0}
    rows = [{"status": {"available": True, "kind": "ok", "driver": "535.183.01", "count": 1}}]
    for t, mem in enumerate([1, 3, 2]):
        rows.append({"t": t * 0.3, "gpus": [{**gpu, "mem_used": mem * gib}],
                     "processes": [{"gpu": 0, "pid": child, "type": "C", "used_mem": mem * gib, "sm_util": 80},
                                   {"gpu": 0, "pid": 999_999_999, "type": "C", "used_mem": gib}]})
    recording.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    engine = Engine(config, record_session=False, gpu_source=RecordedGpuSource(recording))
    engine.host.interval = 0.1
    # the polls keep a clock of their own, 0.1 s apart: each reading is played in turn, however late a
    # poll runs on a loaded machine (on the wall clock, a late poll skips to the latest reading)
    clock = itertools.count(time.time(), 0.1)
    for _ in range(10):
        engine.poll(next(clock))
    release(probe.store.run_dir(record.id))
    drive(engine, lambda: engine.state.runs[record.id].status != "running")
    run = engine.state.runs[record.id]
    assert run.gpu_mem_peak == 3 * gib and run.gpu_util_mean == 80
    mapped = [p for p in engine.state.gpu_processes if p["pid"] == child]
    assert mapped and mapped[0]["run_id"] == record.id
    saved = engine.store.load(record.id)
    assert saved.gpu_mem_peak_mb == 3072.0 and saved.gpu_util_mean == 80.0
    notices = [n.text for n in engine.state.notices if "exist on no local process" in n.text]
    assert len(notices) == 1 and "999999999" in notices[0]
    assert run.host.get("procs", 0) >= 1 or run.status != "running"


def test_host_sample_walks_the_process_table_again_only_when_a_tree_may_have_changed(workspace, monkeypatch):
    """A real run whose tree changes on request. Between walks of the process table (every
    tree_interval) each sample reads only the runs' known members; a member that ends, a GPU process
    the last walk did not see, or other runs make the next sample walk again; a GPU process the last
    walk saw outside every tree (another user's) does not."""
    import os

    from urbanrun.engine.gpu import host
    from urbanrun.engine.gpu.host import HostSampler

    engine = Engine(load_config(workspace / "config.toml"), record_session=False, gpu_source=None, host=False)
    record = engine.launch("spawn_on_request")
    run_dir = engine.store.run_dir(record.id)
    try:
        wait_for(lambda: "waiting" in (run_dir / "output.log").read_text(), what="the run's script")
        saved = engine.store.load(record.id)
        runs = {record.id: (saved.pid, saved.pid_create_time, run_dir)}
        walks = []
        real_table = host.parent_pids
        monkeypatch.setattr(host, "parent_pids", lambda: walks.append(1) or real_table())
        sampler, clock = HostSampler(interval=0.0, tree_interval=1e9), itertools.count(1.0)

        def procs() -> int:
            return sampler.sample(next(clock), runs)["runs"][record.id]["procs"]

        before = procs()
        assert before >= 2 and procs() == before and len(walks) == 1  # babysitter and script; walked once
        (run_dir / "spawn").write_text("")
        child = int(wait_for(lambda: (run_dir / "child.txt").exists() and (run_dir / "child.txt").read_text(),
                             what="the run's child"))
        assert procs() == before and len(walks) == 1  # not walked again: the new child is not seen yet
        sampler.note_gpu_pids([os.getpid()])  # alive at the walk, in no tree: not a run's, no walk
        assert procs() == before and len(walks) == 1
        sampler.note_gpu_pids([child])  # a GPU process the walk did not see: the next sample walks
        assert procs() == before + 1 and len(walks) == 2 and sampler.pids[child] == record.id
        sampler.note_gpu_pids([child])  # known now
        (run_dir / "end_child").write_text("")
        wait_for(lambda: (run_dir / "child.txt").read_text() == "ended", what="the child's end")
        assert procs() == before and len(walks) == 2  # the ended member is left out at once...
        assert procs() == before and len(walks) == 3  # ...and the table walked again at the next sample
        assert sampler.sample(next(clock), {})["runs"] == {} and len(walks) == 4  # other runs: walked again
        timed = HostSampler(interval=0.0, tree_interval=5.0)
        walks.clear()
        for now in (100.0, 101.0, 104.0, 105.0):  # walked at 100, then once tree_interval has passed
            timed.sample(now, runs)
        assert len(walks) == 2
    finally:
        release(run_dir)
        drive(engine, lambda: not engine.store.load(record.id).active)
        engine.close()


class FakeNvml:
    """The hardware boundary: pynvml's device functions answering for two GPUs, the second of
    which falls off the bus; real pynvml error classes."""

    def __init__(self):
        self.calls: dict[str, int] = {}
        self.lost_after = 3

    def install(self, monkeypatch):
        def fn(name, result):
            def call(*args):
                self.calls[name] = self.calls.get(name, 0) + 1
                if args and args[0] == 1 and self.calls.get("nvmlDeviceGetUtilizationRates", 0) > self.lost_after:
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
                return result(*args) if callable(result) else result
            monkeypatch.setattr(pynvml, name, call)

        def unsupported(*_):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

        def no_v3(*_):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)

        fn("nvmlInit", None)
        fn("nvmlSystemGetDriverVersion", "525.60.13")
        fn("nvmlSystemGetCudaDriverVersion_v2", 12000)
        fn("nvmlDeviceGetCount", 2)
        fn("nvmlDeviceGetHandleByIndex", lambda i: i)
        fn("nvmlDeviceGetName", lambda h: f"NVIDIA A100 #{h}")
        fn("nvmlDeviceGetUUID", lambda h: f"GPU-{h}")
        fn("nvmlDeviceGetPciInfo", lambda h: SimpleNamespace(busId=f"00000000:0{h}:00.0"))
        fn("nvmlDeviceGetUtilizationRates", lambda h: SimpleNamespace(gpu=50 + h, memory=10))
        fn("nvmlDeviceGetMemoryInfo", lambda h: SimpleNamespace(used=2 ** 30, total=80 * 2 ** 30, free=79 * 2 ** 30))
        fn("nvmlDeviceGetPowerUsage", 250_000)
        fn("nvmlDeviceGetTemperature", 60)
        fn("nvmlDeviceGetClockInfo", 1410)
        fn("nvmlDeviceGetEnforcedPowerLimit", 400_000)
        fn("nvmlDeviceGetFanSpeed", unsupported)
        fn("nvmlDeviceGetPerformanceState", 0)
        fn("nvmlDeviceGetCurrentClocksEventReasons", 0)
        fn("nvmlDeviceGetTotalEccErrors", unsupported)
        fn("nvmlDeviceGetComputeRunningProcesses_v3", no_v3)
        fn("nvmlDeviceGetComputeRunningProcesses_v2", lambda h: [SimpleNamespace(pid=4321, usedGpuMemory=2 ** 30)])
        fn("nvmlDeviceGetGraphicsRunningProcesses_v3", no_v3)
        fn("nvmlDeviceGetGraphicsRunningProcesses_v2", [])
        fn("nvmlDeviceGetProcessUtilization", lambda h, ts: [SimpleNamespace(pid=4321, smUtil=77, timeStamp=5)])


def test_nvml_source_caches_fields_handles_na_v2_and_a_lost_gpu(monkeypatch):
    fake = FakeNvml()
    fake.install(monkeypatch)
    source = NvmlSource()
    status, _, _ = source.sample(0.0)
    assert status["available"] and status["driver"] == "525.60.13" and status["cuda"] == "12.0"
    _, gpus, procs = source.sample(0.0)
    g0 = gpus[0]
    assert g0["fan"] is None and g0["ecc_uncorrected"] is None  # not supported: N/A, not an error
    assert g0["power_w"] == 250.0 and g0["power_limit_w"] == 400.0 and g0["pstate"] == "P0"
    assert procs[0]["pid"] == 4321 and procs[0]["sm_util"] == 77 and source._proc_version == "v2"
    assert query_csv("index,fan.speed,power.draw", "csv,noheader", status, gpus) == "0, [N/A], 250.00 W\n1, [N/A], 250.00 W"
    before = dict(fake.calls)
    for t in (0.2, 0.5, 0.9):  # inside the 1 s interval: no NVML call at all
        assert source.sample(t) is None
    assert fake.calls == before
    for t in range(1, 6):
        _, gpus, _ = source.sample(float(t))
    assert gpus[1].get("lost") and not gpus[0].get("lost") and gpus[0]["util_gpu"] == 50
    slow_calls = fake.calls["nvmlDeviceGetEnforcedPowerLimit"]
    assert slow_calls <= 2 * 2  # slow fields: at t=0 and t=5 only, per GPU


def test_host_sample_walks_the_process_table_once_for_all_runs(workspace, monkeypatch):
    """Two real process trees (children and grandchildren): each run's figures cover its whole
    tree, and one sample reads the process table once, not once per run."""
    import psutil

    from urbanrun.engine.gpu import host
    from urbanrun.engine.gpu.host import HostSampler

    engine = Engine(load_config(workspace / "config.toml"), record_session=False, gpu_source=None, host=False)
    records = [engine.launch("forker"), engine.launch("forker")]
    try:
        for record in records:  # main, 2 children, 2 grandchildren, the orphan's parent gone
            pids = engine.store.run_dir(record.id) / "pids.txt"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (not pids.exists() or pids.read_text().count("grandchild") < 2):
                time.sleep(0.1)
        runs = {r.id: (engine.store.load(r.id).pid, engine.store.load(r.id).pid_create_time,
                        engine.store.run_dir(r.id)) for r in records}

        def trees() -> dict:
            return {run_id: 1 + len(psutil.Process(pid).children(recursive=True)) for run_id, (pid, *_) in runs.items()}

        real_table = host.parent_pids
        for _ in range(10):  # the orphan's parent exits on its own: compare while the trees hold still
            walks = []
            monkeypatch.setattr(host, "parent_pids", lambda: walks.append(1) or real_table())
            expected = trees()
            sample = HostSampler(interval=0.0).sample(time.time(), runs)
            monkeypatch.setattr(host, "parent_pids", real_table)
            if trees() == expected:
                break
            time.sleep(0.5)
        assert len(walks) == 1
        assert {run_id: figures["procs"] for run_id, figures in sample["runs"].items()} == expected
        assert all(n >= 5 for n in expected.values())  # babysitter, main, children, grandchildren
        assert all(figures["rss"] > 0 for figures in sample["runs"].values())
    finally:
        for record in records:
            engine.kill(record.id, force=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(engine.store.load(r.id).active for r in records):
            engine.poll()
            time.sleep(0.1)
        engine.close()
