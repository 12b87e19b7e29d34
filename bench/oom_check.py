"""For a machine with an NVIDIA GPU (run it whenever one is at hand; record what it showed):

    .venv/bin/python bench/oom_check.py [OUT_DIR]

Provokes a real CUDA OOM in the demo trainer (a huge batch of big cones), checks that urbanrun
diagnoses it as cuda_oom with a smaller-batch remedy, that OOM recovery relaunches with half the
batch (the cones recipe has oom_recovery = 3), and saves the real output as a fixture
(OUT_DIR/cuda_oom_real.log + .json) to put in tests/fixtures/errors/ as a "captured" one.
"""

import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from urbanrun.engine.core.config import load_config  # noqa: E402
from urbanrun.engine.session.loop import Engine  # noqa: E402


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "oom_check_out")
    out.mkdir(parents=True, exist_ok=True)
    engine = Engine(load_config(ROOT / "config.toml"), out / "runs")
    first = engine.launch("cones", {"device": "cuda", "epochs": "2", "cones": "61", "batch_size": "4096",
                                    "dims": "2048,4096,8192"})
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        engine.poll()
        runs = [engine.store.load(r) for r in engine.state.runs]
        if len(runs) >= 2 and all(not r.active for r in runs if r.parent == first.id):
            break
        time.sleep(0.5)
    engine.poll()
    engine.close()
    failures = []
    record = engine.store.load(first.id)
    kinds = [d["kind"] for d in record.diagnoses]
    print(f"first run: {record.status} code {record.exit_code}; diagnoses {kinds}; {record.diagnosis}")
    if "cuda_oom" not in kinds:
        failures.append(f"expected a cuda_oom diagnosis, got {kinds}")
    children = [engine.store.load(r) for r in engine.state.runs if engine.store.load(r).parent == first.id]
    if not children or children[0].params.get("batch_size") != 2048:
        failures.append("expected an OOM relaunch with batch_size 2048")
    else:
        print(f"relaunched as {children[0].id} with {children[0].recovery}: {children[0].status}")
    shutil.copy(engine.store.run_dir(first.id) / "output.log", out / "cuda_oom_real.log")
    (out / "cuda_oom_real.json").write_text(json.dumps({"exit_code": record.exit_code, "signal": record.signal,
                                                        "kind": "captured"}) + "\n")
    print("FAILURES:" if failures else "all checks passed", *failures, sep="\n  ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
