"""What urbanrun writes into today's scratchpad by itself: launches (id, recipe, the full command,
changed parameters, git commit, GPU), run ends (status, steps, best and last loss, time, GPU peak
and mean utilisation), every diagnosis (cause and remedy), kills. One marker per entry, so an
urbanrun that restarts and reattaches never writes the same entry twice."""

from __future__ import annotations

import datetime as dt
import errno
import shlex
from pathlib import Path

from urbanrun.engine.core import redact
from urbanrun.engine.core.errors import UserError
from urbanrun.engine.notes import scratchpad
from urbanrun.engine.runs.store import RunRecord


OBSERVATIONS_HEADING = "### Cross-agent observations"


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _duration(record: RunRecord) -> str:
    if not record.started or not record.ended:
        return "-"
    seconds = int(record.ended - record.started)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


BACKLOG_LIMIT = 1000  # entries kept while the disk refuses them (a day's launches, ends and diagnoses)


def _why(exc: OSError, where=None) -> str:
    """Where and why a write was refused: `file: reason`."""
    return f"{exc.filename or where}: {exc.strerror or exc}"


class AutoLog:
    def __init__(self, settings: scratchpad.Settings | None, gpu_names: list[str] | None = None):
        self.settings = settings
        self.gpu_names = gpu_names or []
        # entries the disk refused (full, read-only), in order, as append's arguments: written by
        # write_backlog once it takes them (their markers keep a retry from writing one twice)
        self.backlog: list[tuple] = []
        # entries refused for good (EFBIG: the day's notes would grow past what urbanrun reads), with
        # why: never retried, so they hold up no later entry; said at the session's end with their text
        self.unwritable: list[tuple[tuple, str]] = []

    def _append(self, path: Path, text: str, marker: str | None, title: str) -> bool:
        try:
            if self.backlog:  # the refused ones first: entries stay in the order they happened
                self.write_backlog()
            return scratchpad.append(path, text, marker, title)
        except OSError as exc:
            if exc.errno == errno.EFBIG and not self.backlog:
                self.unwritable.append(((path, text, marker, title), _why(exc)))
            elif len(self.backlog) < BACKLOG_LIMIT:
                self.backlog.append((path, text, marker, title))
            raise

    def write_backlog(self) -> int:
        """The refused entries, oldest first; how many were written. OSError where the disk still
        refuses one (it and those after it stay); one refused for good moves to `unwritable`."""
        written = 0
        while self.backlog:
            try:
                scratchpad.append(*self.backlog[0])
            except OSError as exc:
                if exc.errno != errno.EFBIG:
                    raise
                self.unwritable.append((self.backlog[0], _why(exc)))
            else:
                written += 1
            self.backlog.pop(0)
        return written

    def left_unwritten(self) -> str | None:
        """At a session's end: the refused entries, written if the disk takes them now; else a
        sentence with their text (secrets masked), so that they are not dropped without a word."""
        left: list[tuple[tuple, str]] = []
        try:
            self.write_backlog()
        except OSError as exc:
            left = [(entry, _why(exc, self.settings.root)) for entry in self.backlog]
        left = self.unwritable + left
        if not left:
            return None
        n = len(left)
        whys = "; ".join(dict.fromkeys(why for _, why in left))
        texts = "\n\n".join(redact.text(entry[1]).rstrip("\n") for entry, _ in left)
        return f"{n} scratchpad {'entry was' if n == 1 else 'entries were'} not written ({whys}); " \
               f"{'it was' if n == 1 else 'they were'}:\n\n{texts}"

    def _write(self, kind: str, run_id: str, heading: str, body: str = "", when: float | None = None) -> bool:
        if self.settings is None or kind not in self.settings.log:
            return False
        stamp = dt.datetime.fromtimestamp(when) if when else None
        path = scratchpad.today_path(self.settings)
        title = f"{self.settings.role} — {dt.date.today().isoformat()}"
        return self._append(path, scratchpad.entry(heading, body, stamp), f"{kind}:{run_id}", title)

    def launched(self, record: RunRecord) -> bool:
        changed = ", ".join(f"{k}={_fmt(v)}" for k, v in redact.data(record.changed).items()) or "recipe defaults"
        lines = [f"`{shlex.join(redact.argv(record.argv))}`", f"- changed: {changed}"]
        if record.git_commit:
            lines.append(f"- code: {record.git_commit[:10]}{' (uncommitted changes)' if record.git_dirty else ''}"
                         f" in {record.cwd}")
        device = record.params.get("device")
        gpus = ", ".join(self.gpu_names) if self.gpu_names else "no GPU on this machine"
        lines.append(f"- device: {device or 'as the script chooses'}; GPUs: {gpus}")
        if record.parent:
            lines.append(f"- relaunch of {record.parent}: {record.recovery}")
        return self._write("launch", record.id, f"launched {record.id} ({record.recipe})", "\n".join(lines),
                           record.started or record.created)

    def ended(self, record: RunRecord) -> bool:
        how = f"signal {record.signal}" if record.signal else f"code {record.exit_code}"
        lines = []
        if record.loss_name:
            lines.append(f"- {record.loss_name}: best {_fmt(record.loss_best)}, last {_fmt(record.loss_last)} "
                         f"after {_fmt(record.steps)} steps; time {_duration(record)}")
        else:
            lines.append(f"- time {_duration(record)}; no loss metric seen")
        progress = record.summary.get("progress", {})
        if progress.get("total_epochs") or progress.get("total_steps"):
            done = [f"{what} {_fmt(progress.get(key))}/{_fmt(progress[total])}" for what, key, total in
                    (("epoch", "epoch", "total_epochs"), ("step", "step", "total_steps")) if progress.get(total)]
            lines.append(f"- progress: {', '.join(done)}")
        if record.gpu_mem_peak_mb:
            util = f", mean utilisation {record.gpu_util_mean:.0f}%" if record.gpu_util_mean is not None else ""
            lines.append(f"- GPU: peak {record.gpu_mem_peak_mb / 1024:.1f} GiB{util}")
        wrote = self._write("end", record.id, f"{record.id} {record.status} ({how})", "\n".join(lines),
                            record.ended)
        for i, d in enumerate(record.diagnoses):
            if d.get("severity") == "info":
                continue
            remedy = d.get("remedies", [""])[0] if d.get("remedies") else ""
            body = f"- cause: {d.get('summary')}" + (f"\n- remedy: {remedy}" if remedy else "")
            self._write("diagnosis", f"{record.id}:{d.get('kind')}", f"{record.id}: {d.get('kind')}", body,
                        record.ended)
        return wrote

    def observed(self, record: RunRecord) -> bool:
        """The run's cross-agent observation (what changed since the last good run), once."""
        obs = record.changes_since_good
        if not obs:
            return False
        return self._write_observation(f"observation:{record.id}", f"{record.id} ({record.recipe})",
                                       observation_markdown(obs), record.ended)

    def note(self, text: str, runs: list[tuple[RunRecord, Path]]) -> bool:
        """An observation written by hand (`urbanrun scratchpad observe`), with the runs it mentions
        linked to their folders."""
        lines = [f"- {line}" if i == 0 else f"  {line}" for i, line in enumerate(text.strip().splitlines())]
        for r, folder in runs:
            lines.append(f"- run [{r.id}]({folder.as_uri()}): {r.recipe}, {r.status}"
                         + (f", {r.diagnosis}" if r.diagnosis else ""))
        return self._write_observation(None, "by hand", "\n".join(lines), None, force=True)

    def _write_observation(self, marker: str | None, who: str, body: str, when: float | None,
                           force: bool = False) -> bool:
        if self.settings is None or (not force and "observation" not in self.settings.log):
            return False
        stamp = (dt.datetime.fromtimestamp(when) if when else dt.datetime.now()).strftime("%H:%M")
        path = scratchpad.today_path(self.settings)
        title = f"{self.settings.role} — {dt.date.today().isoformat()}"
        text = f"{OBSERVATIONS_HEADING}\n**{stamp} — {who}**\n{body}"
        return self._append(path, text, marker, title)

    def killed(self, record: RunRecord) -> bool:
        return self._write("kill", record.id, f"stopped {record.id} ({record.recipe}) from urbanrun",
                           "", record.kill_requested)


def observe_by_hand(settings: scratchpad.Settings, store, text: str) -> tuple[Path, list[str]]:
    """A cross-agent observation written by hand (a disagreement with the coordinator's priorities, a
    data problem seen by eye), the runs it names linked; returns the file and the linked run ids."""
    runs = []
    for run_id in scratchpad.mentioned_runs(text):
        try:
            runs.append((store.load(run_id), store.run_dir(run_id).resolve()))
        except UserError:  # a run of another machine (or unreadable here): the id stays in the text
            pass
    AutoLog(settings).note(text, runs)
    return scratchpad.today_path(settings), [r.id for r, _ in runs]


def draft_summary(records: list[RunRecord], today: dt.date | None = None) -> str:
    """2–3 lines on today's runs: status counts, best losses, issues."""
    day = (today or dt.date.today())
    todays = [r for r in records if r.created and dt.date.fromtimestamp(r.created) == day and r.recipe != "import"]
    if not todays:
        return "No training runs today."
    counts: dict[str, int] = {}
    for r in todays:
        counts[r.status] = counts.get(r.status, 0) + 1
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    line1 = f"Training: {len(todays)} run(s) launched today ({status})."
    # only runs that ended well can be the best: a failed run's low loss is not a result
    best = sorted((r for r in todays if r.loss_best is not None and r.status == "exited"), key=lambda r: r.loss_best)[:2]
    line2 = ("Best: " + "; ".join(f"{r.id} {r.loss_name} {_fmt(r.loss_best)}" + (
        f", GPU peak {r.gpu_mem_peak_mb / 1024:.1f} GiB" if r.gpu_mem_peak_mb else "") for r in best) + ".") if best \
        else "No successful run with a loss yet."
    issues = [f"{r.id}: {r.diagnosis}" for r in todays if r.diagnosis and r.status in ("failed", "lost")]
    observed = [r for r in todays if r.changes_since_good]
    running = [r.id for r in todays if r.status in ("starting", "running")]
    bits = []
    if issues:
        bits.append("Issues: " + "; ".join(issues[:3]) + ".")
    if running:
        bits.append(f"Still running: {', '.join(running)}.")
    if observed:
        bits.append(f"Cross-agent observations: {len(observed)} (latest, {observed[-1].id}: "
                    f"{observed[-1].changes_since_good.get('headline')}).")
    return "\n".join([line1, line2] + ([" ".join(bits)] if bits else []))


def write_summary(settings: scratchpad.Settings, text: str) -> Path:
    path = scratchpad.today_path(settings)
    one_line = " ".join(line.strip() for line in text.splitlines() if line.strip())
    scratchpad.append(path, scratchpad.entry("session summary", text) + f"\n<!-- SUMMARY: {one_line} -->",
                      title=f"{settings.role} — {dt.date.today().isoformat()}")
    return path


def observation_markdown(obs: dict) -> str:
    """The scratchpad body of an observation (under the `### Cross-agent observations` heading)."""
    lines = [f"- {obs['headline']}"]
    if obs.get("last_good"):
        lines.append(f"- run {obs['run']} ({obs['reason']}); last good run {obs['last_good']}")
    else:
        lines.append(f"- run {obs['run']} ({obs['reason']})")
    for c in obs.get("commits", [])[:8]:
        lines.append(f"  - {c['commit']} {c['date'][:10]} \"{c['subject']}\" ({c['author']})")
    for area, paths in obs.get("files", {}).items():
        lines.append(f"- {area}: {', '.join(paths[:8])}" + (" …" if len(paths) > 8 else ""))
    if obs.get("uncommitted"):
        lines.append(f"- uncommitted at launch: {', '.join(obs['uncommitted']['files'][:8])} "
                     f"(diff in {obs['uncommitted']['diff']})")
    if obs.get("params"):
        lines.append("- parameters: " + ", ".join(f"{k} {a} → {b}" for k, (a, b) in obs["params"].items()))
    for d in obs.get("data_loading", []):
        lines.append(f"- data loading: {d['summary']}")
    return "\n".join(lines)
