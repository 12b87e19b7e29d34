"""Atomic file replacement: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from urbanrun.engine import platform


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace path with data; a file that exists keeps its mode (mkstemp would make it 0600)."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None:
                os.chmod(tmp, mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        platform.replace(tmp, path)  # retried on Windows while a reader holds `path` open
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def folders_made_for(folder: str | os.PathLike, own_files: tuple[str, ...] = ()):
    """Make `folder` (and its missing parents) for the block's writes; if the block fails (a full
    or read-only disk), the folders it made are removed again, with the `own_files` (a lock) the
    block left in `folder`: an error that says nothing was left behind must be true. A folder
    another writer has put files in meanwhile stays."""
    folder = Path(folder)
    made = []
    probe = folder
    while not probe.exists() and probe.parent != probe:
        made.append(probe)
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
    except BaseException:
        if made:
            for name in own_files:
                with contextlib.suppress(OSError):
                    (folder / name).unlink()
            for path in made:  # deepest first
                with contextlib.suppress(OSError):
                    path.rmdir()
        raise
