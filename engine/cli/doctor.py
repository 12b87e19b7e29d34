"""`urbanrun doctor RUN_OR_LOGFILE` and `urbanrun advise RECIPE`."""

from __future__ import annotations

import json
from pathlib import Path

from urbanrun.engine.diagnosis.advisor import advise
from urbanrun.engine.core.config import Config
from urbanrun.engine.diagnosis.rules import Diagnosis, diagnose
from urbanrun.engine.diagnosis.run_doctor import diagnose_run, read_log_tail
from urbanrun.engine.core.errors import UserError
from urbanrun.engine.session.run_end import run_from_files
from urbanrun.engine.runs.store import RunStore

MARKS = {"error": "✖", "warning": "!", "info": "·"}


def doctor(target: str, store: RunStore) -> tuple[str, list[Diagnosis]]:
    path = Path(target)
    if path.is_file():
        return str(path), diagnose(read_log_tail(path))
    if path.exists():
        raise UserError(f"{path} is a folder: give a log file or a run id (`urbanrun ls --all`).")
    try:
        run_id = store.resolve(target)
    except UserError:
        raise UserError(f"'{target}' is neither a log file nor a run id.") from None
    record = store.load(run_id)
    return run_id, diagnose_run(store, record, run_from_files(store, record))


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
        print(json.dumps({"target": what, "diagnoses": [d.to_dict() for d in found], "changes_since_good": changes},
                         indent=2, default=str))
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
    recipe = config.recipe(args.recipe)
    available, where = None, ""
    if args.gpu_memory is not None:
        if args.gpu_memory <= 0:
            raise UserError(f"--gpu-memory expects GB > 0, not {args.gpu_memory}.")
        available, where = args.gpu_memory, f"{args.gpu_memory:g} GB given"
    else:
        from urbanrun.engine.gpu.sources import default_gpu_source

        status, gpus, _ = default_gpu_source().snapshot()
        if status.get("available") and gpus:
            index = args.gpu or 0
            gpu = next((g for g in gpus if g.get("index") == index), None)
            if gpu is None:
                raise UserError(f"there is no GPU {index} (GPUs: {', '.join(str(g.get('index')) for g in gpus)}).")
            available, where = (gpu.get("mem_free") or 0) / 1e9, f"GPU {index} {gpu.get('name')}"
        else:
            where = status.get("reason", "no GPU")
    advice = advise(recipe, store, available)
    if args.json:
        print(json.dumps({**advice.to_dict(), "gpu": where}, indent=2))
    else:
        print(f"{recipe.name} on {where}: {advice.text}")
    return 0
