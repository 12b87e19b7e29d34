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


def annotate(processes: list[dict], pids: dict[int, str], seen: set[int] | None = None) -> tuple[list[dict], list[int]]:
    """Give each GPU process its run id and process name; returns the pids that exist on no
    local process and never did (NVML inside a container reports host pids). `seen` remembers
    pids found alive before, so a process that just ended is not taken for a foreign one."""
    import psutil

    seen = set() if seen is None else seen
    foreign = []
    for p in processes:
        p["run_id"] = pids.get(p["pid"])
        try:
            p["name"] = psutil.Process(p["pid"]).name()
            seen.add(p["pid"])
        except psutil.NoSuchProcess:
            if p["pid"] not in seen and p["run_id"] is None:
                p["foreign"] = True
                foreign.append(p["pid"])
        except psutil.Error:
            pass
    return processes, foreign
