"""The urbanrun command line: the interface for scripts and coding agents.

Exit codes: 0 ok, 2 bad input (one sentence on stderr), 1 a failure. `--json` everywhere.
With no command, urbanrun opens the TUI.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
from pathlib import Path

from urbanrun.engine import platform
from urbanrun.engine.core.config import load_config
from urbanrun.engine.cli.output import emit, error_object
from urbanrun.engine.core.errors import CommandFailed, UserError
from urbanrun.engine.runs.store import RunStore
from urbanrun.engine.runs.supervisor import Supervisor
from urbanrun.engine.cli.runs import cmd_import, cmd_kill, cmd_launch, cmd_logs, cmd_ls, cmd_recipes, cmd_show, say_unsaved


class _Parser(argparse.ArgumentParser):
    json_errors = False  # set by main() when --json is on the command line

    def error(self, message: str):  # argparse's own errors: one sentence, exit 2
        text = f"{message} (see `{self.prog} --help`)."
        if self.json_errors:
            print(json.dumps(error_object("bad_input", text)))
            self.exit(2)
        self.exit(2, f"urbanrun: {text}\n")


def number(low: float, *, above: bool = False, whole: bool = False, high: float = 1e9):
    """An argparse type: a finite number >= low (> low when `above`), below `high`. float()
    takes 'nan' and 'inf', which no option of ours means; argparse turns the error into one
    sentence (exit 2)."""
    def parse(text: str):
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            value = None
        ok = value is not None and math.isfinite(value) and (value > low if above else value >= low) and value < high
        if not ok:
            kind = "a whole number" if whole else "a number"
            raise argparse.ArgumentTypeError(f"expects {kind} {'>' if above else '>='} {low:g} and below {high:,.0f}, "
                                             f"not {text!r}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="urbanrun", description="Launch, watch, diagnose and kill GPU training runs.")
    config_help = "config file (default: ./config.toml, else the packaged default)"
    runs_help = "runs folder (default: the config's runs_dir; env URBANRUN_RUNS_DIR)"
    p.add_argument("--config", help=config_help)
    p.add_argument("--runs-dir", help=runs_help)
    p.add_argument("--demo", action="store_true", help="open the TUI and launch the demo recipe at once")
    p.add_argument("--replay", metavar="SESSION.jsonl", help="play a recorded session in the TUI")
    p.add_argument("--speed", type=number(0, above=True), default=1.0, help="replay speed (default 1: real pace)")
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
    s.add_argument("--queue", action=argparse.BooleanOptionalAction, default=None,
                   help="wait until GPUs have the memory it needs, then start (default: the recipe's `queue`)")
    s.add_argument("--mem", type=float, metavar="GB", help="with --queue: GPU memory it needs per GPU (default: "
                   "the advisor's estimate)")
    s.add_argument("--gpus", type=int, metavar="N", help="with --queue: how many GPUs (default 1)")
    s.add_argument("--priority", type=int, default=0, help="with --queue: higher starts first (default 0)")
    s.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="an environment variable for the run, over the recipe's env (e.g. from a next action)")
    s.add_argument("--json", action="store_true", help="the run's record; with --follow, JSON event lines")

    s = sub.add_parser("ls", help="list runs")
    s.add_argument("--all", action="store_true", help="every run, not only active and recent ones")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("show", help="one run's record and log tail")
    s.add_argument("run")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("status", help="a run's progress, ETA, metric, diagnoses, verdict and next actions")
    s.add_argument("run", help="a run id, a unique prefix or 4-hex tail, or `last`")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("wait", help="block until a run ends, is diagnosed, or reaches a step (exit 3 on timeout)")
    s.add_argument("run")
    s.add_argument("--timeout", type=number(0), default=None, metavar="SECONDS")
    s.add_argument("--until", default="end", metavar="end|diagnosis|step=N", help="the condition (default end)")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("events", help="runs' events: launched, progress, diagnosis, ended")
    s.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    s.add_argument("--run", help="only this run (with --follow: until it ends)")
    s.add_argument("--json", action="store_true", help="one JSON object per line")

    s = sub.add_parser("schema", help="the JSON Schema of a --json output (no NAME: list them)")
    s.add_argument("name", nargs="?")
    s.add_argument("--json", action="store_true", help="(the schema is JSON either way; errors become JSON)")

    sub.add_parser("mcp", help="a Model Context Protocol server over stdio, for coding agents (needs urbanrun[agent])")

    s = sub.add_parser("kill", help="stop a run's whole process tree")
    s.add_argument("run")
    s.add_argument("--force", action="store_true", help=f"{platform.KILL_NAME} at once instead of {platform.STOP_NAME} first")
    s.add_argument("--grace", type=number(0), default=None, help=f"seconds between {platform.STOP_NAME} and {platform.KILL_NAME}")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("logs", help="print a run's output")
    s.add_argument("run")
    s.add_argument("-f", "--follow", action="store_true", help="keep printing new output until the run ends")
    s.add_argument("-n", "--lines", type=number(0, whole=True, high=1e12), default=None, help="only the last N lines")
    s.add_argument("--rank", type=number(0, whole=True, high=1e6), default=None, help="a torchrun run: that rank's own log")
    s.add_argument("--search", metavar="REGEX", help="only the lines matching it (case-insensitive)")
    s.add_argument("--json", action="store_true", help="numbered lines (the last 100 unless -n); with --follow, "
                   "one object a line per batch of new lines")

    s = sub.add_parser("metrics", help="per-metric summary of a metrics file, folder or run")
    s.add_argument("target", metavar="PATH_OR_RUN")
    s.add_argument("--follow", "-f", action="store_true", help="print new points as they arrive")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("doctor", help="diagnose a run or any log file")
    s.add_argument("target", metavar="RUN_OR_LOGFILE")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("advise", help="the largest batch size that fits a GPU")
    s.add_argument("recipe")
    s.add_argument("--gpu", type=number(0, whole=True, high=1e6), default=None, help="GPU index (default 0)")
    s.add_argument("--gpu-memory", type=number(0, above=True, high=1e6), default=None, metavar="GB", help="free memory to plan for, in GB")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("scratchpad", help="the dated notes: show, log TEXT, observe TEXT, finish")
    s.add_argument("action", choices=["show", "log", "observe", "finish"])
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
    s.add_argument("-l", "--loop", type=number(0, above=True), metavar="SECONDS", help="repeat every SECONDS")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("recipes", help="list recipes and their parameters")
    s.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    platform.utf8_stdio()
    as_json = "--json" in (sys.argv[1:] if argv is None else argv)
    _Parser.json_errors = as_json
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except UserError as exc:
        return _error(as_json, exc.code, str(exc), 2)
    except CommandFailed as exc:
        return _error(as_json, exc.code, str(exc), 1)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `urbanrun logs X | head`
        _stdout_gone()
        return 0
    except Exception as exc:  # a bug of ours: the traceback for a report, and still one JSON error
        if not as_json:
            raise
        traceback.print_exc()
        return _error(True, "internal_error", f"{type(exc).__name__}: {exc} (a bug in urbanrun; the "
                      f"traceback is on stderr)", 1)


def _error(as_json: bool, code: str, message: str, exit_code: int) -> int:
    try:
        if as_json:
            print(json.dumps(error_object(code, message)))
            sys.stdout.flush()
        else:
            print(f"urbanrun: {message}", file=sys.stderr)
    except BrokenPipeError:  # a reader that went away (`| true`): the exit code still says it
        _stdout_gone()
    return exit_code


def _stdout_gone() -> None:
    """stdout's reader closed the pipe: what is left unflushed goes nowhere (else Python's exit
    flush fails once more, with a second traceback)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _dispatch(args) -> int:
    config = load_config(args.config)
    runs_dir = args.runs_dir or os.environ.get("URBANRUN_RUNS_DIR")
    store = RunStore(Path(runs_dir) if runs_dir else config.runs_dir)
    sup = Supervisor(config, store)
    if args.command is None:
        from urbanrun.tui.main import run_tui  # the TUI is imported only when it is asked for

        return run_tui(config, store.root, demo=args.demo, replay=args.replay, speed=args.speed,
                       headless=args.headless, screenshot=args.screenshot)
    try:
        return _command(args, config, store, sup)
    finally:
        say_unsaved(store)


def _command(args, config, store, sup) -> int:
    handler = {"launch": cmd_launch, "ls": cmd_ls, "show": cmd_show, "kill": cmd_kill,
               "logs": cmd_logs, "metrics": cmd_metrics, "gpus": cmd_gpus, "import": cmd_import, "doctor": cmd_doctor, "advise": cmd_advise,
               "scratchpad": cmd_scratchpad, "recipes": cmd_recipes, "status": cmd_status, "wait": cmd_wait,
               "events": cmd_events, "schema": cmd_schema, "mcp": cmd_mcp}[args.command]
    return handler(args, config, store, sup)


# -- commands ------------------------------------------------------------------------------------
def _lazy(module: str, name: str):
    """A command whose module is imported only when the command runs (agent commands, the MCP server)."""
    def handler(args, config, store, sup) -> int:
        import importlib

        return getattr(importlib.import_module(module), name)(args, config, store, sup)
    return handler


cmd_status = _lazy("urbanrun.engine.cli.agent", "cmd_status")
cmd_wait = _lazy("urbanrun.engine.cli.agent", "cmd_wait")
cmd_events = _lazy("urbanrun.engine.cli.agent", "cmd_events")
cmd_schema = _lazy("urbanrun.engine.cli.agent", "cmd_schema")
cmd_mcp = _lazy("urbanrun.engine.cli.mcp_server", "cmd_mcp")


def cmd_metrics(args, config, store, sup) -> int:
    from urbanrun.engine.cli import metrics as cli_metrics

    sources, run_id = cli_metrics.sources_for(args.target, store)
    summary = cli_metrics.summarise(sources)
    if args.follow:
        if not args.json:
            cli_metrics.print_summary(summary)
        if run_id is None:  # a file or folder: followed until Ctrl-C, as tail -f
            return cli_metrics.follow(sources, args.json)
        from urbanrun.engine.cli.runs import reconcile_one

        return cli_metrics.follow(sources, args.json, running=lambda: reconcile_one(store, sup, store.load(run_id)),
                                  store=store)
    if args.json:
        emit(summary)
    else:
        cli_metrics.print_summary(summary)
    return 0


def cmd_scratchpad(args, config, store, sup) -> int:
    from urbanrun.engine.cli.scratchpad import cmd_scratchpad as run

    return run(args, config, store)


def cmd_doctor(args, config, store, sup) -> int:
    from urbanrun.engine.cli.doctor import changes_of, doctor, print_diagnoses

    what, found = doctor(args.target, store, config)
    print_diagnoses(what, found, args.json, changes_of(what, store))
    return 0


def cmd_advise(args, config, store, sup) -> int:
    from urbanrun.engine.cli.doctor import cmd_advise as run

    return run(args, config, store)


def cmd_gpus(args, config, store, sup) -> int:
    from urbanrun.engine.cli.gpus import cmd_gpus as run

    if args.loop is not None and args.loop <= 0:
        raise UserError(f"-l expects a number of seconds > 0, not {args.loop}.")
    return run(args, store)


if __name__ == "__main__":
    sys.exit(main())
