"""Sampling cost: CPU time per telemetry sample (GPU readings tied to runs + host figures) with
the recorded 8-GPU source and 4 live runs, and, on a machine with an NVIDIA GPU, the real NVML
beside `nvidia-smi --query-gpu=... --format=csv` called once per sample (the baseline)."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from urbanrun.engine.gpu.recorded import RecordedGpuSource  # noqa: E402
from urbanrun.engine.gpu.sources import annotate  # noqa: E402
from urbanrun.engine.gpu.host import HostSampler  # noqa: E402
from urbanrun.engine.runs.proctree import create_time_of  # noqa: E402
from urbanrun.engine.gpu.nvml import NvmlSource  # noqa: E402

SAMPLES = int(os.environ.get("SAMPLES", 200))
QUERY = "index,memory.used,memory.total,utilization.gpu,temperature.gpu,power.draw"


def cost(source, runs) -> float:
    host = HostSampler(interval=0.0)
    source.sample(0.0)
    cpu0 = time.process_time()
    for i in range(SAMPLES):
        reading = source.sample(1e6 + i * 5.0)  # every field due each time: the worst case
        if reading:
            annotate(list(reading[2]), host.pids)
        host.sample(float(i), runs)
    return (time.process_time() - cpu0) / SAMPLES


def main():
    sleepers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(4)]
    runs = {f"run{i}": (p.pid, create_time_of(p.pid)) for i, p in enumerate(sleepers)}
    try:
        recorded = RecordedGpuSource(ROOT / "tests/fixtures/gpus/a100_8gpu.jsonl", speed=1e9)
        per = cost(recorded, runs)
        print(f"recorded 8-GPU source + host, 4 runs: {per * 1000:.2f} ms CPU a sample = "
              f"{per * 100:.2f}% of one core at 1 s intervals (goal <= 1%)")
        nvml = NvmlSource()
        if not nvml.start().get("available"):
            print(f"real NVML: {nvml.status['reason']} — run this on a GPU machine for the NVML figure")
            return
        per = cost(nvml, runs)
        print(f"real NVML ({nvml.status['count']} GPU) + host, 4 runs: {per * 1000:.2f} ms CPU a sample = {per * 100:.2f}%")
        if shutil.which("nvidia-smi"):
            t = time.perf_counter()
            for _ in range(20):
                subprocess.run(["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv"], capture_output=True)
            smi = (time.perf_counter() - t) / 20
            print(f"nvidia-smi --query-gpu once a sample: {smi * 1000:.1f} ms wall a call ({smi / per:.0f}x urbanrun's CPU)")
    finally:
        for p in sleepers:
            p.kill()


if __name__ == "__main__":
    main()
