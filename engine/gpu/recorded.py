"""A recorded GPU source: the same interface as NvmlSource, playing back NVML readings from a
JSONL file — the only fake in the test suite, at the hardware boundary — or from a session
recording (its GpuStatus / GpuSample events). The clock of the recording starts at the first
sample() call; readings are played at their recorded offsets, the last one held."""

from __future__ import annotations

import json
import os
from pathlib import Path


class RecordedGpuSource:
    def __init__(self, path: str | os.PathLike, speed: float = 1.0):
        self.path = Path(path)
        self.speed = speed
        self.status: dict = {"available": False, "kind": "none", "reason": "empty recording"}
        self.readings: list[tuple[float, list, list]] = []
        self._load()
        self._start: float | None = None
        self._next = 0

    def _load(self) -> None:
        first_ts = None
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            obj = json.loads(line)
            kind = obj.get("type")
            if kind == "GpuStatus" or "status" in obj and kind is None:
                self.status = obj["status"]
            elif kind == "GpuSample" or "gpus" in obj:
                ts = obj.get("t", obj.get("ts", 0.0))
                if kind == "GpuSample":
                    first_ts = ts if first_ts is None else first_ts
                    ts -= first_ts
                self.readings.append((float(ts), obj.get("gpus", []), obj.get("processes", [])))

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
