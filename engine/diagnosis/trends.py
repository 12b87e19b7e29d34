"""Diagnoses from how a live run behaves over time: GPU memory that keeps growing (a leak), a
hang, a run starved by data loading, a loss that diverges."""

from __future__ import annotations

from urbanrun.engine.diagnosis.rules import Diagnosis

MB = 2 ** 20


def leak(steps, mem_bytes, capacity: float | None = None, steps_per_s: float | None = None,
         warmup: float = 0.2) -> Diagnosis | None:
    """Memory growing step after step after warm-up: slope in MB/step, and when it runs out."""
    import numpy as np  # in the two checks, not at the top: the CLI's record-only commands import this

    x, y = np.asarray(steps, dtype=float), np.asarray(mem_bytes, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    skip = max(5, int(len(x) * warmup))
    if len(x) - skip < 20:
        return None
    x, y = x[skip:], y[skip:]
    slope, intercept = np.polyfit(x, y, 1)
    fitted = slope * x + intercept
    ss_res, ss_tot = float(((y - fitted) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else 0.0
    growth = slope * (x[-1] - x[0])
    if slope <= 0 or r2 < 0.8 or growth < max(32 * MB, 0.05 * float(y.mean())):
        return None
    facts = {"slope_mb_per_step": slope / MB, "r2": r2, "growth_mb": growth / MB, "last_mb": float(y[-1]) / MB}
    summary = f"GPU memory grows {slope / MB:.2f} MB/step after warm-up ({growth / MB:.0f} MB over {x[-1] - x[0]:.0f} steps)"
    if capacity:
        left = (capacity - y[-1]) / slope
        facts["steps_to_full"] = left
        summary += f"; at this rate it runs out in {left:.0f} steps"
        if steps_per_s:
            summary += f" (~{left / steps_per_s / 60:.0f} min)"
    return Diagnosis("leak", "warning", summary, (f"fit over {len(x)} points, R² {r2:.2f}",),
                     ("A tensor is kept alive with its graph: log loss.item() (not loss), don't append outputs or "
                      "losses to lists without .detach(), clear caches you fill per step.",
                      "torch.cuda.memory_summary() / the memory snapshot tool show what grows."), facts)


def hang(idle_seconds: float, gpu_util: float | None, threshold: float = 600.0) -> Diagnosis | None:
    if idle_seconds < threshold or (gpu_util is not None and gpu_util > 5):
        return None
    util = "" if gpu_util is None else f", GPU utilisation {gpu_util:.0f}%"
    return Diagnosis("hang", "warning", f"No new output or metrics for {idle_seconds / 60:.0f} min while the process "
                     f"is alive{util}", (f"last output {idle_seconds:.0f} s ago",),
                     ("Dump its Python stacks: py-spy dump --pid PID (pip install py-spy) shows where every thread waits.",
                      "Common causes: a DataLoader worker deadlock (try num_workers=0), a collective waiting for a "
                      "dead rank, input() or a breakpoint."), {"idle_seconds": idle_seconds})


def input_bound(gpu_util: float | None, run_cpu_percent: float | None) -> Diagnosis | None:
    if gpu_util is None or run_cpu_percent is None or gpu_util >= 30 or run_cpu_percent < 90:
        return None
    return Diagnosis("input_bound", "warning", f"GPU mostly idle ({gpu_util:.0f}%) while the run's CPU is pegged "
                     f"({run_cpu_percent:.0f}%): data loading is the bottleneck", (),
                     ("More DataLoader workers (--set workers=4) and pin_memory=True; precompute or cache features "
                      "(the cone cache does this for cones); move augmentation to the GPU.",),
                     {"gpu_util": gpu_util, "cpu": run_cpu_percent})


def diverging(values, factor: float = 5.0, points: int = 2) -> Diagnosis | None:
    """The latest `points` finite values all far above the best before them (factor x the best and
    twice the median so far): 0.41 -> 27 -> 300 warns at 300, while a converging loss's noise does not."""
    import numpy as np

    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    if len(finite) <= points:
        return None
    before, recent = finite[:-points], finite[-points:].tolist()
    best = float(before.min())
    if best <= 0 or min(recent) <= best * factor or min(recent) <= float(np.median(before)) * 2:
        return None
    last = recent[-1]
    return Diagnosis("diverging", "warning", f"The loss is diverging: {last:.4g} now against a best of {best:.4g}",
                     (f"last {points} values: {', '.join(f'{v:.4g}' for v in recent)}",),
                     ("Lower the learning rate (or lengthen warm-up) and clip gradients.",), {"best": best, "last": last})
