"""Which GPU source to use: real NVML, or a recording named by URBANRUN_GPU_RECORDING (tests,
post-mortems, and machines without a GPU that want to see the panes work)."""

from __future__ import annotations

import os

from urbanrun.engine.gpu.recorded import RecordedGpuSource
from urbanrun.engine.gpu.nvml import NvmlSource

RECORDING_ENV = "URBANRUN_GPU_RECORDING"


def default_gpu_source():
    path = os.environ.get(RECORDING_ENV)
    return RecordedGpuSource(path) if path else NvmlSource()


def annotate(processes: list[dict], pids: dict[int, str], seen: set[int] | None = None,
             cache: dict | None = None) -> tuple[list[dict], list[int]]:
    """Give each GPU process its run id, process name, CPU % and RSS; returns the pids that
    exist on no local process and never did (NVML inside a container reports host pids). `seen`
    remembers pids found alive before, so a process that just ended is not taken for a foreign
    one; `cache` keeps the psutil objects between samples (CPU % is measured between two calls)."""
    import psutil

    seen = set() if seen is None else seen
    cache = {} if cache is None else cache
    alive = {}
    foreign = []
    for p in processes:
        pid = p["pid"]
        p["run_id"] = pids.get(pid)
        try:
            proc = cache.get(pid)
            if proc is None or not proc.is_running():  # is_running also checks the create time
                proc = psutil.Process(pid)
            with proc.oneshot():
                p["name"] = proc.name()
                p["cpu"] = round(proc.cpu_percent(None), 1)  # 0.0 at a process's first sample
                p["rss"] = proc.memory_info().rss
            alive[pid] = proc
            seen.add(pid)
        except psutil.NoSuchProcess:
            if pid not in seen and p["run_id"] is None:
                p["foreign"] = True
                foreign.append(pid)
        except psutil.Error:
            pass
    cache.clear()
    cache.update(alive)
    return processes, foreign
