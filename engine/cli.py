"""The urbanrun command line: the interface for scripts and coding agents.

Exit codes: 0 ok, 2 bad input (one sentence on stderr), 1 a failure. `--json` everywhere.
With no command, urbanrun opens the TUI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .config import load_config
from .errors import UserError
from .runs import RunRecord, RunStore
from .supervisor import Supervisor
from .tail import FileFollower, last_lines

FOLLOW_INTERVAL = 0.2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one sentence, exit 2
        self.exit(2, f"urbanrun: {message} (see `{self.prog} --help`).\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="urbanrun", description="Launch, watch, diagnose and kill GPU training runs.")
    config_help = "config file (default: ./config.toml, else the packaged default)"
    runs_help = "runs folder (default: the config's runs_dir; env URBANRUN_RUNS_DIR)"
    p.add_argument("--config", help=config_help)
    p.add_argument("--runs-dir", help=runs_help)
    p.add_argument("--demo", action="store_true", help="open the TUI and launch the demo recipe at once")
    p.add_argument("--replay", metavar="SESSION.jsonl", help="play a recorded session in the TUI")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed (default 1: real pace)")
    p.add_argument("--headless", action="store_true", help="with --replay: no terminal; print a summary")
    p.add_argument("--screenshot", metavar="OUT.svg", help="with --replay --headless: save the final screen")
    # the same options after the command too (`urbanrun ls --runs-dir X`); SUPPRESS keeps the
    # value given before the command when they are not repeated after it
    common = _Parser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    common.add_argument("--runs-dir", default=argparse.SUPPRESS, help=runs_help)
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    _add = sub.add_parser
    sub.add_parser = lambda *a, **kw: _add(*a, parents=[common], **kw)

    s = sub.add_parser("launch", help="launch a run from a recipe")
    s.add_argument("recipe")
    s.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="set a recipe parameter")
    s.add_argument("--follow", "-f", action="store_true", help="stream its log until it ends")
    s.add_argument("--backend", choices=["local", "torchrun", "slurm"], help="where to run (default: the recipe's)")
    s.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a backend option, e.g. nproc_per_node=2 (torchrun) or partition=gpu, gres=gpu:1 (slurm)")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("ls", help="list runs")
    s.add_argument("--all", action="store_true", help="every run, not only active and recent ones")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("show", help="one run's record and log tail")
    s.add_argument("run")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("kill", help="stop a run's whole process tree")
    s.add_argument("run")
    s.add_argument("--force", action="store_true", help="SIGKILL at once instead of SIGTERM first")
    s.add_argument("--grace", type=float, default=None, help="seconds between SIGTERM and SIGKILL")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("logs", help="print a run's output")
    s.add_argument("run")
    s.add_argument("-f", "--follow", action="store_true", help="keep printing new output until the run ends")
    s.add_argument("-n", "--lines", type=int, default=None, help="only the last N lines")
    s.add_argument("--rank", type=int, default=None, help="a torchrun run: that rank's own log")

    s = sub.add_parser("metrics", help="per-metric summary of a metrics file, folder or run")
    s.add_argument("target", metavar="PATH_OR_RUN")
    s.add_argument("--follow", "-f", action="store_true", help="print new points as they arrive")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("doctor", help="diagnose a run or any log file")
    s.add_argument("target", metavar="RUN_OR_LOGFILE")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("advise", help="the largest batch size that fits a GPU")
    s.add_argument("recipe")
    s.add_argument("--gpu", type=int, default=None, help="GPU index (default 0)")
    s.add_argument("--gpu-memory", type=float, default=None, metavar="GB", help="free memory to plan for, in GB")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("scratchpad", help="the dated notes: show, log TEXT, finish")
    s.add_argument("action", choices=["show", "log", "finish"])
    s.add_argument("text", nargs="*", help="for log: the entry's text")
    s.add_argument("--yes", action="store_true", help="for finish: write the drafted summary")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("import", help="add runs found on disk (lightning_logs, wandb, TensorBoard) as read-only runs")
    s.add_argument("path")
    s.add_argument("--name", help="a name for the imported run (default: the folder's name)")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("gpus", help="GPUs and their processes (with runs), like nvidia-smi")
    s.add_argument("--query-gpu", metavar="FIELDS", help="nvidia-smi fields, e.g. index,memory.used,memory.total")
    s.add_argument("--format", metavar="csv[,noheader][,nounits]", help="output format for --query-gpu")
    s.add_argument("-l", "--loop", type=float, metavar="SECONDS", help="repeat every SECONDS")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("recipes", help="list recipes and their parameters")
    s.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except UserError as exc:
        print(f"urbanrun: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `urbanrun logs X | head`
        return 0


def _dispatch(args) -> int:
    config = load_config(args.config)
    runs_dir = args.runs_dir or os.environ.get("URBANRUN_RUNS_DIR")
    store = RunStore(Path(runs_dir) if runs_dir else config.runs_dir)
    sup = Supervisor(config, store)
    if args.command is None:
        from tui.main import run_tui  # the TUI is imported only when it is asked for

        return run_tui(config, store.root, demo=args.demo, replay=args.replay, speed=args.speed,
                       headless=args.headless, screenshot=args.screenshot)
    handler = {"launch": cmd_launch, "ls": cmd_ls, "show": cmd_show, "kill": cmd_kill,
               "logs": cmd_logs, "metrics": cmd_metrics, "gpus": cmd_gpus, "import": cmd_import, "doctor": cmd_doctor, "advise": cmd_advise,
               "scratchpad": cmd_scratchpad,
               "recipes": cmd_recipes}[args.command]
    return handler(args, config, store, sup)


# -- commands ------------------------------------------------------------------------------------
def cmd_launch(args, config, store: RunStore, sup: Supervisor) -> int:
    overrides = {}
    for item in args.set:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise UserError(f"--set expects NAME=VALUE (e.g. --set batch_size=16), not '{item}'.")
        overrides[name.strip()] = value
    options = {}
    for item in args.opt:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"--opt expects KEY=VALUE (e.g. --opt nproc_per_node=2), not '{item}'.")
        options[key.strip()] = value
    record = sup.launch(args.recipe, overrides, backend=args.backend, options=options)
    _autolog(config).launched(record)
    if args.json:
        _print_json(record.to_json(store.run_dir(record.id)))
    else:
        print(f"launched {record.id} (pid {record.pid}): {' '.join(record.argv)}", file=sys.stderr)
        if not args.follow:
            print(record.id)
    if record.status == "failed":
        return 1
    if args.follow:
        return _follow(store, sup, record.id, from_start=True)
    return 0


def cmd_ls(args, config, store, sup) -> int:
    records, problems = refreshed(store, sup)
    if not args.all:
        active = [r for r in records if r.active]
        recent = [r for r in records if not r.active][-20:]
        records = sorted(active + recent, key=lambda r: r.id)
    for problem in problems:
        print(f"urbanrun: {problem}", file=sys.stderr)
    if args.json:
        _print_json([r.to_json(store.run_dir(r.id)) for r in records])
        return 0
    if not records:
        print(f"no runs in {store.root} yet; start one with `urbanrun launch cones`.")
        return 0
    rows = [("ID", "RECIPE", "STATUS", "EXIT", "STARTED", "RUNTIME")]
    for r in records:
        status = f"{r.status} ({r.pending_reason})" if r.status == "pending" and r.pending_reason else r.status
        rows.append((r.id, r.recipe, status, exit_text(r), _clock(r.started), _runtime(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def cmd_show(args, config, store, sup) -> int:
    record = _refreshed_one(store, sup, args.run)
    run_dir = store.run_dir(record.id)
    if args.json:
        _print_json(record.to_json(run_dir))
        return 0
    data = record.to_json(run_dir)
    for key in ("id", "recipe", "status", "exit_code", "signal", "error", "pid", "started", "ended",
                "cwd", "git_commit", "run_dir"):
        if data.get(key) is not None:
            print(f"{key:<11} {data[key]}")
    print(f"{'argv':<11} {' '.join(record.argv)}")
    if record.changed:
        print(f"{'changed':<11} " + ", ".join(f"{k}={v}" for k, v in record.changed.items()))
    log = store.log_path(record)
    if log.exists():
        print("── last lines of output.log ──")
        _write_lines(last_lines(log, 10))
    return 0


def cmd_kill(args, config, store, sup: Supervisor) -> int:
    run_id = store.resolve(args.run)
    t0 = time.monotonic()
    record = sup.request_kill(run_id, args.grace, args.force)
    _autolog(config).killed(record)
    deadline = (record.kill_deadline or time.time()) + 30
    while True:
        _reconcile(store, sup, record)
        survivors = sup.survivors(record)
        if not record.active and not survivors:
            break
        if time.time() > deadline:
            pids = ", ".join(str(p.pid) for p in survivors) or "the babysitter"
            print(f"urbanrun: run {run_id} did not stop: still alive: {pids}.", file=sys.stderr)
            return 1
        time.sleep(0.1)
    took = time.monotonic() - t0
    if args.json:
        _print_json(record.to_json(store.run_dir(run_id)))
    else:
        print(f"killed {run_id} ({exit_text(record)}) in {took:.1f}s; no process of its tree is left.")
    return 0


def cmd_logs(args, config, store, sup) -> int:
    run_id = store.resolve(args.run)
    log = store.log_path(store.load(run_id))
    if args.rank is not None:
        from .backends.torchrun import rank_log

        log = rank_log(store.run_dir(run_id), args.rank)
        if log is None:
            raise UserError(f"run {run_id} has no log for rank {args.rank} (only torchrun runs have per-rank logs).")
    if args.lines is not None and args.lines < 0:
        raise UserError(f"-n expects a number of lines >= 0, not {args.lines}.")
    if not args.follow:
        if log.exists():
            lines = last_lines(log, args.lines) if args.lines is not None else log.read_text(
                encoding="utf-8", errors="replace").splitlines()
            _write_lines(lines)
        return 0
    return _follow(store, sup, run_id, from_start=args.lines is None, last=args.lines, log=log)


def cmd_metrics(args, config, store, sup) -> int:
    from . import cli_metrics

    sources = cli_metrics.sources_for(args.target, store)
    summary = cli_metrics.summarise(sources)
    if args.follow:
        if not args.json:
            cli_metrics.print_summary(summary)
        return cli_metrics.follow(sources, args.json)
    if args.json:
        _print_json(summary)
    else:
        cli_metrics.print_summary(summary)
    return 0


def cmd_scratchpad(args, config, store, sup) -> int:
    from .cli_scratchpad import cmd_scratchpad as run

    return run(args, config, store)


def cmd_doctor(args, config, store, sup) -> int:
    from .cli_doctor import doctor, print_diagnoses

    what, found = doctor(args.target, store)
    print_diagnoses(what, found, args.json)
    return 0


def cmd_advise(args, config, store, sup) -> int:
    from .cli_doctor import cmd_advise as run

    return run(args, config, store)


def cmd_import(args, config, store, sup) -> int:
    from .importer import import_path

    record = import_path(store, args.path, args.name)
    if args.json:
        _print_json(record.to_json(store.run_dir(record.id)))
    else:
        print(f"imported {record.id}: {len(record.metrics_files)} metrics file(s) from {record.cwd}")
    return 0


def cmd_gpus(args, config, store, sup) -> int:
    from .cli_gpus import cmd_gpus as run

    if args.loop is not None and args.loop <= 0:
        raise UserError(f"-l expects a number of seconds > 0, not {args.loop}.")
    return run(args, store)


def cmd_recipes(args, config, store, sup) -> int:
    if args.json:
        _print_json({name: {"description": r.description, "command": list(r.command), "cwd": r.cwd,
                            "params": {p.name: {"type": p.type, "flag": p.flag, "default": p.default,
                                                "help": p.help, "min": p.min, "max": p.max,
                                                "choices": list(p.choices) or None}
                                       for p in r.params}}
                     for name, r in config.recipes.items()})
        return 0
    print(f"recipes in {config.path}:")
    for name, r in config.recipes.items():
        print(f"\n{name}: {r.description}")
        for p in r.params:
            default = "unset" if p.default is None else " ".join(p.format(p.default))
            print(f"  {p.name:<20} {p.describe():<28} default {default:<14} {p.help}")
    return 0


# -- helpers -------------------------------------------------------------------------------------
def refreshed(store: RunStore, sup: Supervisor) -> tuple[list[RunRecord], list[str]]:
    """All records, the active ones reconciled with their processes first."""
    records, problems = store.load_all()
    for record in records:
        _reconcile(store, sup, record)
    return records, problems


def _refreshed_one(store: RunStore, sup: Supervisor, ref: str) -> RunRecord:
    record = store.load(store.resolve(ref))
    _reconcile(store, sup, record)
    return record


def _reconcile(store: RunStore, sup: Supervisor, record: RunRecord) -> None:
    """Reconcile; a run found ended here (no urbanrun watched it end) is finished here: its
    summary, diagnosis and scratchpad entry, as the TUI would have done."""
    if record.active and sup.reconcile(record) and not record.active:
        from .doctor import RunDoctor
        from .ending import finish, run_from_files

        finish(record, run_from_files(store, record), RunDoctor(sup.config, store), _autolog(sup.config))


def _autolog(config):
    from .autolog import AutoLog
    from .scratchpad import settings_from

    return AutoLog(settings_from(config))


def _follow(store: RunStore, sup: Supervisor, run_id: str, from_start: bool, last: int | None = None,
            log=None) -> int:
    log = log or store.log_path(store.load(run_id))
    follower = FileFollower(log, start_at_end=not from_start)
    if last:
        _write_lines(last_lines(log, last) if log.exists() else [])
    record = store.load(run_id)
    try:
        while True:
            _write_lines(follower.poll())
            if not record.active:
                _write_lines(follower.poll())
                break
            time.sleep(FOLLOW_INTERVAL)
            record = store.load(run_id)
            _reconcile(store, sup, record)
    except KeyboardInterrupt:
        print(f"\nstopped following; run {run_id} goes on (`urbanrun kill {run_id}` stops it).", file=sys.stderr)
        return 130
    print(f"run {run_id} {record.status} ({exit_text(record)}) after {_runtime(record)}.", file=sys.stderr)
    return 0 if record.status == "exited" else 1


def exit_text(r: RunRecord) -> str:
    if r.signal:
        import signal as _signal

        try:
            return f"signal {r.signal} ({_signal.Signals(r.signal).name})"
        except ValueError:
            return f"signal {r.signal}"
    if r.exit_code is not None:
        return f"code {r.exit_code}"
    return "-"


def _clock(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _runtime(r: RunRecord) -> str:
    if not r.started:
        return "-"
    seconds = int((r.ended or time.time()) - r.started)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _last_frame(line: str) -> str:
    """A tqdm line holds many frames separated by carriage returns: show the last non-empty one."""
    frames = [f for f in line.split("\r") if f.strip()]
    return frames[-1] if frames else ""


def _write_lines(lines: list[str]) -> None:
    if lines:
        sys.stdout.write("".join(_last_frame(line) + "\n" for line in lines))
        sys.stdout.flush()


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
