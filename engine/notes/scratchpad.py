"""The team's scratchpads: `<root>/<role>/<YYYY-MM-DD>.md` (or `<YYYY-MM-DD>-<session>.md`),
entries under `## HH:MM — summary` headings, a `<!-- SUMMARY: … -->` line at the end of a session.

Every write goes through one lock file per folder (flock), so urbanrun's auto-log, the TUI's
editor and other urbanruns (or agents using `urbanrun scratchpad log`) never lose each other's
lines. Saves are atomic (temp + rename) and merge what was appended meanwhile; text changed in
any other way is kept beside ours, never overwritten silently.
"""

from __future__ import annotations

import contextlib
import errno
import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

from urbanrun.engine import platform
from urbanrun.engine.core import redact
from urbanrun.engine.core.text import SURROGATES, printable
from urbanrun.engine.core.atomic import atomic_write_bytes, atomic_write_text, folders_made_for
from urbanrun.engine.core.errors import UserError

DATE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})")
RUN_ID_RE = re.compile(r"\b\d{8}-\d{6}-[A-Za-z0-9_-]+?-[0-9a-f]{4}\b")
EVENTS = ("launch", "end", "diagnosis", "kill", "observation")
LOCK_NAME = ".urbanrun.lock"
NOTES_LIMIT = 64 * 1024 * 1024  # a day's notes are KBs; a FIFO or a GB file there is refused, not read


@dataclass(frozen=True)
class Settings:
    root: Path
    role: str = "training-runner"
    coordinator: str = "coordinator"
    pattern: str = "{role}/{date}.md"
    session: str = "urbanrun"
    log: tuple[str, ...] = EVENTS


def settings_from(config, cwd: Path | None = None) -> Settings:
    """[scratchpad] of config.toml: root (default .claude/scratchpad under the cwd; placeholders
    such as {paths.urbanrepml} allowed), role, coordinator, pattern, session, log."""
    from urbanrun.engine.core.config import expand

    table = dict(config.data.get("scratchpad", {})) if config is not None else {}
    root = table.get("root") or str((cwd or Path.cwd()) / ".claude" / "scratchpad")
    if config is not None:
        root = expand(root, config.context(), where="scratchpad.root")
    return Settings(root=Path(os.path.expanduser(root)), role=table.get("role", "training-runner"),
                    coordinator=table.get("coordinator", "coordinator"),
                    pattern=table.get("pattern", "{role}/{date}.md"),
                    session=os.environ.get("URBANRUN_SESSION") or table.get("session", "urbanrun"),
                    log=tuple(table.get("log", EVENTS)))


# -- files ------------------------------------------------------------------------------------------
def today_path(settings: Settings, today: dt.date | None = None) -> Path:
    date = (today or dt.date.today()).isoformat()
    return settings.root / settings.pattern.format(role=settings.role, date=date, session=settings.session)


def dated_files(folder: Path) -> list[tuple[str, float, Path]]:
    if not folder.is_dir():
        return []
    out = []
    for p in folder.glob("*.md"):
        if (m := DATE_RE.match(p.name)) and ".theirs-" not in p.name:
            out.append((m.group(1), p.stat().st_mtime, p))
    return sorted(out)


def previous_path(folder: Path, today: dt.date | None = None) -> Path | None:
    """The own role's most recent file dated before today (not just yesterday by the calendar)."""
    day = (today or dt.date.today()).isoformat()
    earlier = [f for f in dated_files(folder) if f[0] < day]
    return earlier[-1][2] if earlier else None


def latest_path(folder: Path) -> Path | None:
    files = dated_files(folder)
    return files[-1][2] if files else None


def read(path: Path | None) -> str:
    """The notes as text. A byte that is not UTF-8 (a line pasted by a Latin-1 editor) reads as
    U+FFFD: one odd byte must not stop every launch and kill from being logged (save keeps the
    original bytes aside before it rewrites such a file)."""
    raw = read_bytes(path)
    return "" if raw is None else raw.decode("utf-8", errors="replace")


def read_bytes(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return platform.read_shared(path, NOTES_LIMIT)
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def locked(path: Path):
    """One writer at a time for the files in this folder (platform.hold_lock). A write that fails
    (a full or read-only disk) leaves none of the folders it made, nor their lock file: the error
    says nothing of the attempt was left behind, and an empty dated folder would say otherwise."""
    with folders_made_for(path.parent, own_files=(LOCK_NAME,)), platform.hold_lock(path.parent / LOCK_NAME):
        yield


@contextlib.contextmanager
def _undone_on_failure(*paths: Path):
    """Each of `paths` as it was if the block fails: a file that did not exist is removed, one
    that did is cut back to its size (an append torn by a full disk leaves no half entry)."""
    sizes = {p: _size(p) for p in paths}
    try:
        yield
    except BaseException:
        for p, size in sizes.items():
            with contextlib.suppress(OSError):
                if size is None:
                    p.unlink()
                else:
                    os.truncate(p, size)
        raise


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def append(path: Path, text: str, marker: str | None = None, title: str | None = None) -> bool:
    """Append an entry; with a marker, only once (a restarted urbanrun does not log twice). Secrets
    recognisable by shape (a token, URL credentials, KEY=value) are masked: entries come from
    records, logs and agents, and the scratchpad is shared."""
    text = as_text(redact.text(text))
    with locked(path):
        current = read(path)
        if marker and f"<!-- urbanrun:{marker} -->" in current:
            return False
        chunk = ""
        if not current and title:
            chunk += f"# {title}\n"
        if current and not current.endswith("\n"):
            chunk += "\n"
        chunk += "\n" + text.rstrip("\n") + "\n"
        if marker:
            chunk += f"<!-- urbanrun:{marker} -->\n"
        grown = len(current.encode("utf-8", errors="replace")) + len(chunk.encode("utf-8"))
        if grown > NOTES_LIMIT:  # written, the file could no longer be read: no later entry of the day
            raise OSError(errno.EFBIG, f"the entry would take it over {NOTES_LIMIT:,} bytes, more than urbanrun "
                                       f"reads there, so it was not written", os.fspath(path))
        with _undone_on_failure(path), open(path, "a", encoding="utf-8") as fh:
            fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        return True


def as_text(text: str) -> str:
    """What a notes file can hold: what UTF-8 cannot encode (a lone surrogate: a Latin-1 byte in a
    command line, or sent by an agent) becomes U+FFFD, so an entry is written whole instead of
    failing with UnicodeEncodeError; terminal escape sequences (a coloured log line, or an agent's
    text that would retitle or clear the terminal of whoever `cat`s the notes) are dropped, and a
    NUL or other control character becomes U+FFFD."""
    return printable(SURROGATES.sub("\ufffd", text))


def entry(heading: str, body: str = "", when: dt.datetime | None = None) -> str:
    stamp = (when or dt.datetime.now()).strftime("%H:%M")
    return f"## {stamp} — {heading}" + (f"\n{body.rstrip()}" if body.strip() else "")


def save(path: Path, text: str, base: str) -> tuple[str, str]:
    """Write `text` (edited from `base`). Returns (what the file now holds, a note for the user)."""
    with locked(path), contextlib.ExitStack() as asides:
        raw = read_bytes(path) or b""
        disk = raw.decode("utf-8", errors="replace")
        note = "saved"
        if not _is_utf8(raw):  # rewriting it turns its odd bytes into U+FFFD: keep them as they were
            original = _aside(path, "bytes")
            asides.enter_context(_undone_on_failure(original))  # kept only if the save lands
            atomic_write_bytes(original, raw)
            note = f"saved; the file held bytes that are not UTF-8, its original is kept as {original.name}"
        if disk != base:
            if disk.startswith(base):  # lines appended while we edited: keep them after ours
                text = text.rstrip("\n") + "\n" + disk[len(base):].lstrip("\n")
                note += ", with the lines appended meanwhile merged in"
            else:
                theirs = _aside(path)
                asides.enter_context(_undone_on_failure(theirs))
                atomic_write_text(theirs, disk)
                note += f"; the file had changed on disk, that version is kept as {theirs.name}"
        atomic_write_text(path, text)
        return text, note


def _aside(path: Path, kind: str = "") -> Path:
    return path.with_name(f"{path.stem}.theirs-{kind + '-' if kind else ''}{dt.datetime.now():%H%M%S}.md")


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


# -- reading the team's notes -----------------------------------------------------------------------
def mentioned_runs(text: str) -> list[str]:
    seen = []
    for run_id in RUN_ID_RE.findall(text):
        if run_id not in seen:
            seen.append(run_id)
    return seen


def unresolved(text: str) -> list[str]:
    """Lines under an 'Unresolved' heading."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("#"):
            inside = "unresolved" in line.lower()
            continue
        if inside and line.strip():
            out.append(line.strip())
    return out


def show(settings: Settings, store, today: dt.date | None = None) -> dict:
    """What a session starts from: the coordinator's latest notes, the own role's previous notes,
    and the runs they mention that are still going, failed, or unknown here."""
    coordinator = latest_path(settings.root / settings.coordinator)
    previous = previous_path(settings.root / settings.role, today)
    today_file = today_path(settings, today)
    open_runs = []
    for source in (previous, coordinator):
        for run_id in mentioned_runs(read(source)):
            if any(r["id"] == run_id for r in open_runs):
                continue
            try:
                record = store.load(run_id)
                status = record.status
            except UserError:  # not a run of this runs folder, or its record is unreadable
                status = "unknown here"
            if status not in ("exited", "killed"):
                open_runs.append({"id": run_id, "status": status, "mentioned_in": source.name})
    return {"root": str(settings.root), "today": str(today_file),
            "coordinator": {"path": str(coordinator) if coordinator else None, "text": read(coordinator)},
            "previous": {"path": str(previous) if previous else None, "text": read(previous)},
            "open_runs": open_runs,
            "unresolved": unresolved(read(previous)) + unresolved(read(coordinator))}
