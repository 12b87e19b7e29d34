"""What a run asks of the GPU-aware queue: memory per GPU (`--mem`, else the advisor's estimate from
earlier runs, else the recipe's `memory` estimate), how many GPUs, its priority, and the recipe's
`exclusive` / `max_per_gpu`. Checked here, before anything is written."""

from __future__ import annotations

import math

from urbanrun.engine.core.config import Config
from urbanrun.engine.core.errors import UserError
from urbanrun.engine.diagnosis.advisor import estimate_gb, memory_model
from urbanrun.engine.runs.store import RunStore


def queue_request(config: Config, store: RunStore, recipe_name: str, values: dict, mem_gb: float | None = None,
                  gpus: int | None = None, priority: int = 0) -> dict:
    recipe = config.recipe(recipe_name)
    if mem_gb is not None and not (isinstance(mem_gb, (int, float)) and math.isfinite(mem_gb) and mem_gb > 0):
        raise UserError(f"--mem expects the GB of GPU memory the run needs (a number > 0), not {mem_gb}.")
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1):
        raise UserError(f"--gpus expects a whole number of GPUs >= 1, not {gpus}.")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise UserError(f"--priority expects a whole number (higher starts first), not {priority}.")
    if mem_gb is None:
        estimate = estimate_gb(memory_model(recipe, store), values)
        if estimate is None:
            raise UserError(f"recipe '{recipe.name}' has no memory estimate and no earlier runs to learn one from: "
                            f"give --mem GB (or set `memory = {{ fixed_gb = ... }}` in {config.path}).")
        mem_gb = estimate[0]
    return {"mem_gb": round(float(mem_gb), 3), "gpus": gpus or 1, "priority": priority,
            "exclusive": recipe.exclusive, "max_per_gpu": recipe.max_per_gpu}
