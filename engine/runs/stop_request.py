"""A graceful stop asked of a run's babysitter, through two files in the run's folder.

Windows delivers a console's break event only to processes sharing the sender's console, and a `urbanrun
kill` from another terminal shares none with the run. The babysitter does share it (it created the
child), so the stop goes through it: the requester writes STOP_REQUEST; the babysitter, which looks
for it while it waits for its child, sends the platform's stop to its child (platform.stop_child)
once, and answers with STOP_SERVED (when, what was sent, or why it could not be). The hard kill
after the grace does not depend on the answer. Platform-neutral, so it is exercised for real on any
OS; which platforms stop runs this way is platform.STOP_BY_REQUEST.

Standard library, the platform layer and atomic writes only: the babysitter imports it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from urbanrun.engine import platform
from urbanrun.engine.core.atomic import atomic_write_bytes

STOP_REQUEST = "stop_request.json"
STOP_SERVED = "stop_served.json"
REQUEST_LIMIT = 64 * 1024  # a request is a few fields; nothing larger is read
POLL_SECONDS = 0.2  # how often the babysitter looks for a request while its child runs


def request(run_dir: str | os.PathLike, now: float | None = None) -> bool:
    """Ask the run's babysitter to stop its child; False if a stop was already asked (one graceful
    stop per run: a second one would cut short a checkpoint the first one began)."""
    path = Path(run_dir) / STOP_REQUEST
    if path.exists():
        return False
    atomic_write_bytes(path, json.dumps({"requested": time.time() if now is None else now,
                                         "by_pid": os.getpid()}).encode())
    return True


def served(run_dir: str | os.PathLike) -> dict | None:
    """The babysitter's answer ({"served", "sent", "child_pid", "error"}), or None while it has not
    answered (or the answer cannot be read)."""
    return _read(Path(run_dir) / STOP_SERVED)


def outcome(run_dir: str | os.PathLike) -> str | None:
    """A sentence for a kill's report when its graceful stop did not happen as asked, else None."""
    if not (Path(run_dir) / STOP_REQUEST).exists():
        return None
    answer = served(run_dir)
    if answer is None:
        return ("its babysitter did not answer the stop request (gone, or the run had ended), "
                "so no graceful stop was sent.")
    return f"its babysitter's graceful stop failed: {answer['error']}." if answer.get("error") else None


def serve(run_dir: str | os.PathLike, child_pid: int, stop: Callable[[], None]) -> bool:
    """The babysitter's side, called while its child runs: if a stop is asked and not yet answered,
    call `stop` (the platform's stop of the child) and write the answer. True if it served one now."""
    run_dir = Path(run_dir)
    if not (run_dir / STOP_REQUEST).exists() or (run_dir / STOP_SERVED).exists():
        return False
    error = None
    try:
        stop()
    except OSError as exc:  # the child ended meanwhile, or Windows refused the console event
        error = f"{platform.STOP_NAME} could not be sent: {exc}"
    answer = {"served": time.time(), "sent": platform.STOP_NAME, "child_pid": child_pid, "error": error}
    try:
        atomic_write_bytes(run_dir / STOP_SERVED, json.dumps(answer).encode())
    except OSError:
        pass  # the stop was sent; only the answer is lost (the hard kill after the grace needs none)
    return True


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(platform.read_shared(path, REQUEST_LIMIT))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
