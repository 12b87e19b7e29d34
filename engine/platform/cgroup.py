"""A run's own cgroup v2 (Linux), used as systemd's KillMode=control-group uses one: every process
the run starts stays in it whatever it does (double fork, setsid, a babysitter killed from
outside), so a kill finds them all, and cgroup.kill ends them in one write.

It is made as a child of this process's own cgroup, which needs write access there (root, or a
subtree delegated to the user, as systemd's user@.service is); where that is refused, runs go
without one, and the babysitter (their subreaper) and their session still find their processes.
A path read back from a record is used only if it is a cgroup2 directory named for that run.
Plain file operations on /proc and the cgroup2 mount: on systems without them every function
finds nothing (None, [], False).
"""

from __future__ import annotations

import os
from pathlib import Path

PREFIX = "urbanrun-"


def create(run_id: str) -> str | None:
    """A new, empty cgroup for the run, or None where none can be made here."""
    parent = _own_cgroup()
    if parent is None:
        return None
    path = parent / f"{PREFIX}{run_id}"
    try:
        path.mkdir()
    except OSError:
        return None
    if not (path / "cgroup.procs").is_file():
        remove(str(path), run_id)
        return None
    return str(path)


def pids(path: str | None, run_id: str) -> list[int]:
    """The pids in the run's cgroup (its subgroups included): every process of the run."""
    found = []
    root = _checked(path, run_id)
    if root is None:
        return []
    for procs in [root / "cgroup.procs", *root.rglob("*/cgroup.procs")]:
        try:
            found += [int(line) for line in procs.read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def kill(path: str | None, run_id: str) -> bool:
    """SIGKILL to every process in the run's cgroup at once (Linux 5.14+); False where unsupported."""
    root = _checked(path, run_id)
    if root is None or not (root / "cgroup.kill").exists():
        return False
    try:
        (root / "cgroup.kill").write_text("1")
        return True
    except OSError:
        return False


def remove(path: str | None, run_id: str) -> None:
    """Remove the run's cgroup once it is empty (the kernel refuses while a process is in it)."""
    root = _checked(path, run_id)
    if root is not None:
        try:
            os.rmdir(root)
        except OSError:
            pass


def _checked(path: str | None, run_id: str) -> Path | None:
    """The record's cgroup path, if it names this run's cgroup inside a cgroup2 mount: a record
    edited to name another cgroup (the root one) must never have it killed."""
    if not path:
        return None
    candidate = Path(path)
    mount = _cgroup2_mount()
    if mount is None or candidate.name != f"{PREFIX}{run_id}" or ".." in candidate.parts:
        return None
    if mount not in candidate.parents or not (candidate / "cgroup.procs").is_file():
        return None
    return candidate


def _cgroup2_mount() -> Path | None:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        before, _, after = line.partition(" - ")
        if after.split(" ", 1)[0] == "cgroup2":
            fields = before.split(" ")
            return Path(fields[4]) if len(fields) > 4 and fields[3] == "/" else None
    return None


def _own_cgroup() -> Path | None:
    """This process's cgroup in the cgroup2 hierarchy (the "0::" line of /proc/self/cgroup)."""
    mount = _cgroup2_mount()
    if mount is None:
        return None
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    own = next((line[3:] for line in lines if line.startswith("0::")), None)
    if own is None or ".." in own:
        return None
    path = mount / own.lstrip("/")
    return path if path.is_dir() else None
