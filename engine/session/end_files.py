"""Whether a finished run's files are still those it ended with. A run's figures and diagnoses are
stored in its record when it ends; `ls`, `status`, `show`, `wait`, `events` and `doctor` use them
while its output log and metrics files are unchanged (same size and modification time as at
the end), and re-read those files, saying so, once they changed (a hand edit, a leftover process
still writing): every view then gives the same answer, and none passes off stale figures."""

from __future__ import annotations

import glob
import os
import stat
import time
from pathlib import Path

from urbanrun.engine.core.files import kind_of
from urbanrun.engine.diagnosis.rules import Diagnosis
from urbanrun.engine.diagnosis.run_doctor import diagnose_run, merged
from urbanrun.engine.metrics.run_files import globbed_files, later_start, read_run
from urbanrun.engine.runs.store import METRICS_FILE, RunRecord, RunStore

GONE = [-1, 0]  # a file that did not exist (or could not be looked at)


def _files(store: RunStore, record: RunRecord, shared: bool) -> dict[str, tuple[str, os.stat_result | None]]:
    """name -> (path, its stat now, None if it cannot be looked at): the output log, metrics.jsonl,
    the recipe's extra metrics files, and those its wildcards find that are this run's (by the
    readers' own rule: not a later run's), named as in the run folder when there (a runs folder
    moved whole keeps them). `shared`: the wildcards' listing may be a moment old (the checks of
    `ls`, one walk for all runs of a recipe), never at the end (a file made in its last moment)."""
    run_dir = store.run_dir(record.id)
    literal = [Path(p).expanduser() for p in record.metrics_files if not glob.has_magic(p)]
    wild = [p for p in record.metrics_files if glob.has_magic(p)]
    found = globbed_files(wild, record.started or record.created, later_start(store, record), shared) if wild else []

    def name_of(path: Path) -> str:
        return str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path)

    paths = {name_of(p): p for p in [store.log_path(record), run_dir / METRICS_FILE, *literal]}
    for name in record.end_files:  # what it ended with, whatever is in its place now (a folder: said so)
        paths.setdefault(name, run_dir / name)  # an absolute name stays itself
    end_ns = (record.ended or 0) * 1e9
    for path in found:  # a new one, or one untouched since the end that a record from before wildcards lacks
        st = _stat(path)
        if not record.end_files or (st is not None and st.st_mtime_ns > end_ns):
            paths.setdefault(name_of(path), path)
    return {name: (str(path), _stat(path)) for name, path in paths.items()}


def _stat(path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _missing(path: str) -> str:
    """Why a file of the run cannot be looked at: gone, or there but unreadable (a symlink loop)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return f"{path} is gone"
    except (OSError, ValueError) as exc:
        if os.path.lexists(path):
            return f"{path} is there but cannot be read ({getattr(exc, 'strerror', None) or exc})"
    return f"{path} is gone"


def _figures(st: os.stat_result | None) -> list[int]:
    return GONE if st is None else [st.st_size, st.st_mtime_ns]


def fingerprint(store: RunStore, record: RunRecord) -> dict[str, list[int]]:
    """The run's files as they are now (taken when it ends): name -> [size, mtime in ns]."""
    return {name: _figures(st) for name, (_, st) in _files(store, record, shared=False).items()}


def changes_since_end(store: RunStore, record: RunRecord) -> list[str] | None:
    """How the files differ from those the run ended with ([]: not at all); None when the record
    does not say (a run that ended before urbanrun kept this)."""
    if record.active or not record.end_files:
        return None
    now = _files(store, record, shared=True)
    out = []
    for name in sorted(set(now) | set(record.end_files)):
        path, st = now.get(name, (name, None))
        before, after = record.end_files.get(name, GONE), _figures(st)
        if before == after:
            continue
        if st is None:
            out.append(_missing(path))
        elif not stat.S_ISREG(st.st_mode):  # a folder or a FIFO in a file's place: its "size" means nothing
            was = "" if before == GONE else f" ({before[0]:,} bytes when the run ended)"
            out.append(f"{path} is now {kind_of(st)}, not a file{was}")
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
        run = read_run(store, record, time.time())
    stored = [d for d in record.diagnoses if d.get("kind") != "files_changed"]
    found = merged([d.to_dict() for d in diagnose_run(store, record, run)], stored)
    return found + [changed_diagnosis(changes)] if changes else found
