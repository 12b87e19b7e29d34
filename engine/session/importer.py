"""`urbanrun import PATH`: external runs found on disk (a lightning_logs/, wandb/ or TensorBoard
folder, any metrics file) become read-only runs, so a new run can be compared with last month's."""

from __future__ import annotations

import re
import time
from pathlib import Path

from urbanrun.engine.core.errors import UserError
from urbanrun.engine.core.files import path_stat, short
from urbanrun.engine.metrics.sources import discover
from urbanrun.engine.runs.store import RunRecord, RunStore


def import_path(store: RunStore, path: str, name: str | None = None) -> RunRecord:
    target = Path(path).expanduser()
    if path_stat(target, "import path") is None:
        raise UserError(f"{short(path)} does not exist; give a folder or metrics file to import.")
    found = discover(target, include_logs=target.is_file())  # refuses a FIFO or a device
    if not found:
        raise UserError(f"no metrics files under {short(path)} (looked for lightning_logs CSVs, TensorBoard events, "
                        f"W&B offline runs, JSONL and loss-history CSVs).")
    label = re.sub(r"[^A-Za-z0-9_-]+", "-", name or target.resolve().name).strip("-") or "external"
    times = [p.stat().st_mtime for p, _ in found]
    files = [str(p.resolve()) for p, _ in found]
    record = RunRecord(id=store.free_run_id(f"import-{label}"), recipe="import", argv=[], cwd=str(target.resolve()),
                       status="imported", backend="import", created=time.time(), started=min(times) - 1,
                       ended=max(times), metrics_files=files)
    store.create(record)  # a read-only or full runs folder: one sentence, no folder left
    return record
