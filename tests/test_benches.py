"""The benches run on main: each calls urbanrun's own path and checks its answer against its baseline's
(the JSONL summary against a plain orjson loop's on torn lines; the TensorBoard points against protobuf's),
so a change of that path's signature (which broke one once, unseen, since no test ran it) or of its
answer fails here. No time is asserted."""

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


def test_the_tensorboard_bench_runs_and_its_readers_agree(tmp_path):
    """It writes a real SummaryWriter file and asserts that urbanrun's reader gives the library loop's
    points (and EventAccumulator's count), and that each hand-written piece agrees with the library."""
    env = dict(os.environ, SCALARS="2000", REPEATS="1", TMPDIR=str(tmp_path))
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "tensorboard_read.py")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "2,000 scalars" in done.stdout and "EventAccumulator / urbanrun TensorBoardReader = " in done.stdout
    assert "Event.FromString / numpy fixed-layout decode = " in done.stdout
