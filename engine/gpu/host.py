"""Host telemetry through psutil: CPU per core, RAM, swap, and for each live run its whole
process tree's CPU % and RSS. Also the pid -> run map that ties GPU processes to runs."""

from __future__ import annotations

from pathlib import Path

import psutil

from urbanrun.engine.runs import proctree

HOST_INTERVAL = 2.0


def run_trees(runs: dict[str, tuple[int, float, Path]]) -> dict[str, list[psutil.Process]]:
    """run id -> the live processes of its tree (babysitter first), for runs given as pid + create
    time + run folder (a record copied from a live run's folder names the original's babysitter:
    proctree.root_of tells it by its folder). One pass over the process table serves every run
    (psutil's children() walks the whole table once per call, so once per run)."""
    roots = {run_id: proctree.root_of(run_id, pid, created, run_dir) for run_id, (pid, created, run_dir) in runs.items()}
    roots = {run_id: root for run_id, root in roots.items() if root is not None}
    if not roots:
        return {}
    children: dict[int, list[int]] = {}
    for pid, ppid in parent_pids().items():
        children.setdefault(ppid, []).append(pid)
    trees = {}
    for run_id, root in roots.items():
        members, todo, seen = [root], [root.pid], {root.pid}
        while todo:
            for pid in children.get(todo.pop(), ()):
                if pid in seen:
                    continue
                seen.add(pid)
                try:
                    child = psutil.Process(pid)
                except psutil.Error:  # ended since the table was read (its children, if any, are reparented)
                    continue
                if child.create_time() >= root.create_time():  # not a reused pid (as children() checks)
                    members.append(child)
                    todo.append(pid)
        trees[run_id] = members
    return trees


def parent_pids() -> dict[int, int]:
    """pid -> parent pid of every process, in one pass over the process table: psutil's own map
    (what Process.children() builds; a third of process_iter's CPU, which makes a Process object and
    checks it for pid reuse per process, ~100 of them on a desktop every HOST_INTERVAL)."""
    table = getattr(psutil, "_ppid_map", None)  # psutil's, on every platform it supports
    if table is not None:
        return table()
    return {proc.pid: proc.info["ppid"] for proc in psutil.process_iter(["ppid"])}


def pid_map(trees: dict[str, list[psutil.Process]]) -> dict[int, str]:
    return {p.pid: run_id for run_id, procs in trees.items() for p in procs}


class HostSampler:
    def __init__(self, interval: float = HOST_INTERVAL):
        self.interval = interval
        self.pids: dict[int, str] = {}  # pid -> run id, as of the last sample
        self._cache: dict[int, psutil.Process] = {}  # cpu_percent() needs the same object each time
        self._next = 0.0
        psutil.cpu_percent(percpu=True)  # the first call only starts the measurement

    def sample(self, now: float, runs: dict[str, tuple[int, float, Path]]) -> dict | None:
        if now < self._next:
            return None
        self._next = now + self.interval
        trees = run_trees(runs)
        self.pids = pid_map(trees)
        per_run = {}
        seen = {}
        for run_id, procs in trees.items():
            cpu = rss = 0.0
            for p in procs:
                cached = self._cache.get(p.pid)
                if cached is None or cached.create_time() != p.create_time():
                    cached = p
                seen[p.pid] = cached
                try:
                    with cached.oneshot():
                        cpu += cached.cpu_percent(None)
                        rss += cached.memory_info().rss
                except psutil.Error:
                    continue
            per_run[run_id] = {"cpu": round(cpu, 1), "rss": int(rss), "procs": len(procs)}
        self._cache = seen
        vm, swap = psutil.virtual_memory(), psutil.swap_memory()
        return {"cpu": psutil.cpu_percent(percpu=True), "mem_used": vm.total - vm.available, "mem_total": vm.total,
                "swap_used": swap.used, "swap_total": swap.total, "runs": per_run}
