"""Scratchpad files: `.claude/scratchpad/<role>/<YYYY-MM-DD>.md` under the project being trained.
Saves are atomic, and a save never silently overwrites text someone else wrote meanwhile:
an append by another writer is merged in; any other change keeps their version beside ours."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from .atomic import atomic_write_text

DATE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})")


def role_dir(root: str | Path, role: str = "training-runner") -> Path:
    return Path(root).expanduser() / role


def today_path(folder: Path, today: dt.date | None = None) -> Path:
    return folder / f"{(today or dt.date.today()).isoformat()}.md"


def previous_path(folder: Path, today: dt.date | None = None) -> Path | None:
    """The most recent file dated before today (not just yesterday by the calendar)."""
    day = (today or dt.date.today()).isoformat()
    dated = sorted((m.group(1), p) for p in folder.glob("*.md") if (m := DATE_RE.match(p.name)) and m.group(1) < day)
    return dated[-1][1] if dated else None


def read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def save(path: Path, text: str, base: str) -> tuple[str, str]:
    """Write `text` (edited from `base`). Returns (what the file now holds, a note for the user)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    disk = read(path)
    note = "saved"
    if disk != base:
        if disk.startswith(base):  # others appended while we edited: keep their lines after ours
            text = text.rstrip("\n") + "\n" + disk[len(base):].lstrip("\n")
            note = "saved, with the lines appended meanwhile merged in"
        else:
            theirs = path.with_name(f"{path.stem}.theirs-{dt.datetime.now():%H%M%S}.md")
            atomic_write_text(theirs, disk)
            note = f"saved; the file had changed on disk, that version is kept as {theirs.name}"
    atomic_write_text(path, text)
    return text, note
