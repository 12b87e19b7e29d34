"""The runs folder's disk, looked at every few seconds. While it is full, nothing urbanrun or the
runs write there lands: a run's output and metrics, the exit status its babysitter holds (and
retries), records, the session recording. The views say so while it lasts, so that a run that looks
quiet, or still running after its end, is not taken for hung; one status when the disk fills, one
when room returns."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

FULL_BYTES = 64 * 1024  # under this, a record, an exit status or a log line may no longer fit
ROOM_FACTOR = 4  # room again only at 4x that: free space hovering at the line is not a status every check
CHECK_SECONDS = 5.0


class DiskSpace:
    def __init__(self, folder: str | os.PathLike, interval: float = CHECK_SECONDS, full_bytes: int = FULL_BYTES):
        self.folder = Path(folder)
        self.interval = interval
        self.full_bytes = full_bytes
        self.full = False
        self._next = float("-inf")

    def check(self, now: float) -> dict | None:
        """{"path", "free", "full"} when the disk has just filled or has room again; else None.
        A folder that cannot be looked at (gone, not mounted) changes nothing: its writes say why."""
        if now < self._next:
            return None
        self._next = now + self.interval
        try:
            free = shutil.disk_usage(_existing(self.folder)).free
        except OSError:
            return None
        full = free < self.full_bytes * (ROOM_FACTOR if self.full else 1)
        if full == self.full:
            return None
        self.full = full
        return {"path": str(self.folder), "free": free, "full": full}


def _existing(folder: Path) -> Path:
    """The folder, or its nearest existing parent (a runs folder not made yet is on that disk)."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def describe(status: dict) -> str:
    """The sentence a person reads when the disk fills or has room again."""
    free = size_text(status["free"])
    if status["full"]:
        return (f"the disk holding {status['path']} is full ({free} free): runs' output, metrics, records and "
                f"exit statuses cannot be written there; runs go on, and one that ends meanwhile is recorded once "
                f"there is room. Free some space on it.")
    return f"the disk holding {status['path']} has room again ({free} free)"


def size_text(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
