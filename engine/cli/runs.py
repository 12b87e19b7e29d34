"""The run commands: launch, ls, show, kill, logs, import, recipes, and following a run's log."""

from __future__ import annotations

import re
import sys
import time

from urbanrun.engine import platform
from urbanrun.engine.cli.output import emit, say_notices
from urbanrun.engine.core.errors import CommandFailed, UserError
from urbanrun.engine.core.text import last_frame
from urbanrun.engine.core.files import path_stat, regular_file
from urbanrun.engine.runs import stop_request
from urbanrun.engine.runs.store import RECORD_FILE, RunRecord, RunStore, creation_order, status_text
from urbanrun.engine.runs.supervisor import Supervisor
from urbanrun.engine.metrics.follower import FileFollower, last_lines

FOLLOW_INTERVAL = 0.2
KILL_VERIFY_SECONDS = 10.0  # after the grace: the hard kill repeats this long before kill reports survivors

def _pairs(items: list[str], flag: str, expected: str, name_ok=lambda name: bool(name.strip())) -> dict[str, str]:
    """NAME=VALUE items of a repeated flag; a malformed one is one sentence naming the flag."""
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name_ok(name):
            raise UserError(f"{flag} expects {expected}, not '{item}'.")
        out[name.strip()] = value
    return out


def cmd_launch(args, config, store: RunStore, sup: Supervisor) -> int:
    overrides = _pairs(args.set, "--set", "NAME=VALUE (e.g. --set batch_size=16)")
    env = _pairs(getattr(args, "env", []), "--env", "NAME=VALUE with a variable name (e.g. --env "
                 "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True)",
                 lambda name: re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is not None)
    options = _pairs(args.opt, "--opt", "KEY=VALUE (e.g. --opt nproc_per_node=2)")
    queued = config.recipe(args.recipe).queue if args.queue is None else args.queue
    if not queued and (args.mem is not None or args.gpus is not None or args.priority):
        raise UserError("--mem, --gpus and --priority are for queued launches: add --queue.")
    request = None
    if queued:
        from urbanrun.engine.session.queue_request import queue_request

        values = config.recipe(args.recipe).values_from_text(overrides)
        request = queue_request(config, store, args.recipe, values, args.mem, args.gpus, args.priority)
    record = sup.launch(args.recipe, overrides, backend=args.backend, options=options, queue_request=request,
                        env=env)
    _scratchpad(config, "launched", record)
    if args.json and args.follow:  # JSON lines only: the run's events until it ends
        from urbanrun.engine.cli.agent import stream_events

        return stream_events(store, sup, config, record.id, follow=True, as_json=True)
    if args.json:
        print_json(record.to_json(store.run_dir(record.id)))
    else:
        what = (f"queued {record.id} (#{record.queue_position}, needs {record.queue_mem_gb:g} GB)"
                if record.status == "queued" else f"launched {record.id} (pid {record.pid})")
        print(f"{what}: {' '.join(record.argv)}", file=sys.stderr)
        if not args.follow:
            print(record.id)
    if record.status == "failed":
        return 1
    if args.follow:
        return _follow(store, sup, record.id, from_start=True)
    return 0


def cmd_ls(args, config, store, sup) -> int:
    records, problems = listed(store, sup, args.all)
    for problem in problems:
        print(f"urbanrun: {problem}", file=sys.stderr)
    if args.json:
        emit(runs_with_summaries(store, config, records))
        return 0
    if not records:
        print(f"no runs in {store.root} yet; start one with `urbanrun launch cones`.")
        return 0
    from urbanrun.engine.session.summary import run_summary

    rows = [("ID", "RECIPE", "STATUS", "EXIT", "STARTED", "RUNTIME", "PROGRESS", "LOSS (BEST)")]
    for r in records:
        status = f"{r.status} ({r.pending_reason})" if r.status == "pending" and r.pending_reason else \
            status_text(r.to_dict())
        if r.status == "queued":
            status = f"queued #{r.queue_position or '?'} ({r.queue_reason})" if r.queue_reason else "queued"
        if r.unreachable_since and r.active:
            status += f" (SLURM controller unreachable since {_clock(r.unreachable_since)})"
        summary = run_summary(store, r, config, brief=True) if r.status != "unreadable" else None
        rows.append((r.id, r.recipe, status, exit_text(r), _clock(r.started), _runtime(r), *_figures(summary)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def cmd_show(args, config, store, sup) -> int:
    record = _refreshed_one(store, sup, args.run)
    run_dir = store.run_dir(record.id)
    if args.json:
        from urbanrun.engine.session.summary import run_summary

        emit({**record.to_json(run_dir), "summary": run_summary(store, record, config)})
        return 0
    data = record.to_json(run_dir)
    data["status"] = status_text(record.to_dict())
    for key in ("id", "recipe", "status", "exit_code", "signal", "problem", "pid", "job_id", "unreachable_since",
                "started", "ended", "cwd", "git_commit", "run_dir", "gpus", "queue_position", "queue_reason"):
        if data.get(key) not in (None, [], ""):
            print(f"{key:<11} {data[key]}")
    for left in record.leftovers:
        why = f" ({left.get('state')}: {left['why']})" if left.get("why") else ""
        print(f"{'leftover':<11} pid {left['pid']} {left.get('name', '')}{why}")
    print(f"{'argv':<11} {' '.join(record.argv)}")
    if record.changed:
        print(f"{'changed':<11} " + ", ".join(f"{k}={v}" for k, v in record.changed.items()))
    if record.status != "unreadable":
        from urbanrun.engine.cli.agent import print_status
        from urbanrun.engine.session.summary import run_summary

        print("── summary ──")
        print_status(run_summary(store, record, config))
    log = store.log_path(record)
    if log.exists():
        try:
            tail = last_lines(log, 10)
        except OSError as exc:  # a FIFO or device in its place: say so, show the rest
            print(f"── output.log cannot be read ({exc.strerror or exc}) ──")
        else:
            print("── last lines of output.log ──")
            _write_lines(tail)
    return 0


def cmd_kill(args, config, store: RunStore, sup: Supervisor) -> int:
    run_id = store.resolve(args.run)
    t0 = time.monotonic()
    record, outcome = kill_and_wait(store, sup, config, run_id, args.grace, args.force)
    took = time.monotonic() - t0
    if args.json:
        print_json(record.to_json(store.run_dir(run_id)))
    elif outcome == "ended":
        why = f" ({record.error})" if record.status in ("lost", "unreadable") and record.error else ""
        print(f"run {run_id} already ended: {record.status} ({exit_text(record)}){why}; nothing was signalled.")
    elif outcome == "cancelled":
        print(f"cancelled {run_id}: it was still queued and never started.")
    elif outcome == "leftovers":
        n = len(record.kill_targets)
        print(f"stopped the {n} leftover process{'es' if n != 1 else ''} of {run_id} (it had {record.status}, "
              f"{exit_text(record)}) in {took:.1f}s; no process of the run is left.")
    else:
        print(f"killed {run_id} ({exit_text(record)}) in {took:.1f}s; no process of the run is left.")
        if not args.force and (note := stop_request.outcome(store.run_dir(run_id))):
            print(f"note: {note}")
    return 0


def kill_and_wait(store: RunStore, sup: Supervisor, config, run_id: str, grace: float | None = None,
                  force: bool = False) -> tuple[RunRecord, str]:
    """The TUI's kill (request_kill, then reconcile's escalation), verified: returns the record
    once nothing of the run is alive, and what happened: "killed", "leftovers" (of a run that had
    ended), "cancelled" (still queued) or "ended" (nothing was alive: nothing signalled, nothing
    written). CommandFailed, naming the survivors and why, when some outlive the kill."""
    record = store.load(run_id)
    _reconcile(store, sup, record)  # a stale record is found ended (lost) before anything is decided
    was_active = record.active
    record, began = sup.request_kill(run_id, grace, force)
    if not began:
        return record, "ended"
    if record.status == "cancelled":
        return record, "cancelled"
    _scratchpad(config, "killed", record)
    deadline = time.time() + max((record.kill_deadline or time.time()) - time.time(), 0) + KILL_VERIFY_SECONDS
    while True:
        _reconcile(store, sup, record)
        if not record.watched:
            _check_recorded(store, record)
            return record, "killed" if was_active else "leftovers"
        if time.time() > deadline:
            left = record.leftovers or [{"pid": p.pid} for p in sup.members(record)]
            pids = "; ".join(f"{d['pid']} {d.get('name', '')}: {d.get('why', 'still alive')}".replace(" :", ":")
                             for d in left) or "the babysitter"
            raise CommandFailed(f"run {run_id} is not fully stopped; still alive: {pids}. Its record lists them; "
                                f"`urbanrun kill {run_id}` again once they can end.", code="kill_failed")
        time.sleep(0.1)


def _check_recorded(store: RunStore, record: RunRecord) -> None:
    """A kill is reported only once its record says so: a run folder that could not be written
    (immutable, read-only, full) would leave `ls` showing the run as lost after a "killed"."""
    try:
        written = store.load(record.id)
        on_disk = written.status + (" with leftover processes" if written.leftovers else "")
    except UserError as exc:
        written, on_disk = None, f"unreadable ({exc})"
    if written is not None and (written.status, written.leftovers) == (record.status, record.leftovers):
        return
    path = store.run_dir(record.id) / RECORD_FILE
    why = store.unsaved.get(record.id, "it could not be written")
    shown = ", and `urbanrun ls` will show the run as lost, not killed" if written is None or written.active else ""
    raise CommandFailed(f"run {record.id}: no process of it is left, but its record {path} could not be updated "
                        f"({why}): it still says {on_disk}{shown}; make {path.parent} writable so that later runs "
                        f"are recorded.", code="record_not_saved")


def cmd_logs(args, config, store, sup) -> int:
    run_id = store.resolve(args.run)
    log = store.log_path(store.load(run_id))
    if args.rank is not None:
        from urbanrun.engine.runs.backends.torchrun import rank_log

        log = rank_log(store.run_dir(run_id), args.rank)
        if log is None:
            raise UserError(f"run {run_id} has no log for rank {args.rank} (only torchrun runs have per-rank logs).")
    if args.lines is not None and args.lines < 0:
        raise UserError(f"-n expects a number of lines >= 0, not {args.lines}.")
    if args.json or args.search:
        from urbanrun.engine.cli import logs

        running = lambda: reconcile_one(store, sup, store.load(run_id)).active  # noqa: E731
        code = logs.print_json(run_id, log, args.lines, args.search, args.follow, running) if args.json else \
            _print_matching(logs.NumberedLog(log, args.search), args.lines, args.follow, running)
        if code or not args.follow:
            return code
        return 0 if store.load(run_id).ended_cleanly else 1  # as a followed log's end says
    if not args.follow:
        if path_stat(log, "log") is None:
            return 0
        regular_file(log, "log")  # a FIFO in its place would block, a device never end
        if args.lines is not None:
            _write_lines(last_lines(log, args.lines))
            return 0
        follower = FileFollower(log, max_read=4 << 20)  # streamed: memory bounded whatever the log's size
        for lines in follower.read_all():
            _write_lines(lines)
        follower.close()
        if follower.skipped_lines:
            print(f"urbanrun: {follower.skipped_lines} line(s) over {follower.max_line >> 20} MiB "
                  f"not shown (each is an empty line above).", file=sys.stderr)
        return 0
    return _follow(store, sup, run_id, from_start=args.lines is None, last=args.lines, log=log)


def _print_matching(log, lines: int | None, follow: bool, still_running) -> int:
    """`logs RUN --search REGEX`: the matching lines (the last N with -n), as grep prints them."""
    try:
        found = log.read(lines)
        running = follow
        while running:
            _write_lines([d["text"] for d in found])
            time.sleep(FOLLOW_INTERVAL)
            running = still_running()
            found = log.read()
        _write_lines([d["text"] for d in found + log.partial()])
    except KeyboardInterrupt:
        return 130
    finally:
        log.close()
    return 0


def cmd_import(args, config, store, sup) -> int:
    from urbanrun.engine.session.importer import import_path

    records = import_path(store, args.path, args.name)
    if args.json:
        print_json({"runs": [record.to_json(store.run_dir(record.id)) for record in records]})
    else:
        for record in records:
            print(f"imported {record.id}: {len(record.metrics_files)} metrics file(s) from {record.cwd}")
    return 0


def cmd_recipes(args, config, store, sup) -> int:
    if args.json:
        print_json({"recipes": {name: {"description": r.description, "command": list(r.command), "cwd": r.cwd,
                            "params": {p.name: {"type": p.type, "flag": p.flag, "default": p.default,
                                                "help": p.help, "min": p.min, "max": p.max,
                                                "choices": list(p.choices) or None}
                                       for p in r.params}}
                     for name, r in config.recipes.items()}})
        return 0
    print(f"recipes in {config.path}:")
    for name, r in config.recipes.items():
        print(f"\n{name}: {r.description}")
        for p in r.params:
            default = "unset" if p.default is None else " ".join(p.format(p.default))
            print(f"  {p.name:<20} {p.describe():<28} default {default:<14} {p.help}")
    return 0


# -- helpers -------------------------------------------------------------------------------------
def listed(store: RunStore, sup: Supervisor, everything: bool) -> tuple[list[RunRecord], list[str]]:
    """The runs `ls` shows: the active ones and the 20 most recent (or every run)."""
    records, problems = refreshed(store, sup)
    if not everything:
        active = [r for r in records if r.active]
        recent = [r for r in records if not r.active][-20:]
        records = active + recent
    return sorted(records, key=creation_order, reverse=True), problems  # newest first, as `last` takes them


def runs_with_summaries(store: RunStore, config, records: list[RunRecord]) -> dict:
    """`ls --json`: each run's record with its summary (a finished run's stored figures)."""
    from urbanrun.engine.session.summary import run_summary

    return {"runs": [{**r.to_json(store.run_dir(r.id)), "summary": run_summary(store, r, config, brief=True)}
                     for r in records]}


def refreshed(store: RunStore, sup: Supervisor) -> tuple[list[RunRecord], list[str]]:
    """All records, the running ones (and ended ones with leftovers) reconciled with their processes first."""
    store.check_folder()  # else a file there lists as "no runs yet"
    records, problems = store.load_all()
    for record in records:
        _reconcile(store, sup, record)
    return records, problems


def _refreshed_one(store: RunStore, sup: Supervisor, ref: str) -> RunRecord:
    return reconcile_one(store, sup, store.load(store.resolve(ref)))


def reconcile_one(store: RunStore, sup: Supervisor, record: RunRecord) -> RunRecord:
    _reconcile(store, sup, record)
    return record


def _reconcile(store: RunStore, sup: Supervisor, record: RunRecord) -> None:
    """Reconcile; a run found ended here (no urbanrun watched it end) is finished here: its
    summary, diagnosis and scratchpad entry, as the TUI would have done."""
    try:
        was_active = record.active
        if sup.reconcile(record) and was_active and not record.active:
            from urbanrun.engine.diagnosis.run_doctor import RunDoctor
            from urbanrun.engine.session.run_end import finish_run, run_from_files

            finish_run(record, run_from_files(store, record), RunDoctor(sup.config, store), _autolog(sup.config))
    except OSError as exc:  # a full or read-only runs folder: show what is known, say what was not saved
        store.unsaved[record.id] = exc.strerror or str(exc)
        say_unsaved(store)


def say_unsaved(store: RunStore) -> None:
    """Each record this command could not update (store.unsaved), said once on stderr."""
    for run_id, why in store.unsaved.items():
        said = f"urbanrun: run {run_id}: its record could not be updated ({why}); shown as found."
        if said not in _SAID:  # once, not on every look of a kill's wait
            _SAID.add(said)
            print(said, file=sys.stderr)


_SAID: set[str] = set()


def _scratchpad(config, what: str, record: RunRecord) -> None:
    """The scratchpad's auto-log entry; a scratchpad that cannot be written (read-only, full) is
    said on stderr and never undoes the launch or kill it records."""
    try:
        getattr(_autolog(config), what)(record)
    except OSError as exc:
        print(f"urbanrun: scratchpad not written: {exc.strerror or exc} ({getattr(exc, 'filename', '')}).",
              file=sys.stderr)


def _autolog(config):
    from urbanrun.engine.notes.autolog import AutoLog
    from urbanrun.engine.notes.scratchpad import settings_from

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
            say_notices(follower, as_json=False)
            if not record.active:
                _write_lines(follower.poll())
                say_notices(follower, as_json=False)
                break
            time.sleep(FOLLOW_INTERVAL)
            record = store.load(run_id)
            _reconcile(store, sup, record)
    except KeyboardInterrupt:
        print(f"\nstopped following; run {run_id} goes on (`urbanrun kill {run_id}` stops it).", file=sys.stderr)
        return 130
    print(f"run {run_id} {record.status} ({exit_text(record)}) after {_runtime(record)}.", file=sys.stderr)
    return 0 if record.ended_cleanly else 1


def _figures(summary: dict | None) -> tuple[str, str]:
    """The PROGRESS and LOSS (BEST) cells of `ls`: from the run summary, '-' when unknown."""
    if summary is None:
        return "-", "-"
    p, m = summary["progress"], summary["metric"]
    progress = "-"
    if p.get("fraction") is not None:
        progress = f"{p['fraction'] * 100:.0f}%"
        if p.get("eta_seconds") is not None:
            progress += f" ETA {duration(p['eta_seconds'])}"
    elif p.get("step") is not None:
        progress = f"step {p['step']:g}"
    loss = "-"
    if m and isinstance(m.get("last"), (int, float)):
        loss = f"{m['last']:.4g}" + (f" ({m['best']:.4g})" if isinstance(m.get("best"), (int, float)) else "")
    return progress, loss


def duration(seconds: float) -> str:
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def exit_text(r: RunRecord) -> str:
    if r.signal:
        name = platform.signal_name(r.signal)
        return f"signal {r.signal} ({name})" if name else f"signal {r.signal}"
    if r.exit_code is not None:
        return f"code {r.exit_code}"
    return "-"


def _clock(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _runtime(r: RunRecord) -> str:
    if not r.started:
        return "-"
    return duration((r.ended or time.time()) - r.started)


def _write_lines(lines: list[str]) -> None:
    if lines:
        sys.stdout.write("".join(last_frame(line) + "\n" for line in lines))
        sys.stdout.flush()


def print_json(data: dict) -> None:
    emit(data)
