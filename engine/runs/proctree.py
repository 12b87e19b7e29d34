"""Process identity and a run's process tree, through psutil and the platform layer (sessions, jobs).

A process is (pid, create_time): a pid alone can be reused by an unrelated process after a
reboot or a long time, and must never fool reattach or kill.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from urbanrun.engine import platform

CREATE_TIME_TOLERANCE = 0.05  # seconds; psutil's create_time is rounded by the kernel clock tick


def process_if_same(pid: int | None, create_time: float | None) -> psutil.Process | None:
    """The live process with this pid and create time, or None (gone, reused, or a zombie).
    Without a create time there is no identity: a bare pid is never taken for a process."""
    if not pid or create_time is None:
        return None
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > CREATE_TIME_TOLERANCE:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def run_root(record, run_dir: Path | None = None) -> psutil.Process | None:
    """The live process a run record names (its babysitter, or its queue gate): the pid and create
    time must match, and its command line must name the run's folder, as every babysitter and gate
    is started with it. A record copied from another run's folder (or edited) names that run's
    babysitter, with the right create time: killing the copy must never stop the original. With
    `run_dir` (the record's own folder), a copy in another runs folder, with the same id, is told
    apart too (copied_from)."""
    return root_of(record.id, record.pid, record.pid_create_time, run_dir)


# (run id, pid, create time, run folder) of processes whose command line was seen to name that
# folder: asked of every live run at every poll, the answer stands while the process lives (the
# gate execs into the babysitter, same pid, both started with the folder), so it is read once.
_named_their_folder: dict[tuple, None] = {}
NAMED_KEPT = 4096


def root_of(run_id: str, pid: int | None, created: float | None, run_dir: Path | None = None) -> psutil.Process | None:
    proc = process_if_same(pid, created)
    if proc is None:
        return None
    key = (run_id, pid, created, str(run_dir))
    if key in _named_their_folder:
        return proc
    try:
        argv = proc.cmdline()
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:  # not ours to read (hidepid): no proof either way, the identity stands
        return proc
    if not argv:  # empty while the gate execs into the babysitter (same pid): no proof either way
        return proc
    named = _naming(argv, run_id)
    if not named or (run_dir is not None and _another_folder(named, run_dir) is not None):
        return None
    if len(_named_their_folder) >= NAMED_KEPT:  # a long session: forget the oldest (ended runs')
        del _named_their_folder[next(iter(_named_their_folder))]
    _named_their_folder[key] = None
    return proc


def copied_from(record, run_dir: Path) -> str | None:
    """The folder whose run the record's process is, when that is not `run_dir`: the record was
    copied (with its folder, say a backup of a live run's runs folder) from a run still alive.
    Nothing of that run is this record's: not its processes, its cgroup, its GPU memory."""
    proc = process_if_same(record.pid, record.pid_create_time)
    if proc is None:
        return None
    try:
        argv = proc.cmdline()
    except psutil.Error:
        return None
    return _another_folder(_naming(argv, record.id), run_dir)


def _naming(argv: list[str], run_id: str) -> list[str]:
    """The arguments that name the run's folder (the babysitter's and the gate's RUN_DIR)."""
    return [arg for arg in argv if os.path.basename(arg.rstrip("/\\")) == run_id]


def _another_folder(named: list[str], run_dir: Path) -> str | None:
    """The folder the process was started with, when it exists and is not run_dir (another inode:
    a copy). A folder that no longer exists proves nothing (the run's folder was moved here)."""
    for arg in named:
        try:
            if os.path.samefile(arg, run_dir):
                return None
        except OSError:
            return None  # gone (moved), or not a path here: no proof of a copy
    return named[0] if named else None


def names_run(proc: psutil.Process, run_id: str) -> bool:
    """False when the process's environment names another run (URBANRUN_RUN_ID, which every run's
    command is started with): a copied child.json names the original run's command. An environment
    that cannot be read, or without the variable (an exec with a cleared one), proves nothing."""
    try:
        named = proc.environ().get("URBANRUN_RUN_ID")
    except psutil.Error:
        return True
    return named is None or named == run_id


def carrying_run_id(run_id: str, not_before: float | None) -> list[psutil.Process]:
    """Live processes started (no earlier than the run) with this run's URBANRUN_RUN_ID in their
    environment, as every process of the run is, orphans and daemons that left its session included: the run's
    processes where its babysitter was killed from outside and no cgroup or job holds them. One
    pass over the processes this user may read; never this process itself."""
    found = []
    for proc in psutil.process_iter(["create_time"]):
        try:
            if proc.pid == os.getpid() or (not_before is not None and proc.info["create_time"] < not_before - 1):
                continue
            if proc.environ().get("URBANRUN_RUN_ID") == run_id and alive(proc):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def create_time_of(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def identity(proc: psutil.Process, why: bool = False) -> dict:
    """What a record keeps of a process: pid + create time (its identity) and its name; with `why`,
    its state and why the hard kill may not have ended it yet."""
    out = {"pid": proc.pid, "created": _created(proc)}
    try:
        out["name"] = proc.name()
        if why:
            out["state"] = proc.status()
            out["why"] = WHY.get(out["state"], "it has not ended yet")
    except psutil.AccessDenied:
        out["why"] = "urbanrun may not inspect or signal it (permission denied)"
    except psutil.NoSuchProcess:
        pass
    return out


WHY = {psutil.STATUS_DISK_SLEEP: "uninterruptible sleep (state D): the kill takes effect when its I/O returns",
       psutil.STATUS_STOPPED: "stopped (state T)", psutil.STATUS_TRACING_STOP: "stopped by a tracer (state t)"}


def recorded(identities: list[dict]) -> list[psutil.Process]:
    """The live processes among identities a record kept, checked by pid and create time."""
    found = []
    for item in identities:
        proc = process_if_same(item.get("pid"), item.get("created"))
        if proc is not None:
            found.append(proc)
    return found


def _created(proc: psutil.Process) -> float | None:
    try:
        return proc.create_time()
    except psutil.Error:
        return None


def descendants(root: psutil.Process) -> list[psutil.Process]:
    try:
        return root.children(recursive=True)
    except psutil.Error:
        return []


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
    return [p for p in members.values() if alive(p)]


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
        if alive(proc):
            found.append(proc)
    return found


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

