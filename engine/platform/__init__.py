"""The platform layer: the only home of OS-specific calls (process groups and sessions, signals,
stop and kill, Job Objects, file locks, atomic replace, shared opens). `posix` or `windows` is
chosen once, at import, by sys.platform; both modules offer the same plain functions, re-exported
here. The lowest layer: imports nothing of urbanrun (the babysitter imports it too).

    new_session_kwargs()          Popen keywords that put a run in its own session / group
    job_name(run_id)              the named Job Object of a run (Windows), else None
    create_job(name)              the run's kill-on-close Job Object (Windows; OSError if refused), else None
    start_child(command, job, cgroup, **popen_kwargs)  the babysitter's child, started inside that job (Windows:
                                  suspended until it is in it; OSError, the child gone, if it cannot be)
                                  and inside the run's cgroup v2 (Linux, where one was made)
    stop_child(child)             the babysitter's graceful stop of its child: SIGTERM / CTRL_BREAK_EVENT
    STOP_BY_REQUEST               a kill asks the babysitter to stop its child (engine/runs/stop_request.py)
                                  instead of sending the stop itself (Windows: only it shares the console)
    become_subreaper(), reap_children()  the babysitter keeps (and reaps) orphans of the run (Linux)
    cgroup (module)               a run's own cgroup v2: create, pids, kill, remove (None/[] elsewhere)
    handle_stop_signals(handler)  catch the signals a stop sends (the babysitter outlives them)
    group_pids(leader, job_name)  pids left in a run's session / job (orphans included)
    send_stop(procs, leader)      graceful stop: SIGTERM / CTRL_BREAK_EVENT to the group
    kill_hard(procs, job_name)    SIGKILL / TerminateJobObject + TerminateProcess
    lock_file(fd), unlock_file(fd)  a blocking exclusive lock (flock / msvcrt.locking)
    replace(src, dst)             os.replace, retried where the OS refuses while dst is open
    rename(src, dst)              os.rename (a folder into place), retried the same way
    open_shared(path)             open for reading without stopping a writer renaming/deleting it
    open_regular(path)            open_shared, refusing a FIFO or device (OSError)
    read_shared(path, limit)      a regular file of at most limit bytes, through open_shared (records, exit status)
    make_private(path)            owner-only access: 0700 folders, 0600 files (POSIX); Windows: ACLs
    EXEC_KEEPS_PID                os.exec* replaces the process (POSIX), not a new pid (Windows)
    RUN_ENV                       environment defaults for a run (the user's own values win)
    PSEUDO_FILESYSTEMS            folders that are kernel views, not files (never walked for metrics)
    user_config_dir(), user_data_dir()  a user's own config folder and data folder (XDG / %APPDATA%)
    signal_name(number)           the name this OS gives a signal number (SIGTERM), None if it has none
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from pathlib import Path

if sys.platform == "win32":
    from urbanrun.engine.platform import windows as current
else:
    from urbanrun.engine.platform import posix as current

NAME = current.NAME
STOP_NAME = current.STOP_NAME
KILL_NAME = current.KILL_NAME
new_session_kwargs = current.new_session_kwargs
job_name = current.job_name
STOP_BY_REQUEST = current.STOP_BY_REQUEST
create_job = current.create_job
start_child = current.start_child
stop_child = current.stop_child
become_subreaper = current.become_subreaper
reap_children = current.reap_children
handle_stop_signals = current.handle_stop_signals
group_pids = current.group_pids
send_stop = current.send_stop
kill_hard = current.kill_hard
lock_file = current.lock_file
unlock_file = current.unlock_file
replace = current.replace
rename = current.rename
EXEC_KEEPS_PID = current.EXEC_KEEPS_PID
RUN_ENV = current.RUN_ENV
PSEUDO_FILESYSTEMS = current.PSEUDO_FILESYSTEMS
open_shared = current.open_shared
make_private = current.make_private
user_config_dir = current.user_config_dir
user_data_dir = current.user_data_dir


@contextlib.contextmanager
def hold_lock(path: str | os.PathLike):
    """Hold an exclusive lock on `path` (created if missing) for the `with` block."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        lock_file(fd)
        try:
            yield
        finally:
            unlock_file(fd)
    finally:
        os.close(fd)


def open_regular(path: str | os.PathLike):
    """open_shared, for a regular file only: a FIFO there (opened without blocking) or a device
    (/dev/zero never ends) is an OSError saying so, checked on the open file itself."""
    try:
        fh = open_shared(path)
    except IsADirectoryError:  # raised by the open of its descriptor: named by that number, not the path
        raise IsADirectoryError(errno.EISDIR, "it is a folder, not a file", os.fspath(path)) from None
    if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
        fh.close()
        raise OSError(errno.EINVAL, "it is not a regular file", os.fspath(path))
    return fh


def read_shared(path: str | os.PathLike, limit: int) -> bytes:
    """The whole file, read without blocking a writer that replaces it meanwhile (on Windows an
    open without delete sharing makes the writer's os.replace fail). Only a regular file of at most
    `limit` bytes is read: a FIFO or device there would block or never end, and a file far larger
    than any urbanrun writes would stall every listing (OSError saying which)."""
    with open_regular(path) as fh:
        data = fh.read(limit + 1)
        if len(data) > limit:
            raise OSError(errno.EFBIG, f"it holds over {limit:,} bytes, far more than urbanrun writes there",
                          os.fspath(path))
        return data


def signal_name(number: int) -> str | None:
    """SIGTERM for 15: the names of the signals this OS knows (Windows knows a few); None otherwise."""
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return None


def utf8_stdio() -> None:
    """Write stdout/stderr as UTF-8 whatever the console code page (a cp1252 pipe on Windows would
    otherwise raise UnicodeEncodeError on the first arrow or accent); unencodable text is replaced."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(encoding="utf-8", errors="replace")
        except (AttributeError, ValueError, OSError):  # not a text stream we own (replaced, closed)
            pass
