"""Every write path under a full or read-only disk: what cannot be written is one sentence naming
the file or folder, and what was there before is intact, nothing of the attempt left behind.

The faults are real: a small tmpfs mounted for the test (root only; skipped elsewhere), filled to
its last byte or to a few pages short."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import cli
from test_storage import fill, mount  # noqa: F401 - the tmpfs fixture


def leave_free(folder: Path, free: int) -> Path:
    """Fill the file system under folder, then give back `free` bytes (whole pages)."""
    filler = fill(folder)
    with open(filler, "r+b") as fh:
        fh.truncate(max(0, os.path.getsize(filler) - free))
    return filler


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def use_scratchpad(workspace: Path, root: Path) -> None:
    with open(workspace / "config.toml", "a") as fh:
        fh.write(f'\n[scratchpad]\nroot = "{root}"\n')


def test_scratchpad_log_on_a_full_disk_leaves_no_folder_and_says_so(workspace, mount):
    """It left the role's dated folder, its lock file and an empty notes file behind, under a
    message saying nothing of the attempt was left behind."""
    runs = mount(size="64k")
    use_scratchpad(workspace, runs / "pad")
    fill(runs)
    before = tree(runs)
    proc = cli("scratchpad", "log", "data loader fixed", cwd=workspace)
    assert proc.returncode == 1, proc
    assert f"cannot write the scratchpad in {runs / 'pad'}: No space left on device" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert tree(runs) == before  # no pad/, no training-runner/, no .urbanrun.lock, no empty .md


def test_scratchpad_entry_torn_by_a_full_disk_is_cut_back(workspace, mount):
    """An entry larger than the space left was appended up to the last byte that fitted: the
    notes ended in half an entry (and every later entry was glued to it)."""
    runs = mount(size="64k")
    use_scratchpad(workspace, runs)
    assert cli("scratchpad", "log", "first entry", cwd=workspace).returncode == 0
    (notes,) = runs.glob("*/*.md")
    before = notes.read_bytes()
    fill(runs)  # the notes' own page still has room for ~4,000 bytes of the entry
    proc = cli("scratchpad", "log", "x" * 20_000, cwd=workspace)
    assert proc.returncode == 1 and "No space left on device" in proc.stderr, proc
    assert notes.read_bytes() == before


def test_scratchpad_save_that_cannot_land_keeps_no_copy_aside(tmp_path, mount):
    """The TUI's save keeps a changed file's version aside before it writes its own; when its own
    write then fails, the aside copy was left behind (and the error said nothing was)."""
    from urbanrun.engine.notes import scratchpad

    runs = mount(size="64k")
    notes = runs / "role" / "2026-11-30.md"
    notes.parent.mkdir()
    notes.write_text("# notes\nchanged by another editor\n")
    before = tree(runs)
    leave_free(runs, 4096)  # room for the aside copy, not for the edit
    with pytest.raises(OSError) as raised:
        scratchpad.save(notes, "# notes\n" + "mine " * 2000, base="# notes\n")
    assert raised.value.errno == 28
    assert [p for p in tree(runs) if not p.endswith(".urbanrun.lock")] == before  # the lock stays: the folder is not new
    assert notes.read_text() == "# notes\nchanged by another editor\n"
