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
    children: dict[int, list[psutil.Process]] = {}
    for proc in psutil.process_iter(["ppid"]):
        children.setdefault(proc.info["ppid"], []).append(proc)
    trees = {}
    for run_id, root in roots.items():
        members, todo, seen = [root], [root.pid], {root.pid}
        while todo:
            for child in children.get(todo.pop(), ()):
                if child.pid not in seen:
                    seen.add(child.pid)
                    members.append(child)
                    todo.append(child.pid)
        trees[run_id] = members
    return trees


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
