"""Tracebacks the user never has to copy from a dead terminal: every contained pane error (once
per pane and error) and the app's own fatal error are appended to a file in the session's
folder, runs/sessions/<session>.errors.txt, beside the session's event recording."""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path


class ErrorReport:
    def __init__(self, source):
        self.source = source
        self.seen: set[tuple[str, str]] = set()
        self._path: Path | None = None

    def path(self) -> Path | None:
        """Next to the session's recording when there is one; None for a replay (nothing is written)."""
        if self._path is not None:
            return self._path
        store = getattr(self.source, "store", None)
        if store is None:
            return None
        recorder = getattr(self.source, "recorder", None)
        recording = getattr(recorder, "path", None)
        if recording is not None:
            self._path = Path(recording).with_suffix(".errors.txt")
        else:
            self._path = Path(store.root) / "sessions" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.errors.txt"
        return self._path

    def pane_error(self, pane: str, exc: BaseException) -> Path | None | bool:
        """Record a pane's render error; False when this pane already reported this error."""
        key = (pane, f"{type(exc).__name__}: {exc}")
        if key in self.seen:
            return False
        self.seen.add(key)
        return self.write(f"render error in the {pane} pane (contained; the app kept running)", exc)

    def write(self, title: str, exc: BaseException) -> Path | None:
        path = self.path()
        if path is None:
            return None
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {title}\n{text}\n")
        except OSError:
            return None  # a full or read-only disk must not turn a contained error into a crash
        return path
