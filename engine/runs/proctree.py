"""Process identity and a run's process tree, through psutil and the platform layer (sessions, jobs).

A process is (pid, create_time): a pid alone can be reused by an unrelated process after a
reboot or a long time, and must never fool reattach or kill.
"""

from __future__ import annotations

import psutil

from urbanrun.engine import platform

CREATE_TIME_TOLERANCE = 0.05  # seconds; psutil's create_time is rounded by the kernel clock tick


def process_if_same(pid: int | None, create_time: float | None) -> psutil.Process | None:
    """The live process with this pid and create time, or None (gone, reused, or a zombie)."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > CREATE_TIME_TOLERANCE:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def create_time_of(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def tree_members(root: psutil.Process, job_name: str | None = None) -> list[psutil.Process]:
    """The root's descendants, plus any process left in the root's session or job (orphans
    reparented to init keep their session), excluding the root itself."""
    members: dict[int, psutil.Process] = {}
    try:
        for child in root.children(recursive=True):
            members[child.pid] = child
    except psutil.NoSuchProcess:
        pass
    for proc in session_members(root.pid, root.create_time(), job_name):
        members.setdefault(proc.pid, proc)
    members.pop(root.pid, None)
    return [p for p in members.values() if _alive(p)]


def session_members(sid: int | None, not_before: float | None = None,
                    job_name: str | None = None) -> list[psutil.Process]:
    """Live processes in session `sid` (POSIX) or the run's job (Windows) created no earlier than
    `not_before`: what is left of a run's tree after its leader, the babysitter, has gone."""
    found = []
    for pid in platform.group_pids(sid, job_name):
        try:
            proc = psutil.Process(pid)
            if not_before is not None and proc.create_time() < not_before - 1:
                continue
        except psutil.Error:
            continue
        if _alive(proc):
            found.append(proc)
    return found


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

