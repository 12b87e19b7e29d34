"""The JSONL bench runs on main: it calls the CLI's own metrics path and checks that its summary equals a
plain orjson loop's on torn lines, so a change of that path's signature (which broke it once, unseen,
since no test ran it) or of its answer fails here. No time is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_jsonl_bench_runs_and_its_summaries_agree(tmp_path):
    env = dict(os.environ, LINES="3000", TORN="0.01", REPEATS="1", JSON_LOOP="0", TMPDIR=str(tmp_path))
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "jsonl_ingest.py")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "3,000 lines (" in done.stdout and "urbanrun / orjson loop = " in done.stdout
