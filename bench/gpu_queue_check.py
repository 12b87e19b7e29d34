"""For a machine with an NVIDIA GPU: two queued demo runs admitted one after the other.

    .venv/bin/python bench/gpu_queue_check.py [RUNS_DIR]

Each run asks the queue for 60% of GPU 0's memory, so the second cannot be admitted while the
first's promise stands (its memory is not visible in NVML for the first seconds: a free-memory
check alone would admit both). Prints the timeline (queued, reason, admitted, ended) and exits 0
when the second started only after the first ended and both ran on CUDA with CUDA_VISIBLE_DEVICES
set. Uses only the CLI with --json, as an agent would.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def urbanrun(*args: str, runs: Path) -> dict | list:
    out = subprocess.run([sys.executable, "-m", "urbanrun.engine.cli", "--runs-dir", str(runs), *args, "--json"],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        sys.exit(f"urbanrun {' '.join(args)} failed ({out.returncode}): {out.stdout}{out.stderr}")
    return json.loads(out.stdout)


def main() -> int:
    runs = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="urbanrun-queue-"))
    gpus = urbanrun("gpus", runs=runs)
    gpu0 = (gpus.get("gpus") if isinstance(gpus, dict) else gpus)[0]
    need = round(0.6 * gpu0["mem_total"] / 1e9, 1)
    print(f"GPU 0: {gpu0.get('name')}, {gpu0['mem_total'] / 1e9:.1f} GB; each run asks for {need} GB")
    sets = ["--set", "device=cuda", "--set", "epochs=20", "--set", "cones=96"]
    ids = [urbanrun("launch", "cones", "--queue", "--mem", str(need), *sets, runs=runs)["id"] for _ in range(2)]
    seen: dict[str, str] = {}
    deadline = time.time() + 900
    while time.time() < deadline:
        for run_id in ids:
            r = urbanrun("show", run_id, runs=runs)
            r = r.get("run", r)
            line = f"{r['status']}" + (f" #{r.get('queue_position')}: {r.get('queue_reason')}" if r["status"] == "queued" else
                                      f" on GPU {r.get('gpus')}")
            if seen.get(run_id) != line:
                seen[run_id] = line
                print(f"{time.strftime('%H:%M:%S')} {run_id}: {line}", flush=True)
        records = [urbanrun("show", i, runs=runs) for i in ids]
        records = [r.get("run", r) for r in records]
        if all(r["status"] not in ("queued", "starting", "running") for r in records):
            break
        time.sleep(1)
    first, second = records
    ok = (first["status"] == second["status"] == "exited" and second["started"] >= first["ended"]
          and first["gpus"] == second["gpus"] == [0])
    for r in records:
        log = (Path(r["run_dir"]) / "output.log").read_text(errors="replace")
        ok &= "cuda" in log.lower()
    print("PASS: admitted one after the other" if ok else "FAIL: see the timeline above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
