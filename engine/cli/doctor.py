"""`urbanrun doctor RUN_OR_LOGFILE` and `urbanrun advise RECIPE`."""

from __future__ import annotations

import math
import stat
from pathlib import Path

from urbanrun.engine.cli.output import emit
from urbanrun.engine.diagnosis.advisor import advise
from urbanrun.engine.core.config import Config
from urbanrun.engine.diagnosis.rules import Diagnosis
from urbanrun.engine.diagnosis.run_doctor import output_diagnoses, read_log_tail
from urbanrun.engine.metrics.sources import MetricSource, read_to_end
from urbanrun.engine.session.summary import run_summary
from urbanrun.engine.core.errors import UserError
from urbanrun.engine.core.files import not_regular, path_stat, short
from urbanrun.engine.session.end_files import changes_since_end, ended_diagnoses
from urbanrun.engine.runs.store import RunStore

MARKS = {"error": "✖", "warning": "!", "info": "·"}


def doctor(target: str, store: RunStore, config: Config | None = None) -> tuple[str, list[Diagnosis]]:
    """The diagnoses of a log file, or of a run: for a run, the same list `status` and `show`
    give (its output diagnosed again, with what was found while it ran)."""
    if not target.strip():  # Path("") is ".", the current folder: not what was meant
        raise UserError("doctor needs a log file or a run id (`urbanrun ls --all`), not an empty name.")
    path = Path(target)
    st = path_stat(path, "log file")
    if st is not None and stat.S_ISREG(st.st_mode):
        lines = read_log_tail(path)
        run = read_to_end(MetricSource(path, "log"))  # `Train Loss: nan` is a metric too
        return str(path), output_diagnoses(lines, run, {})
    if st is not None:
        raise UserError(f"{not_regular(short(path), st)} Give a log file or a run id (`urbanrun ls --all`).")
    try:
        run_id = store.resolve(target)
    except UserError as exc:
        if exc.code == "ambiguous_run":
            raise
        raise UserError(f"'{short(target)}' is neither a log file nor a run id.", code=exc.code) from None
    record = store.load(run_id)
    if record.active:
        found = run_summary(store, record, config)["diagnoses"]
    else:  # what status, show and ls say: stored at its end, read again once its files changed
        found = ended_diagnoses(store, record, changes_since_end(store, record))
    return run_id, [Diagnosis.from_dict(d) for d in found]


def changes_of(what: str, store: RunStore) -> dict | None:
    """A run's cross-agent observation (what changed since its recipe's last good run), if it has one."""
    if Path(what).is_file():
        return None
    try:
        return store.load(what).changes_since_good
    except UserError:
        return None


def print_diagnoses(what: str, found: list[Diagnosis], as_json: bool, changes: dict | None = None) -> None:
    if as_json:
        emit({"target": what, "diagnoses": [d.to_dict() for d in found], "changes_since_good": changes})
        return
    if changes:
        print(f"what changed: {changes.get('headline')}\n")
    if not found:
        print(f"{what}: no problem found.")
        return
    for d in found:
        print(f"{MARKS.get(d.severity, '-')} {d.kind}: {d.summary}")
        for line in d.evidence:
            print(f"    | {line}")
        for remedy in d.remedies:
            print(f"    → {remedy}")
        print()


def cmd_advise(args, config: Config, store: RunStore) -> int:
    data = advice(config, store, args.recipe, args.gpu, args.gpu_memory)
    if args.json:
        emit(data)
    else:
        measured = args.gpu_memory is not None or data["gpu"].startswith("GPU ")
        print(f"{data['recipe']} {'on ' + data['gpu'] if measured else '(no GPU here: ' + data['gpu'] + ')'}: "
              f"{data['text']}")
    return 0


def advice(config: Config, store: RunStore, recipe_name: str, gpu_index: int | None = None,
           gpu_memory: float | None = None) -> dict:
    """The largest batch of a recipe that fits: on `gpu_memory` GB, else on the GPU's free memory."""
    recipe = config.recipe(recipe_name)
    available, where = None, ""
    if gpu_memory is not None:
        if not 0 < gpu_memory < math.inf:  # nan and inf are no amount of memory
            raise UserError(f"--gpu-memory expects GB > 0, not {gpu_memory}.")
        available, where = gpu_memory, f"a {gpu_memory:g} GB GPU (as given)"
    else:
        from urbanrun.engine.gpu.sources import default_gpu_source

        status, gpus, _ = default_gpu_source().snapshot()
        if status.get("available") and gpus:
            index = gpu_index or 0
            gpu = next((g for g in gpus if g.get("index") == index), None)
            if gpu is None:
                raise UserError(f"there is no GPU {index} (GPUs: {', '.join(str(g.get('index')) for g in gpus)}).")
            available, where = (gpu.get("mem_free") or 0) / 1e9, f"GPU {index} {gpu.get('name')}"
        else:
            where = status.get("reason", "no GPU")
    return {**advise(recipe, store, available).to_dict(), "gpu": where}
