"""`urbanrun metrics PATH_OR_RUN`: what a metrics file, folder or run holds, per metric."""

from __future__ import annotations

import glob
import math
import os
import sys
import time
from pathlib import Path

from urbanrun.engine.cli.output import emit_line, number as _num, say_notices
from urbanrun.engine.core.errors import UserError
from urbanrun.engine.core.files import path_stat, short
from urbanrun.engine.metrics.run_files import GLOB_SECONDS, globbed_files, later_start
from urbanrun.engine.metrics.sources import MetricSource, discover, format_of, read_to_end
from urbanrun.engine.runs.store import METRICS_FILE, RunStore

def sources_for(target: str, store: RunStore) -> tuple[list[MetricSource], str | None]:
    """The metrics sources of a file, a folder or a run, and the run's id (None for a file or folder)."""
    if not target.strip():  # Path("") is ".", the current folder: not what was meant
        raise UserError("metrics needs a metrics file, a folder or a run id (`urbanrun ls --all`), not an empty name.")
    path = Path(target)
    if path_stat(path, "metrics path") is not None:
        found = discover(path, include_logs=path.is_file())
        if not found:
            raise UserError(f"no metrics files found under {short(path)} (looked for JSONL, CSV with a loss column, "
                            f"TensorBoard event files, W&B offline runs).")
        return [MetricSource(p, fmt) for p, fmt in found], None
    try:
        run_id = store.resolve(target)
    except UserError as exc:
        if exc.code == "ambiguous_run":  # the candidates to pick from, as every other command says
            raise
        raise UserError(f"'{short(target)}' is neither a file or folder nor a run id; "
                        f"give a metrics file, a folder, or a run id from `urbanrun ls`.", code=exc.code) from None
    return run_sources(store, store.load(run_id)), run_id


def run_sources(store: RunStore, record) -> list[MetricSource]:
    """A run's metrics files now: metrics.jsonl, its log, and what its metrics_files find that is
    its own (not an earlier or a later run's)."""
    sources = [MetricSource(store.run_dir(record.id) / METRICS_FILE, "jsonl"), MetricSource(store.log_path(record), "log")]
    for extra in globbed_files(record.metrics_files, record.started or record.created, later_start(store, record)):
        sources.append(MetricSource(extra, format_of(extra)))
    found = {str(s.path) for s in sources}
    for name in record.metrics_files if record.status == "imported" else ():  # an import's file gone: said
        path = Path(name).expanduser()
        if not glob.has_magic(name) and str(path) not in found and format_of(path) and not os.path.lexists(path):
            source = MetricSource(path, format_of(path))
            source.gone = f"{path} is gone (moved or deleted since the run was recorded)."
            sources.append(source)
    return sources


def summarise(sources: list[MetricSource]) -> dict:
    out = []
    for source in sources:
        try:
            series, error = read_to_end(source).metrics, None
        except OSError as exc:  # one unreadable file (an I/O error) is that row's problem
            series, error = {}, f"{source.path}: {exc.strerror or exc}"
        error = source.broken or error or source.gone  # a loop, a FIFO, an import's file gone: said, never left out
        if not series and not error and (source.format == "log" or not source.path.exists()):
            continue  # a log without metrics is not worth a row, nor a file not there (yet)
        entry = {"path": str(source.path), "format": source.format, "metrics": {
            name: {"count": s.count, "first_step": _num(s.first_step), "last_step": _num(s.last_step),
                   "last": _num(s.last), "min": _num(s.best), "min_step": _num(s.best_step), "max": _num(s.worst)}
            for name, s in series.items()}}
        if source.bad:
            entry["bad_records"] = source.bad
            if source.first_error:
                entry["first_error"] = source.first_error
        if source.skipped:
            entry["skipped_lines"] = source.skipped  # over 4 MiB: skipped whole, the rest still read
        if error:
            entry["error"] = error
        out.append(entry)
    return {"sources": out}


def print_summary(summary: dict) -> None:
    if not summary["sources"]:
        print("no metrics yet.")
    for source in summary["sources"]:
        extra = f", {source['bad_records']} bad record(s) skipped" if source.get("bad_records") else ""
        if source.get("first_error"):
            extra += f" (first: {source['first_error']})"
        if source.get("skipped_lines"):
            extra += f", {source['skipped_lines']} over-long line(s) skipped"
        print(f"{source['path']} ({source['format']}{extra})")
        if source.get("error"):
            print(f"  ! {source['error']}")
        rows = [("metric", "count", "steps", "last", "min (step)", "max")]
        for name, m in source["metrics"].items():
            rows.append((name, str(m["count"]), f"{_fmt(m['first_step'])}..{_fmt(m['last_step'])}", _fmt(m["last"]),
                         f"{_fmt(m['min'])} ({_fmt(m['min_step'])})", _fmt(m["max"])))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return str(v)


def follow(sources: list[MetricSource], as_json: bool, interval: float = 0.5, running=None, store=None) -> int:
    """Print new points until Ctrl-C, or with `running` (a run's record, reconciled, each look)
    until the run ends: then its last points, and exit 0 if it ended cleanly (exited 0, or imported), else 1 (as `logs -f`).
    A run's metrics files that appear later (its metrics_files' wildcards) are followed from their start."""
    next_glob = time.monotonic() + GLOB_SECONDS
    try:
        while True:
            record = running() if running is not None else None
            if record is not None and (not record.active or time.monotonic() >= next_glob):
                known = {str(s.path) for s in sources}
                sources += [s for s in run_sources(store, record) if str(s.path) not in known]
                next_glob = time.monotonic() + GLOB_SECONDS
            # after the look: what the run wrote before it ended is in
            _print_points(sources, as_json, record.id if record is not None else None)
            if record is not None and not record.active:
                return 0 if record.ended_cleanly else 1
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0


def _print_points(sources: list[MetricSource], as_json: bool, run_id: str | None = None) -> None:
    for source in sources:
        points, _ = source.poll()
        for point in points:
            if as_json:
                emit_line({"source": str(source.path), "point": {k: _num(v) for k, v in point.items()}})
            else:
                values = " ".join(f"{k}={_fmt(v)}" for k, v in point.items() if k != "time")
                print(f"[{source.path.name}] {values}")
        if source.follower is not None:  # after its points: the file deleted, replaced, rewritten, unreadable
            say_notices(source.follower, as_json, run_id)  # a run's notices name it, as logs' and events' do
    sys.stdout.flush()
