"""Memory advisor: which batch size fits a GPU. From the peaks measured in earlier runs of the
recipe at different batch sizes, fit memory ≈ fixed + per_sample × batch and take the largest
batch that fits the GPU's free memory with a safety margin. Without history, use the recipe's
declared estimate (`[recipes.X.memory]`) and say it is an estimate."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from urbanrun.engine.core.config import Recipe
from urbanrun.engine.core.state import GPU_MEM_KEY
from urbanrun.engine.runs.store import METRICS_FILE, RunStore

GB = 1e9
MARGIN = 0.10  # keep 10% of free memory spare: fragmentation, other processes, peaks between samples


@dataclass
class Advice:
    recipe: str
    basis: str  # "history" | "estimate" | "none"
    fixed_gb: float | None
    per_sample_gb: float | None
    available_gb: float | None
    batch_param: str | None
    batch: int | None  # the largest batch that fits, None when nothing fits or nothing is known
    fits: bool | None  # for a recipe without a batch: does it fit at all
    points: list = field(default_factory=list)
    text: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def memory_spec(recipe: Recipe) -> dict:
    spec = dict(recipe.memory)
    spec.setdefault("batch_param", "batch_size" if any(p.name == "batch_size" for p in recipe.params) else None)
    return spec


def history(store: RunStore, recipe: Recipe, batch_param: str | None) -> list[tuple[float, float]]:
    """(batch, peak GB) of finished runs of this recipe: the recorded peak (NVML's per-run figure,
    or the run's own `gpu_mem` where NVML had none), else the highest `gpu_mem` (bytes) or
    `mem_peak_gb` in its metrics.jsonl (a run that ended while no urbanrun watched)."""
    points = []
    records, _ = store.load_all()
    for r in records:
        if r.recipe != recipe.name or not batch_param or batch_param not in r.params:
            continue
        peak = r.gpu_mem_peak_mb * 2 ** 20 / GB if r.gpu_mem_peak_mb else _torch_peak(store, r.id)
        if peak:
            points.append((float(r.params[batch_param]), peak))
    return points


def _torch_peak(store: RunStore, run_id: str) -> float | None:
    path = store.run_dir(run_id) / METRICS_FILE
    best = None
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if GPU_MEM_KEY in line or "mem_peak_gb" in line:
                    try:
                        point = json.loads(line)
                    except ValueError:
                        continue
                    for key, scale in ((GPU_MEM_KEY, 1), ("mem_peak_gb", 2 ** 30)):
                        value = point.get(key) if isinstance(point, dict) else None
                        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf:
                            best = max(best or 0.0, value * scale / GB)
    except OSError:
        return None
    return best


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """fixed, per_sample (GB) by least squares; one distinct batch size: all of it per sample."""
    batches = {b for b, _ in points}
    if len(batches) < 2:
        b, peak = max(points)
        return 0.0, peak / b
    import numpy as np  # here: the launch form imports this module before its first estimate

    x = np.array([b for b, _ in points])
    y = np.array([p for _, p in points])
    per_sample, fixed = np.polyfit(x, y, 1)
    if per_sample <= 0:  # noise: fall back to the most conservative per-sample figure
        return 0.0, float(max(y / x))
    return max(0.0, float(fixed)), float(per_sample)


def largest_batch(fixed: float, per_sample: float, available: float, margin: float = MARGIN,
                  upper: int | None = None) -> int | None:
    budget = available * (1 - margin) - fixed
    if budget < per_sample:
        return None
    batch = int(budget // per_sample)
    return min(batch, upper) if upper else batch


def advise(recipe: Recipe, store: RunStore, available_gb: float | None, margin: float = MARGIN) -> Advice:
    model = memory_model(recipe, store)
    param = memory_spec(recipe).get("batch_param")
    if model is None:
        return Advice(recipe.name, "none", None, None, available_gb, param, None, None,
                      text=f"no memory history or estimate for '{recipe.name}': run it once (urbanrun records its "
                           f"GPU peak) or declare [recipes.{recipe.name}.memory] per_sample_gb / fixed_gb.")
    fixed, per_sample, source, _ = model
    basis = "history" if source == "from earlier runs" else "estimate"
    points = history(store, recipe, param) if basis == "history" else []
    upper = None
    if param:
        p = next((p for p in recipe.params if p.name == param), None)
        upper = int(p.max) if p is not None and p.max is not None else None
    advice = Advice(recipe.name, basis, fixed, per_sample, available_gb, param, None, None, points=points)
    what = ("measured in " + f"{len(points)} earlier run(s)" if basis == "history" else "the recipe's declared estimate")
    law = f"{fixed:.2f} GB" + (f" + {per_sample:.3f} GB × {param}" if per_sample and param else "")
    if available_gb is None:
        advice.text = f"memory ≈ {law} ({what}); no GPU to fit it to: give --gpu-memory GB."
        return advice
    if per_sample and param:
        advice.batch = largest_batch(fixed, per_sample, available_gb, margin, upper)
        advice.fits = advice.batch is not None
        if advice.batch:
            advice.text = (f"largest {param} that fits {available_gb:.1f} GB free (keeping {margin:.0%} spare): "
                           f"{advice.batch} — memory ≈ {law} ({what}).")
        else:
            advice.text = (f"even {param}=1 needs ≈ {fixed + per_sample:.1f} GB, more than {available_gb:.1f} GB free "
                           f"({what}): use gradient checkpointing, mixed precision or a bigger GPU.")
    else:
        advice.fits = fixed <= available_gb * (1 - margin)
        advice.text = (f"needs ≈ {fixed:.0f} GB ({what}); {available_gb:.1f} GB free: "
                       + ("fits." if advice.fits else "does not fit — use a bigger GPU or a partitioned/sampled graph."))
    return advice


def memory_model(recipe: Recipe, store: RunStore) -> tuple[float, float, str, str | None] | None:
    """(fixed GB, per-sample GB, where the figures come from, batch parameter), or None if unknown.
    Reads the run records once: callers evaluating many values keep the result."""
    spec = memory_spec(recipe)
    param = spec.get("batch_param")
    points = history(store, recipe, param)
    if points:
        fixed, per_sample = fit(points)
        return fixed, per_sample, "from earlier runs", param
    if "per_sample_gb" in spec or "fixed_gb" in spec:
        return float(spec.get("fixed_gb", 0.0)), float(spec.get("per_sample_gb", 0.0)), "estimate", param
    return None


def estimate_gb(model: tuple[float, float, str, str | None] | None, values: dict) -> tuple[float, str] | None:
    """Memory for these form values (GB) and where the figure comes from."""
    if model is None:
        return None
    fixed, per_sample, basis, param = model
    batch = values.get(param) if param else None
    return fixed + per_sample * (batch if isinstance(batch, (int, float)) else 0), basis
