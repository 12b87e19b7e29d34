"""`urbanrun import PATH`: external runs found on disk (a lightning_logs/, wandb/ or TensorBoard
folder, any metrics file) become read-only runs, so a new run can be compared with last month's."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from urbanrun.engine.core.errors import UserError
from urbanrun.engine.core.text import not_utf8
from urbanrun.engine.core.files import path_stat, short
from urbanrun.engine.metrics.attribution import unit_of
from urbanrun.engine.metrics.run_files import read_run
from urbanrun.engine.metrics.sources import discover
from urbanrun.engine.runs.store import RunRecord, RunStore
from urbanrun.engine.session.run_end import keep_figures


def import_path(store: RunStore, path: str, name: str | None = None) -> list[RunRecord]:
    """One read-only run per training run found: each Lightning version_N, W&B run folder or
    TensorBoard folder is its own run (never one run with interleaved curves)."""
    if not path.strip():  # Path("") is ".", the current folder: not what was meant
        raise UserError("import needs a folder or metrics file (a lightning_logs, wandb or TensorBoard folder, a "
                        "JSONL or CSV file), not an empty name.")
    target = Path(path).expanduser()
    if path_stat(target, "import path") is None:
        raise UserError(f"{short(path)} does not exist; give a folder or metrics file to import.")
    found = discover(target, include_logs=target.is_file())  # refuses a FIFO or a device
    runs = os.path.realpath(store.root) + os.sep
    own = [p for p, _ in found if os.path.realpath(p).startswith(runs)]
    found = [(p, fmt) for p, fmt in found if not os.path.realpath(p).startswith(runs)]
    if own and not found:  # urbanrun's own runs are runs already: a copy would show each twice
        raise UserError(f"{short(path)} holds only urbanrun's own runs (in {store.root}), which `urbanrun ls --all` "
                        f"lists already; nothing to import.", code="already_imported")
    if not found:
        raise UserError(f"no metrics files under {short(path)} (looked for lightning_logs CSVs, TensorBoard events, "
                        f"W&B offline runs, JSONL and loss-history CSVs).")
    for p in (target.resolve(), *(p.resolve() for p, _ in found)):
        if (shown := not_utf8(str(p))) is not None:  # checked before any run is made: all or nothing
            raise UserError(f"{short(shown)} has a name that is not UTF-8 (shown as ?), which a run record (UTF-8 "
                            f"text) cannot hold; rename it, then import again.")
    units: dict[Path, list[Path]] = {}
    for p, _ in found:
        units.setdefault(unit_of(p), []).append(p)
    known = _imported(store)
    again = sorted({known[key] for key in (_files_key(paths) for paths in units.values()) if key in known})
    units = {unit: paths for unit, paths in units.items() if _files_key(paths) not in known}
    if not units:  # every run found is a run already: a second copy would show it twice in every comparison
        who = "that run reads" if len(again) == 1 else "those runs read"
        raise UserError(f"{short(path)} was already imported as {', '.join(again)}: nothing new there; {who} its "
                        f"files afresh when they change (`urbanrun status {again[0]}`).", code="already_imported")
    label = re.sub(r"[^A-Za-z0-9_-]+", "-", name or target.resolve().name).strip("-") or "external"
    records = []
    for unit, paths in sorted(units.items(), key=lambda item: _first_time(item[1])):
        part = "" if len(units) == 1 else "-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", unit.name).strip("-") or "run")
        times = [p.stat().st_mtime for p in paths]
        record = RunRecord(id=store.free_run_id(f"import-{label}{part}"), recipe="import", argv=[],
                           cwd=str(unit.resolve() if len(units) > 1 else target.resolve()), status="imported",
                           backend="import", created=time.time(), started=min(times) - 1, ended=max(times),
                           metrics_files=[str(p.resolve()) for p in paths])
        store.create(record)  # a read-only or full runs folder: one sentence, no folder left
        # its figures, read once: `ls` shows them as `status` does (never re-reading every import at each ls)
        keep_figures(store, record, read_run(store, record, time.time()))
        store.save(record)
        records.append(record)
    return records


def _files_key(paths) -> tuple[str, ...]:
    return tuple(sorted(os.path.realpath(p) for p in paths))  # never raises (Path.resolve does on a symlink loop)


def _imported(store: RunStore) -> dict[tuple[str, ...], str]:
    """The runs imported before, by the files they read: a training run found again is not new."""
    records, _ = store.load_all()
    return {_files_key(r.metrics_files): r.id for r in records if r.status == "imported" and r.metrics_files}


def _first_time(paths: list[Path]) -> float:
    return min(p.stat().st_mtime for p in paths)
