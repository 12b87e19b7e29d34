"""For a machine with an NVIDIA GPU (run it whenever one is at hand; record what it showed):

    .venv/bin/python bench/gpu_check.py [OUT_DIR]

1. launches the demo trainer on CUDA (bigger settings so the GPU is busy for ~40 s);
2. while it runs, compares `urbanrun gpus --query-gpu=...` with `nvidia-smi --query-gpu=...`
   field by field, five times: memory must be equal (within 1%: the two read at slightly
   different moments), utilisation within sampling noise (20 points);
3. checks the run's GPU process is tied to the run, and the run record gets its peak memory;
4. records the session (every event) and copies it to OUT_DIR as a replay fixture, with the
   NVML readings as a recorded-GPU fixture. Exit 0 when every check passed.
"""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from urbanrun.engine.core.config import load_config  # noqa: E402
from urbanrun.engine.session.loop import Engine  # noqa: E402
from urbanrun.engine.core.events import GpuSample, GpuStatus  # noqa: E402

FIELDS = "index,memory.used,memory.total,utilization.gpu,temperature.gpu,power.draw"


def smi(args):
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def compare(failures):
    ours = smi([sys.executable, "-m", "urbanrun.engine.cli", "gpus", f"--query-gpu={FIELDS}", "--format=csv,noheader,nounits"])
    theirs = smi(["nvidia-smi", f"--query-gpu={FIELDS}", "--format=csv,noheader,nounits"])
    print("urbanrun  :", ours.stdout.strip().replace("\n", " | "))
    print("nvidia-smi:", theirs.stdout.strip().replace("\n", " | "))
    for a, b in zip(ours.stdout.splitlines(), theirs.stdout.splitlines()):
        for name, x, y in zip(FIELDS.split(","), a.split(", "), b.split(", ")):
            try:
                x, y = float(x), float(y)
            except ValueError:
                if x != y:
                    failures.append(f"{name}: {x} vs {y}")
                continue
            tolerance = {"memory.used": max(0.01 * y, 64), "utilization.gpu": 20, "temperature.gpu": 3,
                         "power.draw": max(0.25 * y, 30)}.get(name, 0)
            if abs(x - y) > tolerance:
                failures.append(f"{name}: urbanrun {x} vs nvidia-smi {y}")


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "gpu_check_out")
    out.mkdir(parents=True, exist_ok=True)
    runs = out / "runs"
    engine = Engine(load_config(ROOT / "config.toml"), runs)
    record = engine.launch("cones", {"device": "cuda", "epochs": "40", "batch_size": "32", "cones": "61",
                                     "dims": "128,256,512"})
    print("launched", record.id)
    failures, checks = [], 0
    gpu_lines = []
    while engine.state.runs.get(record.id) is None or engine.state.runs[record.id].status == "running":
        for e in engine.poll():
            if isinstance(e, GpuStatus):
                gpu_lines.insert(0, json.dumps({"status": e.status}))
            elif isinstance(e, GpuSample):
                gpu_lines.append(json.dumps({"t": e.ts, "gpus": list(e.gpus), "processes": list(e.processes)}))
        run = engine.state.runs.get(record.id)
        if run and run.gpu_mem > 0 and checks < 5:
            compare(failures)
            checks += 1
        time.sleep(0.5)
    for _ in range(4):
        engine.poll()
        time.sleep(0.5)
    engine.close()
    run = engine.state.runs[record.id]
    saved = engine.store.load(record.id)
    print(f"run {record.id}: {saved.status} code {saved.exit_code}; GPU peak {saved.gpu_mem_peak_mb} MiB, "
          f"mean util {saved.gpu_util_mean}%")
    if saved.status != "exited":
        failures.append(f"the demo run ended {saved.status}: see {runs / record.id / 'output.log'}")
    if not saved.gpu_mem_peak_mb:
        failures.append("the run record got no GPU peak: its process was not tied to the run")
    if checks == 0:
        failures.append("no comparison ran: the run never showed GPU memory")
    shutil.copy(engine.recorder.path, out / "session_gpu_demo.jsonl")
    t0 = json.loads(gpu_lines[1])["t"] if len(gpu_lines) > 1 else 0
    with open(out / "nvml_recording.jsonl", "w") as fh:
        for line in gpu_lines:
            obj = json.loads(line)
            if "t" in obj:
                obj["t"] = round(obj["t"] - t0, 3)
            fh.write(json.dumps(obj) + "\n")
    print("saved", out / "session_gpu_demo.jsonl", "and", out / "nvml_recording.jsonl")
    print("FAILURES:" if failures else "all checks passed", *failures, sep="\n  ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
