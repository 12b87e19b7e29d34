"""Next actions: a run's diagnoses turned into steps an agent can take without reading prose.

Each action is `{"kind": "relaunch", "recipe", "set", "env", "launch_args", "why"}` (the `set`
values are checked against the recipe, and `launch_args` is the argv for `urbanrun launch`),
`{"kind": "kill", "run", "why"}` or `{"kind": "inspect", "file", "line", "why"}`.
"""

from __future__ import annotations

from urbanrun.engine.core.config import Recipe
from urbanrun.engine.core.params import ParamError
from urbanrun.engine.diagnosis.rules import last_traceback
from urbanrun.engine.diagnosis.run_doctor import remedy_options
from urbanrun.engine.runs.store import RunRecord

LR_FACTOR = 0.1
CODE_ERRORS = {"traceback", "device_mismatch", "edge_index_dtype", "edge_index_range", "device_assert",
               "swallowed_error", "shape_mismatch", "torchrun_child_failed", "exit_code", "signal"}


def next_actions(record: RunRecord, diagnoses: list[dict], recipe: Recipe | None, lines: list[str],
                 log_path: str, first_line_no: int = 1) -> list[dict]:
    """Actions for the diagnoses, most useful first, without repeats. `lines` are the last lines of
    the run's log, the first of them being line `first_line_no` of `log_path`."""
    actions: list[dict] = []
    kinds = {d.get("kind"): d for d in diagnoses if d.get("severity") in ("error", "warning")}

    def add(action: dict | None) -> None:
        if action is not None and action not in actions:
            actions.append(action)

    if record.active and kinds.keys() & {"nan_loss", "diverging", "hang"}:
        why = {"nan_loss": "the loss is NaN/Inf: the run cannot recover", "diverging": "the loss diverges",
               "hang": "the run makes no progress"}
        add({"kind": "kill", "run": record.id, "why": next(why[k] for k in why if k in kinds) + "; stop it to "
             "free the GPU before relaunching."})
    if oom := kinds.get("cuda_oom"):
        if (oom.get("facts") or {}).get("fragmented"):
            add(_relaunch(record, recipe, {}, {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"},
                          "fragmentation: much GPU memory is reserved but unallocated"))
        for change, text in remedy_options(recipe, record.params) if recipe else []:
            add(_relaunch(record, recipe, change, {}, f"CUDA out of memory: {text}"))
    if kinds.keys() & {"nan_loss", "diverging"}:
        lr = record.params.get("lr", recipe.defaults().get("lr") if recipe else None)
        if isinstance(lr, (int, float)) and lr > 0:
            add(_relaunch(record, recipe, {"lr": float(f"{lr * LR_FACTOR:.3g}")}, {},
                          f"the loss became NaN/Inf or diverged: lr {lr:g} -> {lr * LR_FACTOR:.3g}"))
    if "input_bound" in kinds:
        workers = record.params.get("workers") or 0
        add(_relaunch(record, recipe, {"workers": max(4, workers * 2)}, {},
                      "the GPU waits for data: more DataLoader workers"))
    if "host_oom" in kinds and (record.params.get("workers") or 0) > 0:
        add(_relaunch(record, recipe, {"workers": 0}, {}, "host RAM ran out: no DataLoader worker processes"))
    if kinds.keys() & CODE_ERRORS:
        d = next(kinds[k] for k in kinds if k in CODE_ERRORS)
        add(_inspect_code(lines, log_path, first_line_no, d))
    for kind in ("hang", "leak", "nccl", "nan_metric"):
        if kind in kinds:
            add({"kind": "inspect", "file": log_path, "line": _line_of(lines, kinds[kind], first_line_no),
                 "why": kinds[kind].get("summary", kind)})
    return actions


def _relaunch(record: RunRecord, recipe: Recipe | None, change: dict, env: dict, why: str) -> dict | None:
    """A relaunch with `change`, or None when the recipe has no such parameter or refuses the value."""
    if recipe is None:
        return None
    texts = []
    for name, value in change.items():
        if not _has(recipe, name):
            return None
        param = recipe.param(name)
        try:
            param.parse(value)
        except ParamError:  # a value outside the parameter's bounds
            return None
        texts += ["--set", f"{name}={' '.join(param.format(value))}"]
    for name, value in env.items():
        texts += ["--env", f"{name}={value}"]
    keep = [f"{k}={' '.join(recipe.param(k).format(v))}" for k, v in record.changed.items()
            if k not in change and _has(recipe, k)]
    args = [recipe.name] + [x for k in keep for x in ("--set", k)] + texts
    return {"kind": "relaunch", "recipe": recipe.name, "set": change, "env": env, "launch_args": args, "why": why}


def _has(recipe: Recipe, name: str) -> bool:
    return any(p.name == name for p in recipe.params)


def _inspect_code(lines: list[str], log_path: str, first_line_no: int, d: dict) -> dict:
    """The deepest frame of the user's own code in the last traceback, else the log line of the error."""
    _, frame, _ = last_traceback([line.rsplit("\r", 1)[-1] for line in lines])
    if frame is not None:
        return {"kind": "inspect", "file": frame[0], "line": frame[1], "why": f"{d.get('summary')} (in {frame[2]})"}
    return {"kind": "inspect", "file": log_path, "line": _line_of(lines, d, first_line_no), "why": d.get("summary")}


def _line_of(lines: list[str], d: dict, first_line_no: int) -> int | None:
    """The log line number of the diagnosis's last evidence line, if it is among `lines`."""
    for evidence in reversed(d.get("evidence") or []):
        for i in range(len(lines) - 1, -1, -1):
            if evidence and evidence in lines[i]:
                return first_line_no + i
    return None
