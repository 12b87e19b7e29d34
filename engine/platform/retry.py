"""A file operation retried while another process briefly holds its file or folder: on Windows a
virus scanner, an indexer or urbanrun's own reader opens what is being replaced or renamed, and
MoveFileEx refuses until it lets go. The policy (which errors are such a hold) is each OS module's;
this is only the bounded loop, OS-neutral, so that it is tested for real on any OS."""

from __future__ import annotations

import time
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")


def retry_while(operation: Callable[[], T], held: Callable[[OSError], bool], delays: Iterable[float],
                sleep: Callable[[float], None] = time.sleep) -> T:
    """operation(), tried again after each of `delays` while it fails with an error `held` says is
    another process's passing hold; any other error, or a hold that outlasts the delays, is raised
    as the OS gave it (the caller's sentence names the file)."""
    for delay in delays:
        try:
            return operation()
        except OSError as exc:
            if not held(exc):
                raise
        sleep(delay)
    return operation()
