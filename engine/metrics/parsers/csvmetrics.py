"""CSV metrics with a header row: Lightning's CSVLogger (sparse rows; a new key rewrites the
whole file with a wider header) and loss-history CSVs (`epoch,total_loss,…`).

On a rewrite the follower restarts the file; `reset()` forgets the header but remembers how
many rows were already turned into points, so a rewritten file yields only its new rows.
"""

from __future__ import annotations

import csv

STEP_COLUMNS = ("step", "global_step", "iteration", "iter", "_step")
EPOCH_COLUMNS = ("epoch", "Epoch")
TIME_COLUMNS = ("time", "timestamp", "wall_time", "_timestamp")


class CsvParser:
    format = "csv"

    def __init__(self):
        self.header: list[str] | None = None
        self.rows_seen = 0
        self.rows_emitted = 0
        self.bad_lines = 0
        self.first_error: str | None = None

    def reset(self) -> None:
        self.header, self.rows_seen = None, 0

    def feed(self, lines: list[str], first_line_no: int = 0) -> list[dict]:
        points = []
        for i, row in enumerate(csv.reader(lines)):
            if not row:
                continue
            if self.header is None:
                self.header = [h.strip() for h in row]
                continue
            self.rows_seen += 1
            if self.rows_seen <= self.rows_emitted:
                continue
            self.rows_emitted = self.rows_seen
            if len(row) > len(self.header):
                self.bad_lines += 1
                self.first_error = self.first_error or f"line {first_line_no + i + 1}: more cells than the header"
                continue
            point = {}
            for name, cell in zip(self.header, row):
                value = _number(cell)
                if value is not None:
                    point[name] = value
            _axes(point)
            if point:
                points.append(point)
        return points


def _number(cell: str):
    cell = cell.strip()
    if not cell:
        return None
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        return float(cell)
    except ValueError:
        return None


def _axes(point: dict) -> None:
    """Name the step and time axes the way the rest of urbanrun does (`step`, `time`)."""
    if "step" not in point:
        for name in STEP_COLUMNS[1:] + EPOCH_COLUMNS:
            if name in point:
                point["step"] = point[name] if name not in EPOCH_COLUMNS else point[name]
                break
    if "time" not in point:
        for name in TIME_COLUMNS[1:]:
            if name in point:
                point["time"] = point[name]
                break
