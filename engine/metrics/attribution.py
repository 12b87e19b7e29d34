"""Which run a metrics folder belongs to. A Lightning `version_N`, a W&B run folder or a
TensorBoard log folder is one training run's output: it belongs to the run that created it
(created after the run started, under its cwd), never to a later run of the same recipe that
finds it with the same glob, and a folder holding several versions imports as several runs.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

_WANDB_NAME = re.compile(r"^(?:offline-)?run-(\d{8}_\d{6})-")


def unit_of(path: Path) -> Path:
    """The folder that is one training run's output: a W&B run folder itself, else the folder
    holding the metrics file (Lightning's version_N, a TensorBoard run folder)."""
    if path.is_dir():
        return path
    if path.parent.name == "files" and _WANDB_NAME.match(path.parent.parent.name):
        return path.parent.parent
    return path.parent


def born(unit: Path) -> float | None:
    """When the folder was created, as near as the disk tells: a W&B run folder names its start;
    otherwise the oldest modification time of its entries (Lightning rewrites hparams.yaml and
    metrics.csv at every save, so for a finished run this is its last save, still before any
    later run started). None when the folder cannot be read."""
    m = _WANDB_NAME.match(unit.name)
    if m:
        try:
            return dt.datetime.strptime(m.group(1), "%Y%m%d_%H%M%S").timestamp()  # local time, as W&B names it
        except ValueError:
            pass
    times = []
    try:
        with os.scandir(unit) as entries:
            for entry in entries:
                try:
                    times.append(entry.stat(follow_symlinks=False).st_mtime)
                except OSError:
                    continue
        times.append(unit.stat().st_mtime)
    except OSError:
        return None
    return min(times) if times else None


_LIGHTNING_VERSION = re.compile(r"^version_\d+$")
_TB_NAME = re.compile(r"^events\.out\.tfevents\.(\d{9,11})\.")


def birth(path: Path) -> tuple[float, float] | None:
    """(when the run output holding `path` was created, how coarse that time is), for the files
    that say which training run made them: a TensorBoard events file (its name holds its creation
    time), anything in a Lightning version_N or a W&B run folder. None for any other file."""
    m = _TB_NAME.match(path.name)
    if m:
        return float(m.group(1)), 1.0
    unit = unit_of(path)
    if _WANDB_NAME.match(unit.name) or _LIGHTNING_VERSION.match(unit.name):
        when = born(unit)
        return None if when is None else (when, 1.0 if _WANDB_NAME.match(unit.name) else 0.0)
    return None


def belongs(path: Path, started: float | None, next_start: float | None, slack: float = 5.0) -> bool:
    """Whether a metrics file found by a run's glob is that run's: its training run output was
    created after the run started and before the next run in the same cwd started (which owns
    what appears later). A file with no such birth (a plain CSV) only has to be modified after
    the run started (`slack` seconds of clock tolerance)."""
    if not started:
        return True  # no start time to judge by (a record without one): as before
    found = birth(path)
    if found is None:
        try:
            return path.stat().st_mtime >= started - slack
        except FileNotFoundError:  # gone since it was found, or a link to nothing
            return False
        except OSError:  # there, but it cannot be looked at (a symlink loop): kept, so its reader says so
            return True
    when, coarse = found
    return when >= started - coarse and (next_start is None or when < next_start - coarse)


def next_start(record, records) -> float | None:
    """When the next run with the same cwd and metrics_files as `record` started (None: none):
    run output created after that is the later run's."""
    start = record.started or record.created
    if not start:
        return None
    later = [r.started or r.created for r in records
             if r.id != record.id and r.cwd == record.cwd and r.metrics_files == record.metrics_files
             and (r.started or r.created or 0) > start]
    return min(later) if later else None
