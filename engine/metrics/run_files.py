"""What the engine reads from one run's folder: output.log (lines, and the metrics and progress
they print), metrics.jsonl, and the extra metrics files its recipe names (which may appear late)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable, Iterator

from urbanrun.engine.core.events import Event, LogLines, MetricPoints, Notice, Progress, RunChanged
from urbanrun.engine.core.points import Points
from urbanrun.engine.core.state import RunState, State
from urbanrun.engine.metrics.attribution import belongs, birth, next_start
from urbanrun.engine.metrics.sources import MetricSource, expand_globs, format_of, until_drained
from urbanrun.engine.runs.store import LOG_FILE, METRICS_FILE, RunRecord, RunStore
from urbanrun.engine.metrics.follower import FileFollower

GLOB_SECONDS = 5.0  # how often a recipe's metrics_files globs are looked at again


class RunSources:
    def __init__(self, run_dir: Path, record: RunRecord, next_start: Callable[[], float | None] = lambda: None):
        """`next_start`: when the next run in the same cwd with the same metrics_files started
        (None: none yet); metrics folders created after it belong to that run, not this one."""
        self.run_id = record.id
        log = Path(record.log_path) if record.log_path else run_dir / LOG_FILE
        self.log = FileFollower(log)
        patterns = tuple(re.compile(p) for p in record.log_patterns)
        self.log_metrics = MetricSource(log, "log", patterns)
        jsonl = run_dir / METRICS_FILE
        self.sources: dict[str, MetricSource] = {str(jsonl): MetricSource(jsonl, "jsonl")}
        self.globs = list(record.metrics_files)
        self.started = record.started or record.created
        self.next_start = next_start
        self.not_theirs: set[str] = set()  # globbed files that belong to an earlier run: never ours
        self.next_glob = float("-inf")
        self.reported: dict[str, tuple] = {}
        self.last_progress: dict[str, dict] = {}

    def close(self) -> None:
        self.log.close()
        for source in self.sources.values():
            source.close()

    @property
    def position(self) -> tuple:
        """Unchanged by a read that consumed no byte of any file: the files are drained."""
        return self.log.position, len(self.sources), tuple(s.position for s in self.sources.values())

    def read(self, now: float, final: bool = False) -> list[Event]:
        """New events from every file of the run (empty when nothing changed). `final`: the run
        has ended, so look for late metrics files now rather than at the next glob time.
        Each file is read in its own guard: a failure becomes a notice naming the file, and
        what the other files gave is kept."""
        events: list[Event] = []
        self._guarded(events, now, str(self.log.path), self._read_log, now)
        if self.globs and (now >= self.next_glob or final):
            self._guarded(events, now, "metrics_files", self._add_globbed)
            self.next_glob = now + GLOB_SECONDS
        for key, source in list(self.sources.items()):
            self._guarded(events, now, key, self._read_source, key, source, now)
        return events

    def read_to_end(self, now: float) -> Iterator[list[Event]]:
        """Batches of events until every file is read to its end, whatever the per-poll budget:
        a batch without events (an over-long line, megabytes of log without metrics) is not the
        end; only a read that consumed no byte is."""
        return until_drained(lambda: self.read(now, final=True), lambda: self.position)

    def _guarded(self, events: list[Event], now: float, name: str, read: Callable, *args) -> None:
        try:
            events += read(*args) or []
        except Exception as exc:  # noqa: BLE001 - one bad file must not cost the poll its other events
            problem = f"{type(exc).__name__}: {exc}"
            if self.reported.get(("failed", name)) != problem:
                self.reported[("failed", name)] = problem
                events.append(Notice(ts=now, level="error", run_id=self.run_id, code="file_unreadable", path=name,
                                     text=f"{name}: could not be read ({problem}); the run's other files still are."))

    def _read_log(self, now: float) -> list[Event]:
        events: list[Event] = []
        lines = self.log.poll()
        if lines or self.log.restarted:
            events.append(LogLines(ts=now, run_id=self.run_id, lines=tuple(lines), restarted=self.log.restarted))
        points, progress = self.log_metrics.poll(lines) if lines else ([], None)
        progress = dict(progress or {})
        frame = self.log.partial_frame()  # a tqdm bar still being drawn
        live = self.log_metrics.parser.parse_line(frame)[1] if frame else None
        if live:
            progress[live["unit"]] = live
        if points:
            events.append(MetricPoints(ts=now, run_id=self.run_id, source=str(self.log.path),
                                       points=tuple(points), format="log"))
        for unit, p in progress.items():
            if p != self.last_progress.get(unit):
                self.last_progress[unit] = p
                events.append(Progress(ts=now, run_id=self.run_id, progress=p))
        skipped = self.log.skipped_lines
        if skipped and self.reported.get("log-skipped") != skipped:
            self.reported["log-skipped"] = skipped
            events.append(Notice(ts=now, level="warning", run_id=self.run_id, code="records_skipped",
                                 path=str(self.log.path), text=f"{self.log.path}: {skipped} over-long line(s) skipped."))
        return events + self._file_notices(self.log, now)

    def _file_notices(self, follower, now: float, routine: tuple[str, ...] = ()) -> list[Event]:
        """What happened to a followed file (deleted, replaced, rewritten, unreadable), each once;
        `routine` codes are what the file's writer does as a matter of course: said as info."""
        return [Notice(ts=now, level="info" if code in routine else level, run_id=self.run_id, text=text, code=code,
                       path=str(follower.path))
                for code, level, text in follower.take_notices()]

    def _read_source(self, key: str, source: MetricSource, now: float) -> list[Event]:
        points, _ = source.poll()
        events: list[Event] = []
        if points:
            events.append(MetricPoints(ts=now, run_id=self.run_id, source=key,
                                       points=points if isinstance(points, Points) else tuple(points),
                                       format=source.format))
        if source.follower is not None:  # a CSV logger (Lightning's) rewrites its file when a new column comes
            events += self._file_notices(source.follower, now, ("file_rewritten",) if source.format == "csv" else ())
        return events + self._problems(key, source, now)

    def _add_globbed(self) -> None:
        for path in expand_globs(self.globs):
            key = str(path)
            if key in self.sources or key in self.not_theirs:
                continue
            fmt = format_of(path)  # the same rule as `urbanrun metrics RUN` (a W&B run folder by its name)
            if not fmt:
                continue
            if belongs(path, self.started, self.next_start()):
                self.sources[key] = MetricSource(path, fmt)
            elif (found := birth(path)) is not None and self.started and found[0] < self.started - found[1]:
                self.not_theirs.add(key)  # created before this run started: it stays someone else's

    def _problems(self, key: str, source: MetricSource, now: float) -> list[Event]:
        broken = getattr(source.reader, "broken", None)  # a followed file's own problems are _file_notices'
        state = (source.bad, source.skipped, broken)
        if state == self.reported.get(key, (0, 0, None)):
            return []
        self.reported[key] = state
        if broken:
            return [Notice(ts=now, level="error", run_id=self.run_id, text=broken, code="file_unreadable", path=key)]
        return [Notice(ts=now, level="warning", run_id=self.run_id, text=f"{key}: {skipped_text(source)}; the rest is read.",
                       code="records_skipped", path=key)]


def skipped_text(source: MetricSource) -> str:
    """What a source skipped, in words: bad records (with the first one's reason), over-long lines."""
    parts = []
    if source.bad:
        detail = f" (first: {source.first_error})" if source.first_error else ""
        parts.append(f"{source.bad} bad record(s) skipped{detail}")
    if source.skipped:
        parts.append(f"{source.skipped} line(s) over {source.follower.max_line >> 20} MiB skipped")
    return ", ".join(parts)


def read_run(store: RunStore, record: RunRecord, now: float) -> RunState:
    """A run's state from its files, every byte of each read to the end (for commands without an
    engine): the same sources and the same reducer the engine uses, so both summarise alike."""
    state = State()
    state.apply(RunChanged(ts=now, run=record.to_dict()))
    sources = RunSources(store.run_dir(record.id), record, later_start(store, record))
    try:
        for events in sources.read_to_end(now):
            state.apply_all(events)
    finally:
        sources.close()
    return state.runs[record.id]


def later_start(store: RunStore, record: RunRecord) -> Callable[[], float | None]:
    """When the next run with the same cwd and metrics_files started (what its wildcards find
    that was made after that is the later run's), for readers without an engine: the records are
    read only when a wildcard's file is to be judged, at most once every GLOB_SECONDS for all runs."""
    return lambda: next_start(record, store.recent_records(GLOB_SECONDS))


def globbed_files(patterns: list[str], started: float | None, later: Callable[[], float | None],
                  shared: bool = False) -> list[Path]:
    """The metrics files a run's metrics_files patterns find that are that run's (not an earlier
    or a later run's): what `metrics RUN` reads and what a finished run's end record keeps.
    `shared`: a listing of the patterns up to LISTING_SECONDS old will do (checks of many runs)."""
    found = _expanded(patterns) if shared else expand_globs(patterns)
    return [path for path in found if format_of(path) and belongs(path, started, later())]


LISTING_SECONDS = 2.0  # how long one walk of a pattern answers every run that has it
_listings: dict[tuple[str, ...], tuple[float, list[Path]]] = {}


def _expanded(patterns: list[str]) -> list[Path]:
    """expand_globs, shared for a moment by the runs with the same patterns (a recipe's runs in one
    cwd): a `**` pattern is walked once for a whole `ls`, not once per run (10 runs: 10 walks)."""
    now = time.monotonic()
    for key in [k for k, (when, _) in _listings.items() if now - when > LISTING_SECONDS]:
        del _listings[key]  # a long-lived process keeps none for long
    key = tuple(patterns)
    if key not in _listings:
        _listings[key] = (now, expand_globs(patterns))
    return _listings[key][1]
