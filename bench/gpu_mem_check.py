"""For a machine with an NVIDIA GPU (run it whenever one is at hand; record what it showed):

    .venv/bin/python bench/gpu_mem_check.py [OUT_DIR]

Checks the `gpu_mem` contract against real hardware:
1. the demo trainer on CUDA writes `gpu_mem` (bytes, torch.cuda.max_memory_allocated()) in every
   step's point, equal to its own `mem_peak_gb`;
2. here NVML sees the process: the run's memory comes from NVML (source "nvml"), and its recorded
   peak is at least what torch allocated (NVML also counts the CUDA context and the cache);
3. the same events with NVML's per-process figures blanked, as WDDM reports them (N/A), reduced
   again: the run's peak is then its own highest `gpu_mem`, source "run".
Prints the figures; exit 0 when every check passed.
"""

import dataclasses
import json
import sys
import time
from pathlib import Path

from urbanrun.engine.core.config import load_config
from urbanrun.engine.core.events import GpuSample
from urbanrun.engine.core.state import State
from urbanrun.engine.session.loop import Engine

ROOT = Path(__file__).resolve().parent.parent
MIB = 2 ** 20


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "gpu_mem_check_out")
    out.mkdir(parents=True, exist_ok=True)
    engine = Engine(load_config(ROOT / "config.toml"), out / "runs", record_session=False)
    record = engine.launch("cones", {"device": "cuda", "epochs": "3", "cones": "32"})
    events, deadline = [], time.monotonic() + 300
    while time.monotonic() < deadline:
        events += engine.poll()
        run = engine.state.runs.get(record.id)
        if run is not None and run.status not in ("starting", "running"):
            break
        time.sleep(0.2)
    events += engine.poll()
    engine.close()
    run = engine.state.runs[record.id]
    saved = engine.store.load(record.id)
    metrics = engine.store.run_dir(record.id) / "metrics.jsonl"
    text = metrics.read_text() if metrics.exists() else ""
    points = [json.loads(line) for line in text.splitlines() if '"gpu_mem"' in line]
    reported = [p["gpu_mem"] for p in points]
    failures = []
    if saved.status != "exited":
        failures.append(f"the run ended {saved.status}: {(engine.store.run_dir(record.id) / 'output.log').read_text()[-2000:]}")
    if not reported or min(reported) <= 0:
        failures.append(f"no positive gpu_mem in metrics.jsonl ({len(reported)} points)")
    if any(abs(p["gpu_mem"] - p["mem_peak_gb"] * 2 ** 30) > 1 for p in points):
        failures.append("gpu_mem differs from mem_peak_gb")
    if run.gpu_mem_source != "nvml" or not saved.gpu_mem_peak_mb:
        failures.append(f"NVML's per-process figure not used here (source {run.gpu_mem_source!r})")
    elif reported and saved.gpu_mem_peak_mb < max(reported) / MIB:
        failures.append(f"NVML peak {saved.gpu_mem_peak_mb} MiB < torch's {max(reported) / MIB:.1f} MiB")

    wddm = State()  # the same events as a WDDM GPU would have given them
    for event in events:
        if isinstance(event, GpuSample):
            event = dataclasses.replace(event, processes=tuple({**p, "used_mem": None} for p in event.processes))
        wddm.apply(event)
    blind = wddm.runs[record.id]
    if reported and (blind.gpu_mem_source != "run" or blind.gpu_mem_peak != max(reported)):
        failures.append(f"with NVML blind: source {blind.gpu_mem_source!r}, peak {blind.gpu_mem_peak / MIB:.1f} MiB, "
                        f"reported {max(reported) / MIB:.1f} MiB")

    print(f"run {record.id}: {saved.status}, {len(reported)} points with gpu_mem")
    print(f"torch max_memory_allocated: {max(reported or [0]) / MIB:.1f} MiB (gpu_mem)")
    print(f"NVML per-process peak:      {saved.gpu_mem_peak_mb} MiB (source {run.gpu_mem_source})")
    print(f"NVML blanked (WDDM):        {blind.gpu_mem_peak / MIB:.1f} MiB (source {blind.gpu_mem_source})")
    for failure in failures:
        print("FAIL:", failure)
    print("ok" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
