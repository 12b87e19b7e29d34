"""A recorded GPU source: the same interface as NvmlSource, playing back NVML readings from a
JSONL file — the only fake in the test suite, at the hardware boundary — or from a session
recording (its GpuStatus / GpuSample events). The clock of the recording starts at the first
sample() call; readings are played at their recorded offsets, the last one held."""

from __future__ import annotations

import json
import os
from pathlib import Path

from urbanrun.engine.core.errors import UserError
from urbanrun.engine.core.files import regular_file


class RecordedGpuSource:
    def __init__(self, path: str | os.PathLike, speed: float = 1.0):
        self.path = Path(path)
        self.speed = speed
        self.status: dict = {"available": False, "kind": "none", "reason": "empty recording"}
        self.readings: list[tuple[float, list, list]] = []
        self._first_ts: float | None = None
        self._load()
        self._start: float | None = None
        self._next = 0

    def _load(self) -> None:
        """Every reading; a file that is not a recording is a UserError naming it and the line."""
        what = "GPU recording (URBANRUN_GPU_RECORDING)"
        regular_file(self.path, what)
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{what} {self.path} cannot be read: {getattr(exc, 'strerror', None) or exc}.") from None
        for line_no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                self._reading(json.loads(line))
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                raise UserError(f"{what} {self.path} line {line_no} is not an NVML reading ({exc}); give a .jsonl "
                                f"of GpuStatus/GpuSample objects, such as a session recording.") from None

    def _reading(self, obj: dict) -> None:
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        kind = obj.get("type")
        if kind == "GpuStatus" or "status" in obj and kind is None:
            if not isinstance(obj["status"], dict):
                raise ValueError("'status' is not an object")
            self.status = obj["status"]
        elif kind == "GpuSample" or "gpus" in obj:
            ts = float(obj.get("t", obj.get("ts", 0.0)))
            gpus, procs = obj.get("gpus", []), obj.get("processes", [])
            if not all(isinstance(x, list) and all(isinstance(i, dict) for i in x) for x in (gpus, procs)):
                raise ValueError("'gpus' and 'processes' must be lists of objects")
            if kind == "GpuSample":
                self._first_ts = ts if self._first_ts is None else self._first_ts
                ts -= self._first_ts
            self.readings.append((ts, gpus, procs))

    def start(self) -> dict:
        return self.status

    def snapshot(self):
        """The recording's last reading: the machine as it was when the recording ended."""
        gpus, procs = (self.readings[-1][1], self.readings[-1][2]) if self.readings else ([], [])
        return self.status, [dict(g) for g in gpus], [dict(p) for p in procs]

    def sample(self, now: float):
        if self._start is None:
            self._start = now
            return self.status, [dict(g) for g in self.readings[0][1]] if self.readings else [], []
        if not self.status.get("available"):
            return None
        elapsed = (now - self._start) * self.speed
        due = None
        while self._next < len(self.readings) and self.readings[self._next][0] <= elapsed:
            due = self.readings[self._next]
            self._next += 1
        if due is None:
            return None
        return self.status, [dict(g) for g in due[1]], [dict(p) for p in due[2]]
