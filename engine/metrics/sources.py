"""Metric sources: one per file (or W&B run folder), each polled for new points, and discovery
of the files real training scripts write under a folder."""

from __future__ import annotations

import glob
import os
import re
import stat
from pathlib import Path
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

from urbanrun.engine import platform
from urbanrun.engine.core.state import RunState, add_points
from urbanrun.engine.metrics.follower import FileFollower
from urbanrun.engine.metrics.steps import StepCheck
from urbanrun.engine.core.errors import UserError
from urbanrun.engine.core.files import not_regular, path_stat

SKIP_DIRS = {".git", "node_modules", "__pycache__", ".venv", "venv", "site-packages", ".mypy_cache",
             ".pytest_cache", "checkpoints", "cone_cache"}
MAX_ENTRIES = 50_000
READ_PER_POLL = 4 << 20  # discovery visits at most this many paths under one root


class MetricSource:
    """poll() -> (points, progress or None). Counters say what was skipped and why."""

    def __init__(self, path: str | os.PathLike, fmt: str, patterns: tuple[re.Pattern, ...] = ()):
        self.path = Path(path)
        self.format = fmt
        self.progress = None
        self._lines_read = 0
        self.steps = StepCheck()  # points whose step or epoch is not one: bad records of this source
        self.gone: str | None = None  # set by a reader that knows the file should be there: why it is not
        if fmt in ("jsonl", "csv", "log"):
            # a bounded read per poll keeps each batch of points small (and the UI responsive)
            self.follower = FileFollower(self.path, max_read=READ_PER_POLL)
            self.parser = _parser(fmt, patterns)
            self.reader = None
        elif fmt == "tensorboard":
            from urbanrun.engine.metrics.parsers.tensorboard import TensorBoardReader

            self.follower, self.parser, self.reader = None, None, TensorBoardReader(self.path)
        elif fmt == "wandb":
            self.follower, self.parser, self.reader = None, None, None  # the .wandb file may come later
        else:
            raise ValueError(f"unknown metrics format {fmt!r}")

    @property
    def bad(self) -> int:
        source = self.reader or self.parser
        return getattr(source, "bad_lines", 0) + getattr(source, "bad_records", 0) + self.steps.bad

    @property
    def skipped(self) -> int:
        """Lines over the follower's max_line (4 MiB), skipped whole."""
        return self.follower.skipped_lines if self.follower is not None else 0

    @property
    def broken(self) -> str | None:
        if self.follower is not None and self.follower.refused:
            return self.follower.refused
        return getattr(self.reader, "broken", None)

    @property
    def position(self):
        """Changes whenever a poll consumed bytes; a poll that leaves it unchanged found the end."""
        if self.follower is not None:
            return self.follower.position
        return None if self.reader is None else (id(self.reader), self.reader.offset)

    @property
    def first_error(self) -> str | None:
        return getattr(self.parser, "first_error", None) or self.steps.first_error

    def poll(self, lines: list[str] | None = None) -> tuple[list[dict], dict | None]:
        """New points (those with a step that is one: engine/metrics/steps.py). `lines` lets a
        caller that already follows the file (output.log) share them."""
        points, progress = self._poll(lines)
        return self.steps.keep(points), progress

    def _poll(self, lines: list[str] | None) -> tuple[list[dict], dict | None]:
        if self.format == "wandb" and self.reader is None:
            found = sorted(self.path.glob("run-*.wandb")) if self.path.is_dir() else [self.path]
            if not found:
                return [], None
            from urbanrun.engine.metrics.parsers.wandb_offline import WandbRunReader

            self.reader = WandbRunReader(found[0])
        if self.reader is not None:
            return self.reader.poll(), None
        if lines is None and self.format == "jsonl":
            blocks = self.follower.poll_blocks()
            if self.follower.restarted:
                self.parser.lines_seen = 0
            return self.parser.feed_blocks(blocks), None
        if lines is None:
            lines = self.follower.poll()
            if self.follower.restarted and hasattr(self.parser, "reset"):
                self.parser.reset()
        if not lines:
            return [], None
        if self.format == "log":
            return self.parser.feed(lines)
        if self.format == "csv":
            self._lines_read = 0 if self.follower.restarted else self._lines_read
            points = self.parser.feed(lines, self._lines_read)
            self._lines_read += len(lines)
            return points, None
        return self.parser.feed(lines), None

    def close(self) -> None:
        if self.follower is not None:
            self.follower.close()


def _parser(fmt: str, patterns: tuple[re.Pattern, ...]):
    """A text format's parser. Each parser module is imported with its first source (numpy, orjson,
    csv, regexes): a command or a first frame that reads no metrics never pays for them."""
    if fmt == "jsonl":
        from urbanrun.engine.metrics.parsers.jsonl import JsonlParser

        return JsonlParser()
    if fmt == "csv":
        from urbanrun.engine.metrics.parsers.csvmetrics import CsvParser

        return CsvParser()
    from urbanrun.engine.metrics.parsers.loglines import LogLineParser

    return LogLineParser(patterns)


def format_of(path: Path) -> str | None:
    name = path.name
    if path.is_dir():
        return "wandb" if name.startswith(("offline-run-", "run-")) and any(path.glob("run-*.wandb")) else None
    if name.startswith("events.out.tfevents."):
        return "tensorboard"
    if name.endswith(".wandb"):
        return "wandb"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".log", ".txt", ".out", ".err")):
        return "log"
    return None


def discover(root: str | os.PathLike, include_logs: bool = False) -> list[tuple[Path, str]]:
    """Metrics files under a folder (or the file itself): Lightning CSVs, TensorBoard events,
    W&B offline runs, JSONL, loss-history CSVs; plain logs only when asked. Only regular files
    are taken (a FIFO given as the root is a UserError; one inside a folder is passed over)."""
    root = Path(root)
    st = path_stat(root, "metrics path")
    if st is None:
        return []
    if not stat.S_ISDIR(st.st_mode):
        if not stat.S_ISREG(st.st_mode):
            raise UserError(not_regular(root, st))
        return [(root, format_of(root) or "log")]
    found: list[tuple[Path, str]] = []
    seen = 0
    for folder, dirs, files in os.walk(root):
        seen += len(dirs) + len(files)
        here = Path(folder)
        wandb_runs = [d for d in dirs if d.startswith("offline-run-") or (here.name == "wandb" and d.startswith("run-"))]
        for d in wandb_runs:
            found.append((here / d, "wandb"))
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and d not in wandb_runs and not d.startswith(".")
                         and str(here / d) not in platform.PSEUDO_FILESYSTEMS)
        for name in sorted(files):
            path = here / name
            if not _regular(path):
                continue
            fmt = format_of(path)
            if fmt == "csv" and not _metrics_csv(path):
                continue
            if fmt == "log" and not include_logs:
                continue
            if fmt is not None and fmt != "wandb":
                found.append((path, fmt))
        if seen > MAX_ENTRIES:
            break
    return found


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:  # vanished, a symlink loop, no permission: not something to read
        return False


def _metrics_csv(path: Path) -> bool:
    """A CSV with a header naming a loss/metric and a step/epoch column (not any data table)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            header = fh.readline().lower()
    except OSError:
        return False
    cols = [c.strip() for c in header.split(",")]
    has_axis = any(c in ("step", "epoch", "global_step", "iteration") for c in cols)
    return has_axis and any("loss" in c or "acc" in c or "metric" in c or c.startswith(("train", "val")) for c in cols)


def expand_globs(patterns: list[str]) -> list[Path]:
    """Existing files for `metrics_files` patterns (placeholders already expanded; ** allowed)."""
    return sorted({Path(p) for pattern in patterns for p in glob.glob(os.path.expanduser(pattern), recursive=True)})


def read_to_end(source: MetricSource, run: RunState | None = None) -> RunState:
    """Every point a source holds now, as series of a RunState (for commands without an engine).
    A big file takes several polls (each is bounded); a poll without points (an over-long line,
    megabytes of log without metrics) is not the end: only a poll that consumed no byte is."""
    run = run if run is not None else RunState(record={"id": str(source.path)})
    for points, _ in until_drained(source.poll, lambda: source.position):
        add_points(run, points, source.format)
    return run


def until_drained(read: Callable[[], T], position: Callable[[], object]) -> Iterator[T]:
    """Call `read` until a call leaves `position` unchanged (it consumed no byte: the end).
    The one loop every reader of a whole run or file uses: the engine at a run's end, the CLI."""
    while True:
        before = position()
        yield read()
        if position() == before:
            return
