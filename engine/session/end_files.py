"""Whether a finished run's files are still those it ended with. A run's figures and diagnoses are
stored in its record when it ends; `ls`, `status`, `show`, `wait`, `events` and `doctor` use them
while its output log and metrics files are unchanged (same size and modification time as at
the end), and re-read those files, saying so, once they changed (a hand edit, a leftover process
still writing): every view then gives the same answer, and none passes off stale figures."""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path

from urbanrun.engine.diagnosis.rules import Diagnosis
from urbanrun.engine.diagnosis.run_doctor import diagnose_run, merged
from urbanrun.engine.metrics.run_files import read_run
from urbanrun.engine.runs.store import METRICS_FILE, RunRecord, RunStore

GONE = [-1, 0]  # a file that did not exist (or could not be looked at)


def _files(store: RunStore, record: RunRecord) -> dict[str, str]:
    """name -> path: the run folder's files by their names there (a runs folder moved whole keeps
    them), and the recipe's extra metrics files named without a wildcard (a `**` pattern walked at
    every `ls` for every finished run would cost more than it tells)."""
    run_dir = store.run_dir(record.id)
    literal = [Path(p).expanduser() for p in record.metrics_files if not glob.has_magic(p)]
    paths = [store.log_path(record), run_dir / METRICS_FILE, *literal]
    return {str(p.relative_to(run_dir)) if p.is_relative_to(run_dir) else str(p): str(p) for p in paths}


def _stat(path: str) -> list[int]:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return GONE
    return [st.st_size, st.st_mtime_ns]


def fingerprint(store: RunStore, record: RunRecord) -> dict[str, list[int]]:
    """The run's files as they are now (taken when it ends): name -> [size, mtime in ns]."""
    return {name: _stat(path) for name, path in _files(store, record).items()}


def changes_since_end(store: RunStore, record: RunRecord) -> list[str] | None:
    """How the files differ from those the run ended with ([]: not at all); None when the record
    does not say (a run that ended before urbanrun kept this, an imported run)."""
    if record.active or not record.end_files:
        return None
    paths = _files(store, record)
    now = {name: _stat(path) for name, path in paths.items()}
    out = []
    for name in sorted(set(now) | set(record.end_files)):
        before, after, path = record.end_files.get(name, GONE), now.get(name, GONE), paths.get(name, name)
        if before == after:
            continue
        if after == GONE:
            out.append(f"{path} is gone")
        elif before == GONE:
            out.append(f"{path} appeared ({after[0]:,} bytes)")
        else:
            out.append(f"{path} changed ({before[0]:,} -> {after[0]:,} bytes)")
    return out


def changed_diagnosis(changes: list[str]) -> dict:
    return Diagnosis("files_changed", "info",
                     "its files changed after it ended: figures and diagnoses are read again from them (its record "
                     "keeps those of its end)", tuple(changes),
                     ("Put the files back as they were to see the run as it ended.",)).to_dict()


def ended_diagnoses(store: RunStore, record: RunRecord, changes: list[str] | None, run=None) -> list[dict]:
    """A finished run's diagnoses, the same for every view: those stored at its end while its files
    are unchanged; else its output diagnosed again (`run`: its files read, if already done), what
    was stored kept (merged), and a `files_changed` note when the files are known to have changed."""
    if changes == []:
        return list(record.diagnoses)
    if run is None:
        run = read_run(store.run_dir(record.id), record, time.time())
    stored = [d for d in record.diagnoses if d.get("kind") != "files_changed"]
    found = merged([d.to_dict() for d in diagnose_run(store, record, run)], stored)
    return found + [changed_diagnosis(changes)] if changes else found
