"""The torchrun backend: the recipe's command run by `python -m torch.distributed.run` with
per-rank log files inside the run folder, and every rank's output tee'd into output.log with its
rank prefix. Kill, exit status and reattach are the local backend's (torchrun and its workers are
one process tree in the run's session)."""

from __future__ import annotations

from pathlib import Path

from urbanrun.engine.core.errors import UserError

DEFAULTS = {"nproc_per_node": 2, "nnodes": 1, "rdzv_endpoint": "", "gpus": ""}


def options(config_table: dict, recipe_table: dict, given: dict) -> dict:
    for where, table in (("[backends.torchrun]", config_table), ("the recipe's torchrun table", recipe_table),
                         ("--opt", given)):
        unknown = sorted(set(table) - set(DEFAULTS))
        if unknown:
            raise UserError(f"{where}: '{unknown[0]}' is not a torchrun option; known: {', '.join(DEFAULTS)}.")
    opts = {**DEFAULTS, **config_table, **recipe_table, **given}
    try:
        opts["nproc_per_node"] = int(opts["nproc_per_node"])
        opts["nnodes"] = int(opts["nnodes"])
    except (TypeError, ValueError):
        raise UserError("torchrun option nproc_per_node / nnodes must be a whole number, e.g. --opt nproc_per_node=2.") from None
    if opts["nproc_per_node"] < 1 or opts["nnodes"] < 1:
        raise UserError("torchrun options nproc_per_node and nnodes must be at least 1.")
    return opts


def wrap(argv: list[str], run_dir: Path, opts: dict) -> list[str]:
    """[python, script.py, args…] or [python, -m, module, args…] → the same under torchrun."""
    if len(argv) < 2:
        raise UserError("the torchrun backend needs a Python command: [\"{python}\", \"train.py\", …] or "
                        "[\"{python}\", \"-m\", \"package.module\", …].")
    python, rest = argv[0], argv[1:]
    launcher = [python, "-m", "torch.distributed.run"]
    if opts["nnodes"] > 1 or opts["rdzv_endpoint"]:
        if not opts["rdzv_endpoint"]:
            raise UserError("torchrun with nnodes > 1 needs rdzv_endpoint=HOST:PORT.")
        launcher += [f"--nnodes={opts['nnodes']}", "--rdzv-backend=c10d", f"--rdzv-endpoint={opts['rdzv_endpoint']}"]
    else:
        launcher += ["--standalone"]
    launcher += [f"--nproc-per-node={opts['nproc_per_node']}", f"--log-dir={run_dir / 'ranks'}",
                 "--redirects=3", "--tee=3"]
    if rest[0] == "-m":
        return launcher + ["-m", *rest[1:]]
    return launcher + rest


def env(opts: dict) -> dict[str, str]:
    return {"CUDA_VISIBLE_DEVICES": str(opts["gpus"])} if opts.get("gpus") not in ("", None) else {}


def rank_log(run_dir: Path, rank: int) -> Path | None:
    """A rank's own stdout (torchrun writes <log-dir>/<run id>/attempt_<n>/<rank>/stdout.log)."""
    found = sorted((run_dir / "ranks").glob(f"*/attempt_*/{rank}/stdout.log"))
    return found[-1] if found else None
