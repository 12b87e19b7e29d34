"""Host telemetry through psutil: CPU per core, RAM, swap, and for each live run its whole
process tree's CPU % and RSS. Also the pid -> run map that ties GPU processes to runs."""

from __future__ import annotations

from pathlib import Path

import psutil

from urbanrun.engine.runs import proctree

HOST_INTERVAL = 2.0
TREE_SECONDS = 10.0  # how often the process table is walked again while every run's tree holds still


def run_trees(runs: dict[str, tuple[int, float, Path]], table: dict[int, int] | None = None
              ) -> dict[str, list[psutil.Process]]:
    """run id -> the live processes of its tree (babysitter first), for runs given as pid + create
    time + run folder (a record copied from a live run's folder names the original's babysitter:
    proctree.root_of tells it by its folder). One pass over the process table serves every run
    (psutil's children() walks the whole table once per call, so once per run); `table` is that
    pass (parent_pids()) when the caller made it."""
    roots = {run_id: proctree.root_of(run_id, pid, created, run_dir) for run_id, (pid, created, run_dir) in runs.items()}
    roots = {run_id: root for run_id, root in roots.items() if root is not None}
    if not roots:
        return {}
    children: dict[int, list[int]] = {}
    for pid, ppid in (parent_pids() if table is None else table).items():
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
    """Samples every `interval`. The process table is walked (every process's entry read) only
    every `tree_interval`, or at the next sample after a tree changed: a member ended or moved to
    another parent, the runs are not the same, or a GPU process appeared that the last walk did not
    see (note_gpu_pids). In between, each run's known members are sampled (a process a run starts
    in between is counted from the next walk: within `tree_interval`)."""

    def __init__(self, interval: float = HOST_INTERVAL, tree_interval: float = TREE_SECONDS):
        self.interval = interval
        self.tree_interval = tree_interval
        self.pids: dict[int, str] = {}  # pid -> run id, as of the last walk
        self._cache: dict[int, psutil.Process] = {}  # cpu_percent() needs the same object each time
        self._next = 0.0
        self._trees: dict[str, list[psutil.Process]] = {}
        self._parents: dict[int, int | None] = {}  # member pid -> its parent's pid at the last walk
        self._table: frozenset[int] = frozenset()  # every pid alive at the last walk
        self._walked_for: dict | None = None  # the runs the trees were walked for
        self._next_walk = float("-inf")
        psutil.cpu_percent(percpu=True)  # the first call only starts the measurement

    def note_gpu_pids(self, pids) -> None:
        """GPU processes: one no tree holds and the last walk did not see (it started since) may be a
        run's new process: the next sample walks the table again to tie it to its run."""
        if any(pid not in self.pids and pid not in self._table for pid in pids):
            self._next_walk = float("-inf")

    def _walk(self, now: float, runs: dict[str, tuple[int, float, Path]]) -> None:
        table = parent_pids()
        self._trees = run_trees(runs, table)
        self._table = frozenset(table)
        self._parents = {p.pid: table.get(p.pid) for procs in self._trees.values() for p in procs}
        self.pids = pid_map(self._trees)
        self._walked_for = dict(runs)
        self._next_walk = now + self.tree_interval

    def sample(self, now: float, runs: dict[str, tuple[int, float, Path]]) -> dict | None:
        if now < self._next:
            return None
        self._next = now + self.interval
        if now >= self._next_walk or runs != self._walked_for:
            self._walk(now, runs)
        per_run = {}
        seen = {}
        changed = False
        for run_id, procs in self._trees.items():
            cpu = rss = 0.0
            alive = 0
            for p in procs:
                cached = self._cache.get(p.pid)
                if cached is None or cached.create_time() != p.create_time():
                    cached = p
                seen[p.pid] = cached
                try:
                    with cached.oneshot():  # one read of its stat serves the parent and the CPU times
                        if cached.ppid() != self._parents.get(p.pid):  # reparented, or its pid reused
                            changed = True
                            continue
                        cpu += cached.cpu_percent(None)
                        rss += cached.memory_info().rss
                    alive += 1
                except psutil.Error:  # ended since the walk
                    changed = True
            per_run[run_id] = {"cpu": round(cpu, 1), "rss": int(rss), "procs": alive}
        if changed:
            self._next_walk = float("-inf")
        self._cache = seen
        vm, swap = psutil.virtual_memory(), psutil.swap_memory()
        return {"cpu": psutil.cpu_percent(percpu=True), "mem_used": vm.total - vm.available, "mem_total": vm.total,
                "swap_used": swap.used, "swap_total": swap.total, "runs": per_run}
