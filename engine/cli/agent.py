"""The commands agents drive a run with: `status`, `wait` and `events`, all built on one run
summary (engine/session/summary.py), and `schema NAME`.

A run is watched incrementally (its files are followed from where the last look stopped), every
WATCH_INTERVAL seconds: cheap sleeps between looks, never a busy loop.
"""

from __future__ import annotations

import sys
import time

from urbanrun.engine.cli.output import emit, emit_line, notice_line
from urbanrun.engine.cli.runs import duration, reconcile_one
from urbanrun.engine.core.errors import UserError
from urbanrun.engine.core.events import Notice, RunChanged
from urbanrun.engine.core.state import State
from urbanrun.engine.diagnosis.run_doctor import LIVE_SECONDS, has_new_non_finite
from urbanrun.engine.metrics.run_files import RunSources, later_start
from urbanrun.engine.metrics.steps import MAX_STEP
from urbanrun.engine.runs.store import CLEAN_ENDS, RunRecord, RunStore, iso
from urbanrun.engine.session.summary import idle_seconds, run_summary
from urbanrun.engine.session.transitions import Told, transition

WATCH_INTERVAL = 1.0
DIAGNOSE_EVERY = 3.0  # seconds between two diagnoses of a run whose files grow (NaN: at once)
PROGRESS_EVERY = 5.0  # seconds between two progress events of one run
RESCAN_EVERY = 2.0  # how often `events --follow` looks for new runs
EXIT_TIMEOUT = 3


class RunWatch:
    """One run followed from its files: look() reconciles it with its processes, reads what its
    files gained since the last look, and returns its summary."""

    def __init__(self, store: RunStore, sup, config, run_id: str):
        self.store, self.sup, self.config = store, sup, config
        self.record = store.load(run_id)
        self.state = State()
        self.sources = RunSources(store.run_dir(run_id), self.record, later_start(store, self.record))
        self.last_diagnosis = float("-inf")
        self.notices: list[Notice] = []  # the last look's notices about the run's files

    def look(self, now: float | None = None) -> dict:
        """The summary now. A live run is diagnosed again at once when a series turns NaN/Inf or
        its status changes, at most every DIAGNOSE_EVERY seconds while its files grow, and every
        LIVE_SECONDS otherwise (the trends of time: a hang): a long wait costs next to nothing."""
        now = time.time() if now is None else now
        status = self.record.status
        self.record = reconcile_one(self.store, self.sup, self.store.load(self.record.id))
        self.state.apply(RunChanged(ts=now, run=self.record.to_dict()))
        grew, self.notices = False, []
        for events in self.sources.read_to_end(now):
            self.state.apply_all(events)
            grew = grew or bool(events)
            self.notices += [e for e in events if isinstance(e, Notice)]
        run = self.state.runs[self.record.id]
        since = now - self.last_diagnosis
        diagnose = (self.record.status != status or since >= LIVE_SECONDS or (grew and since >= DIAGNOSE_EVERY)
                    or has_new_non_finite(run, {d.get("kind") for d in self.record.diagnoses}))
        if diagnose:
            self.last_diagnosis = now
        return run_summary(self.store, self.record, self.config, now, run,
                           idle=idle_seconds(self.store, self.record, now), diagnose=diagnose)

    def close(self) -> None:
        self.sources.close()


# -- status ----------------------------------------------------------------------------------------
def cmd_status(args, config, store, sup) -> int:
    watch = RunWatch(store, sup, config, store.resolve(args.run))
    try:
        summary = watch.look()
    finally:
        watch.close()
    if args.json:
        emit(summary)
    else:
        print_status(summary)
    return 0


def print_status(s: dict) -> None:
    p = s["progress"]
    bits = [f"{s['id']}  {s['status']}  {s['verdict']}"]
    if p["epoch"] is not None:
        bits.append(f"epoch {_num(p['epoch'])}" + (f"/{_num(p['total_epochs'])}" if p["total_epochs"] else ""))
    if p["step"] is not None:
        bits.append(f"step {_num(p['step'])}" + (f"/{_num(p['total_steps'])}" if p["total_steps"] else ""))
    if p["fraction"] is not None:
        bits.append(f"{p['fraction'] * 100:.0f}%")
    if p["steps_per_second"]:
        bits.append(f"{p['steps_per_second']:.3g} steps/s")
    if p["eta_seconds"] is not None:
        bits.append(f"ETA {duration(p['eta_seconds'])}")
    print("  ".join(bits))
    m = s["metric"]
    if m:
        print(f"{m['name']}: last {_num(m['last'])} (step {_num(m['last_step'])}), best {_num(m['best'])} "
              f"(step {_num(m['best_step'])})")
    if s["gpu_peak_mb"]:
        print(f"GPU peak {s['gpu_peak_mb'] / 1024:.2f} GiB")
    for d in s["diagnoses"]:
        print(f"{d.get('severity')}: {d.get('kind')}: {d.get('summary')}")
    for a in s.get("next_actions", []):
        where = {"relaunch": lambda: "urbanrun launch " + " ".join(a["launch_args"]),
                 "kill": lambda: f"urbanrun kill {a['run']}",
                 "inspect": lambda: f"{a['file']}:{a.get('line') or ''}"}[a["kind"]]()
        print(f"→ {a['kind']}: {where}  ({a['why']})")


# -- wait --------------------------------------------------------------------------------------------
def parse_until(text: str) -> tuple[str, float | None]:
    if text in ("end", "diagnosis"):
        return text, None
    name, eq, value = text.partition("=")
    if name == "step" and eq:
        try:
            step = float(value)
        except ValueError:
            step = None
        # step=-1 would be met at once; step=nan, 1e300 or 2.5 never (steps are whole, up to 2^53: metrics/steps.py)
        if step is not None and 0 <= step <= MAX_STEP and step == int(step):
            return "step", step
    raise UserError(f"--until expects end, diagnosis or step=N with N a whole step from 0 to 2^53 (e.g. step=500), "
                    f"not '{text}'.")


def condition_met(until: str, target: float | None, summary: dict) -> bool:
    if until == "end":
        return not summary["active"]
    if until == "diagnosis":
        return any(d.get("severity") in ("error", "warning") for d in summary["diagnoses"])
    step = summary["progress"]["step"]
    return step is not None and step >= target


def wait_for(store, sup, config, run_id: str, until: str, target: float | None, timeout: float | None,
             interval: float = WATCH_INTERVAL) -> tuple[dict, str]:
    """Look at the run every `interval` seconds until the condition holds ("met"), the run ended
    without it ("ended") or `timeout` seconds passed ("timeout"). Returns the last summary."""
    deadline = None if timeout is None else time.monotonic() + timeout
    watch = RunWatch(store, sup, config, run_id)
    try:
        while True:
            summary = watch.look()
            if condition_met(until, target, summary):
                return summary, "met"
            if not summary["active"]:
                return summary, "ended"
            if deadline is not None and time.monotonic() >= deadline:
                return summary, "timeout"
            left = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
            time.sleep(left)
    finally:
        watch.close()


def cmd_wait(args, config, store, sup) -> int:
    until, target = parse_until(args.until)
    if args.timeout is not None and args.timeout < 0:
        raise UserError(f"--timeout expects seconds >= 0, not {args.timeout}.")
    summary, outcome = wait_for(store, sup, config, store.resolve(args.run), until, target, args.timeout)
    code = {"met": 0, "ended": 1, "timeout": EXIT_TIMEOUT}[outcome]
    result = {**summary, "wait": {"until": args.until, "outcome": outcome, "met": outcome == "met"}}
    if args.json:
        emit(result)
    else:
        print_status(summary)
        if outcome != "met":
            print(f"urbanrun: {args.until} not reached: " + ("timed out." if outcome == "timeout"
                                                              else "the run ended first."), file=sys.stderr)
    return code


# -- events ------------------------------------------------------------------------------------------
class EventStream:
    """Events of runs for a monitor: launched, progress (at most every PROGRESS_EVERY s per run),
    diagnosis (each new kind), ended. One RunWatch per active run."""

    def __init__(self, store, sup, config, only: str | None = None):
        self.store, self.sup, self.config, self.only = store, sup, config, only
        self.watches: dict[str, RunWatch] = {}
        self.seen: set[str] = set()
        self.told: dict[str, Told] = {}
        self.last_progress: dict[str, tuple[float, dict]] = {}
        self.next_scan = 0.0

    def initial(self, history: bool) -> list[dict]:
        """The runs as they are now; `history`: finished runs too (else only the active ones and
        the run asked for)."""
        self.store.check_folder()
        out = []
        for run_id in self._ids():
            out += self._first_look(run_id, include_ended=history or run_id == self.only)
        return out

    def _ids(self) -> list[str]:
        return [self.only] if self.only else self.store.ids()

    def _first_look(self, run_id: str, include_ended: bool) -> list[dict]:
        self.seen.add(run_id)
        try:
            record = self.store.load(run_id)
        except UserError as exc:
            if run_id == self.only:  # the run asked for: its unreadable record is the answer (exit 2)
                raise
            print(f"urbanrun: {exc}", file=sys.stderr)  # as `ls` says it; the stream keeps its one schema
            return []  # one run among all: the others still stream
        if not record.active and not include_ended:
            return []
        events = [self._launched(record)]
        watch = RunWatch(self.store, self.sup, self.config, run_id)
        summary = watch.look()
        events += self._notices(watch) + self._changes(summary, force_progress=True)
        if summary["active"]:
            self.watches[run_id] = watch
        else:
            watch.close()
        return events

    def poll(self, now: float | None = None) -> list[dict]:
        now = time.time() if now is None else now
        out: list[dict] = []
        if now >= self.next_scan and not self.only:
            self.next_scan = now + RESCAN_EVERY
            for run_id in self.store.ids():
                if run_id not in self.seen:
                    out += self._first_look(run_id, include_ended=True)
        for run_id, watch in list(self.watches.items()):
            try:
                summary = watch.look(now)
                out += self._notices(watch) + self._changes(summary, now=now)
            except UserError as exc:  # its record went (a folder moved, a record torn by hand)
                if run_id == self.only:
                    raise
                print(f"urbanrun: {exc}", file=sys.stderr)  # said, as `ls` says it; the other runs stream on
                watch.close()
                del self.watches[run_id]
                continue
            if run_id in self.watches and not watch.record.active:
                watch.close()
                del self.watches[run_id]
        return out

    @property
    def done(self) -> bool:
        """With --run: that run has ended (its `ended` event is out)."""
        return bool(self.only) and self.only in self.seen and not self.watches

    def _notices(self, watch: RunWatch) -> list[dict]:
        """What the last look found about the run's files (deleted, replaced, unreadable, records
        skipped), as `notice` events carrying the streams' one notice object."""
        return [{"event": "notice", "run": watch.record.id, "ts": iso(n.ts),
                 "notice": notice_line(n.code or "notice", n.level, n.text, n.path)["notice"]} for n in watch.notices]

    def _launched(self, record: RunRecord) -> dict:
        return {"event": "launched", "run": record.id, "ts": iso(record.started or record.created),
                "recipe": record.recipe, "params": record.params, "argv": record.argv, "status": record.status}

    def _changes(self, summary: dict, now: float | None = None, force_progress: bool = False) -> list[dict]:
        now = time.time() if now is None else now
        run_id, out = summary["id"], []
        sent_at, sent = self.last_progress.get(run_id, (float("-inf"), None))
        current = {"progress": {k: v for k, v in summary["progress"].items()
                                if k not in ("eta_seconds", "elapsed_seconds", "steps_per_second")},
                   "metric": summary["metric"]}
        told, news = transition(self.told.get(run_id, Told()), summary["active"], summary["diagnoses"])
        self.told[run_id] = told
        ended = news.ended
        if current != sent and (force_progress or ended or now - sent_at >= PROGRESS_EVERY):
            self.last_progress[run_id] = (now, current)
            out.append({"event": "progress", "run": run_id, "ts": iso(now), "progress": summary["progress"],
                        "metric": summary["metric"]})
        for d in news.diagnoses:
            out.append({"event": "diagnosis", "run": run_id, "ts": iso(now), "diagnosis": d,
                        "verdict": summary["verdict"], "next_actions": summary.get("next_actions", [])})
        if ended:
            out.append({"event": "ended", "run": run_id, "ts": summary["ended"] or iso(now),
                        "status": summary["status"], "exit_code": summary["exit_code"], "signal": summary["signal"],
                        "verdict": summary["verdict"], "summary": summary})
        return out

    def close(self) -> None:
        for watch in self.watches.values():
            watch.close()


def cmd_events(args, config, store, sup) -> int:
    only = store.resolve(args.run) if args.run is not None else None  # `--run ""` is a bad id, not every run
    return stream_events(store, sup, config, only, follow=args.follow, as_json=args.json)


def stream_events(store, sup, config, only: str | None, follow: bool, as_json: bool) -> int:
    """Print events (JSON lines with --json): every run's as they stand (following: the active
    runs' only), then, with `follow`, new ones until the run given ends (or Ctrl-C). Exit 0, or
    with `only`, 0 if that run ended cleanly (exited 0, or imported) and 1 otherwise."""
    stream = EventStream(store, sup, config, only)
    last: dict | None = None
    try:
        for event in stream.initial(history=not follow):
            last = _print_event(event, as_json) or last
        while follow and not stream.done:
            time.sleep(WATCH_INTERVAL)
            for event in stream.poll():
                last = _print_event(event, as_json) or last
    except KeyboardInterrupt:
        return 130
    finally:
        stream.close()
    if only and last is not None and last.get("event") == "ended":
        return 0 if last["status"] in CLEAN_ENDS else 1
    return 0


def _print_event(event: dict, as_json: bool) -> dict:
    if as_json:
        emit_line(event)
        return event
    kind, run = event["event"], event["run"]
    if kind == "launched":
        text = f"{event['recipe']} ({event['status']})"
    elif kind == "progress":
        p, m = event["progress"], event["metric"]
        text = f"step {_num(p['step'])}" + (f"/{_num(p['total_steps'])}" if p["total_steps"] else "")
        if m:
            text += f" {m['name']} {_num(m['last'])} (best {_num(m['best'])})"
    elif kind == "diagnosis":
        text = f"{event['diagnosis'].get('severity')}: {event['diagnosis'].get('summary')}"
    elif kind == "notice":
        text = f"{event['notice']['level']}: {event['notice']['message']}"
    else:
        text = f"{event['status']} ({event['verdict']})"
    print(f"{event['ts']} {run} {kind}: {text}")
    sys.stdout.flush()
    return event


# -- schema ------------------------------------------------------------------------------------------
def cmd_schema(args, config, store, sup) -> int:
    from urbanrun.engine.cli.contract import load_schema, schema_names

    if args.name is None:
        print("\n".join(schema_names()))
        return 0
    import json

    print(json.dumps(load_schema(args.name), indent=2))
    return 0


def _num(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if v == v else "nan"
    return "-" if v is None else str(v)
