"""POSIX process control and files: a run is a session led by its babysitter (start_new_session),
stopped with SIGTERM and killed with SIGKILL member by member (psutil checks each process's create
time before signalling, so a reused pid is never hit); locks are flock."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

import psutil

NAME = "posix"
STOP_NAME = "SIGTERM"
KILL_NAME = "SIGKILL"
STOP_BY_REQUEST = False  # a signal reaches a run from any terminal: the supervisor sends the stop itself
EXEC_KEEPS_PID = True
RUN_ENV: dict[str, str] = {}  # Python's stdio follows the locale, UTF-8 on any current system
PSEUDO_FILESYSTEMS = frozenset({"/proc", "/sys", "/dev", "/run"})  # kernel views of processes and devices


def new_session_kwargs() -> dict:
    return {"start_new_session": True}


def job_name(run_id: str) -> None:
    return None  # no Job Objects: the session is the run's group


def create_job(name: str | None) -> None:
    return None


def become_subreaper() -> bool:
    """Linux: make this process (the babysitter) a child subreaper (prctl PR_SET_CHILD_SUBREAPER):
    descendants whose parent exits, double-forked and setsid'd daemons included, are reparented
    to it instead of init, so they stay in its tree. False where the kernel has no such thing."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def reap_children() -> None:
    """Wait for every child left (orphans reparented to a subreaper), so none stays a zombie;
    returns when none is left."""
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


def _join_cgroup(path: str) -> None:
    """Move this process into the cgroup v2 at `path` (run in the child before exec, so the
    command and everything it starts are born inside it). A refusal leaves it where it is."""
    try:
        with open(os.path.join(path, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
    except OSError:
        pass


def start_child(command: list[str], job, cgroup: str | None = None, **popen_kwargs) -> subprocess.Popen:
    """The run's command, started (no Job Object: the babysitter's session is the run's group),
    inside the run's cgroup v2 when one was made (joined before exec: all it starts is born there)."""
    if cgroup:
        popen_kwargs["preexec_fn"] = lambda: _join_cgroup(cgroup)
    return subprocess.Popen(command, **popen_kwargs)


def handle_stop_signals(handler: Callable) -> None:
    """A handler, not SIG_IGN, for a process that must outlive a stop: its children must not
    inherit the ignoring."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, handler)


def group_pids(leader_pid: int | None, job_name: str | None = None) -> list[int]:
    """Pids in the session `leader_pid` leads, the leader excluded: orphans reparented to init
    keep their session."""
    if not leader_pid:
        return []
    found = []
    for pid in psutil.pids():
        if pid == leader_pid:
            continue
        try:
            if os.getsid(pid) == leader_pid:
                found.append(pid)
        except OSError:  # gone, or not ours to look at
            continue
    return found


def send_stop(procs: Iterable[psutil.Process], leader: psutil.Process | None = None) -> int:
    """SIGTERM to each process; returns how many were still there to receive it."""
    return _send(procs, signal.SIGTERM)


def stop_child(child: subprocess.Popen) -> None:
    """The babysitter's graceful stop of its child, on a stop request: SIGTERM (Popen has not reaped
    the child, so its pid is still its own)."""
    child.send_signal(signal.SIGTERM)


def kill_hard(procs: Iterable[psutil.Process], job_name: str | None = None) -> int:
    return _send(procs, signal.SIGKILL)


def _send(procs: Iterable[psutil.Process], sig: int) -> int:
    sent = 0
    for proc in procs:
        try:
            if proc.is_running():  # psutil compares create times: never signals a reused pid
                proc.send_signal(sig)
                sent += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sent


def lock_file(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_EX)


def unlock_file(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    os.replace(src, dst)  # atomic; POSIX allows it while dst is open elsewhere


def rename(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    os.rename(src, dst)  # POSIX renames a file or folder whoever holds it open


def open_shared(path: str | os.PathLike) -> BinaryIO:
    # POSIX never stops a rename or unlink of an open file. O_NONBLOCK: a FIFO put where a file was
    # expected opens at once (its kind is then refused) instead of blocking until a writer comes;
    # reads of a regular file ignore the flag.
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb")


def make_private(path: str | os.PathLike) -> None:
    """Readable by its owner only: 0700 for a folder, 0600 for a file (a run's folder, a job script,
    a session recording hold command lines and output)."""
    os.chmod(path, 0o700 if os.path.isdir(path) else 0o600)


def user_config_dir() -> Path:
    """Where a user's own config.toml lives: $XDG_CONFIG_HOME/urbanrun, else ~/.config/urbanrun."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "urbanrun"


def user_data_dir() -> Path:
    """Where runs go when no config.toml names a place: $XDG_DATA_HOME/urbanrun, else ~/.local/share/urbanrun."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "urbanrun"
