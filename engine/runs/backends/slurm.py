"""The SLURM backend, through the SLURM CLI: `sbatch --parsable` of a generated batch script,
state from one `squeue --json` for every job (filtered here: 22.05 ignores -j/-t with --json),
falling back to `scontrol show job ID -o` and `sacct` when a job has left squeue; `scancel` to
stop (TERM, SLURM's KillWait, KILL), `scancel --signal=KILL` after urbanrun's grace.

The batch script is the one place a shell runs: every word in it is shlex-quoted, and every value
that lands on an `#SBATCH` line is refused if it holds a newline or other control character (one
would end the comment and start a command). The script holds no secret: the environment reaches
the job through sbatch's own (--export=ALL), and secret argv items as "$URBANRUN_ARG_<i>".

A controller that does not answer (squeue --json exits 0 with an error list and no jobs, or a call
times out) is a state of the client, not the end of its jobs: their last known states are kept.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from urbanrun.engine import platform
from urbanrun.engine.core import redact
from urbanrun.engine.core.atomic import atomic_write_text
from urbanrun.engine.core.errors import UserError

DEFAULTS = {"partition": "", "account": "", "time": "", "gres": "", "cpus_per_task": "", "mem": "",
            "output_dir": "", "extra": []}
POLL_MIN, POLL_MAX = 2.0, 15.0  # squeue at most every 2 s, backing off to 15 s while nothing changes
QUERY_TIMEOUT = 5.0  # squeue / scontrol / sacct: a controller that takes longer counts as unreachable
CONTROL_TIMEOUT = 10.0  # sbatch / scancel (they retry inside; a busy controller may need a few seconds)
RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SUSPENDED", "RESIZING", "SIGNALING"}
PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"}


@dataclass
class JobState:
    state: str  # SLURM's word: PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, …
    reason: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    ended: float | None = None
    started: float | None = None

    @property
    def finished(self) -> bool:
        return self.state not in RUNNING and self.state not in PENDING


def options(config_table: dict, recipe_table: dict, given: dict) -> dict:
    unknown = [k for k in given if k not in DEFAULTS]
    if unknown:
        raise UserError(f"unknown slurm option {unknown[0]!r}; use one of {', '.join(DEFAULTS)} "
                        f"(e.g. --opt partition=gpu).")
    opts = {**DEFAULTS, **config_table, **recipe_table, **given}
    if not isinstance(opts.get("extra", []), list):
        raise UserError("backends.slurm.extra must be a list of #SBATCH lines, e.g. [\"--constraint=a100\"].")
    for key, value in opts.items():
        for item in (value if isinstance(value, list) else [value]):
            single_line(f"slurm option '{key}'", str(item))
    return opts


def single_line(what: str, value: str) -> str:
    """Refuse a value with a newline or other control character: on an #SBATCH line it would end the
    comment and become a command of the job script."""
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        raise UserError(f"{what} contains a control character ({bad!r}) in {value!r}; SLURM options are "
                        f"single-line values: remove it.")
    return value


def available() -> bool:
    return all(shutil.which(tool) for tool in ("sbatch", "squeue", "scancel", "scontrol"))


def batch_script(run_id: str, recipe: str, argv: list[str], cwd: str, env: dict[str, str], log: Path,
                 opts: dict) -> tuple[str, dict[str, str]]:
    """The job script and the environment to run sbatch with (env plus the secret argv items)."""
    lines = ["#!/bin/bash", f"#SBATCH --job-name={shlex.quote(single_line('the recipe name', 'urbanrun-' + recipe))}",
             f"#SBATCH --output={shlex.quote(single_line('the output path', str(log)))}",
             f"#SBATCH --chdir={shlex.quote(single_line('the working directory (cwd)', cwd))}",
             "#SBATCH --open-mode=append", "#SBATCH --export=ALL"]
    for key, flag in (("partition", "partition"), ("account", "account"), ("time", "time"), ("gres", "gres"),
                      ("cpus_per_task", "cpus-per-task"), ("mem", "mem")):
        if str(opts.get(key, "")).strip():
            lines.append(f"#SBATCH --{flag}={shlex.quote(single_line(f'slurm option {key!r}', str(opts[key])))}")
    for extra in opts.get("extra", []):
        extra = single_line("slurm option 'extra'", str(extra).strip())
        lines.append(f"#SBATCH {extra if extra.startswith('-') else '--' + extra}")
    lines.append(f"# urbanrun run {run_id}")
    job_env = dict(env)
    words = []
    secret = redact.secret_argv_indices(argv)
    for i, item in enumerate(argv):
        if i in secret:
            job_env[f"URBANRUN_ARG_{i}"] = item
            words.append(f'"$URBANRUN_ARG_{i}"')
        else:
            words.append(shlex.quote(item))
    lines.append("# environment from urbanrun, through sbatch's own (--export=ALL): " + " ".join(sorted(job_env)))
    lines.append("exec " + " ".join(words))  # exec: SLURM's signals reach the training process itself
    return "\n".join(lines) + "\n", job_env


def write_script(path: Path, text: str) -> None:
    """The job script, readable by its owner only."""
    atomic_write_text(path, text)
    platform.make_private(path)


def _run(args: list[str], timeout: float = QUERY_TIMEOUT, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **env} if env else None)
    except FileNotFoundError:
        raise UserError(f"{args[0]} was not found: the slurm backend needs the SLURM client on this machine "
                        f"(a cluster's login node).") from None
    except subprocess.TimeoutExpired:
        raise Unreachable(f"{' '.join(args[:2])} did not answer within {timeout:.0f} s") from None


class Unreachable(UserError):
    """The controller did not answer (a timeout, or SLURM's own 'Unable to contact slurm controller')."""


def submit(script: Path, env: dict[str, str] | None = None) -> str:
    out = _run(["sbatch", "--parsable", str(script)], timeout=CONTROL_TIMEOUT, env=env)
    if out.returncode != 0:
        raise UserError(f"sbatch refused the job: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout.strip().split(";")[0]


def cancel(job_id: str, kill: bool = False) -> None:
    """scancel; raises Unreachable when the controller does not answer (the kill is not sent)."""
    args = ["scancel", "--signal=KILL", "--full", job_id] if kill else ["scancel", job_id]
    out = _run(args, timeout=CONTROL_TIMEOUT)
    if out.returncode != 0 and _controller_down(out.stderr):
        raise Unreachable(f"scancel {job_id}: {out.stderr.strip()}")


def _controller_down(text: str) -> bool:
    return bool(re.search(r"Unable to contact slurm controller|Socket timed out|Connection refused|"
                          r"Zero Bytes were transmitted", text, re.I))


# -- state ------------------------------------------------------------------------------------------
def _number(value):
    """22.05 gives plain numbers; 23.02+ gives {"set": bool, "infinite": bool, "number": n}."""
    if isinstance(value, dict):
        return value.get("number") if value.get("set", True) else None
    return value


def parse_squeue_job(job: dict) -> JobState:
    state = job.get("job_state")
    if isinstance(state, list):  # 23.02+: a list of flags, the base state first
        state = state[0] if state else "UNKNOWN"
    code, signal = None, None
    raw = job.get("exit_code")
    if isinstance(raw, dict):  # 23.02+: {"status": [...], "return_code": {...}, "signal": {...}}
        code = _number(raw.get("return_code"))
        sig = raw.get("signal", {})
        signal = _number(sig.get("id")) if isinstance(sig, dict) else None
    elif isinstance(raw, int):  # 22.05: the raw wait status
        code, signal = raw >> 8, raw & 0x7F
    ended, started = _number(job.get("end_time")), _number(job.get("start_time"))
    return JobState(str(state), job.get("state_reason") or None, code, signal or None, ended or None,
                    started if state not in PENDING and started else None)


def parse_scontrol(text: str) -> JobState | None:
    fields = dict(re.findall(r"(\w+)=(\S*)", text))
    if "JobState" not in fields:
        return None
    code, signal = (int(x) for x in fields.get("ExitCode", "0:0").split(":")[:2])
    reason = fields.get("Reason")
    return JobState(fields["JobState"], None if reason in (None, "None") else reason, code, signal or None)


def squeue_jobs(text: str) -> dict[str, JobState] | str:
    """The jobs of `squeue --json`, or why there are none to trust: 22.05 with its controller down
    exits 0 with {"errors": [{"source": "slurm_load_jobs", …}], "jobs": []} — not an empty queue."""
    try:
        data = json.loads(text)
    except ValueError:
        return "its output is not JSON"
    if not isinstance(data, dict):
        return "its output is not a JSON object"
    errors = data.get("errors")
    if errors and not data.get("jobs"):
        return "; ".join(str(e.get("error") or e.get("description") or e) if isinstance(e, dict) else str(e)
                         for e in (errors if isinstance(errors, list) else [errors]))
    return {str(j.get("job_id")): parse_squeue_job(j) for j in data.get("jobs") or [] if isinstance(j, dict)}


class SlurmClient:
    """One squeue for all jobs, at most every POLL_MIN seconds, backing off while nothing changes.

    While the controller does not answer, `unreachable_since` (wall-clock time) is set, every job
    keeps its last known state, no job is looked up by id, and squeue is retried with the back-off."""

    def __init__(self, clock=time.monotonic, wall=time.time):
        self.clock, self.wall = clock, wall
        self._cache: dict[str, JobState] = {}
        self._looked_up: dict[str, float] = {}  # job id -> when scontrol/sacct may be asked again
        self._next = 0.0
        self._interval = POLL_MIN
        self.calls = 0
        self.unreachable_since: float | None = None
        self.unreachable_reason = ""

    @property
    def reachable(self) -> bool:
        return self.unreachable_since is None

    def state(self, job_id: str) -> JobState | None:
        """The job's state, or its last known one while the controller does not answer (see
        `reachable`); None when SLURM answers and no longer knows the job."""
        if self.clock() >= self._next:
            self.refresh()
        known = self._cache.get(job_id)
        if known is None and self.reachable and self.clock() >= self._looked_up.get(job_id, 0.0):
            self._looked_up[job_id] = self._next  # left squeue (purged) or never seen: ask by id, once a round
            try:
                known = self._scontrol(job_id) or self._sacct(job_id)
            except Unreachable as exc:
                self._down(str(exc))
            if known is not None:
                self._cache[job_id] = known
        return known

    def refresh(self) -> None:
        self.calls += 1
        try:
            out = _run(["squeue", "--json"])
        except Unreachable as exc:
            return self._down(str(exc))
        jobs = squeue_jobs(out.stdout) if out.returncode == 0 else out.stderr.strip() or f"exit {out.returncode}"
        if isinstance(jobs, str):
            return self._down(f"squeue: {jobs}")
        changed = jobs != {k: v for k, v in self._cache.items() if k in jobs} or not self.reachable
        self.unreachable_since, self.unreachable_reason = None, ""
        self._cache.update(jobs)
        self._interval = POLL_MIN if changed else min(POLL_MAX, self._interval * 1.5)
        self._next = self.clock() + self._interval

    def _down(self, reason: str) -> None:
        if self.unreachable_since is None:
            self.unreachable_since = self.wall()
        self.unreachable_reason = reason
        self._interval = min(POLL_MAX, max(POLL_MIN, self._interval * 1.5))
        self._next = self.clock() + self._interval

    def describe_outage(self) -> str:
        since = time.strftime("%H:%M", time.localtime(self.unreachable_since or self.wall()))
        return f"SLURM controller unreachable since {since} ({self.unreachable_reason})"

    def nudge(self) -> None:
        """Look again at the next call (after a submit or a cancel)."""
        self._next, self._interval = 0.0, POLL_MIN

    @staticmethod
    def _scontrol(job_id: str) -> JobState | None:
        out = _run(["scontrol", "show", "job", job_id, "-o"])
        if out.returncode != 0 and _controller_down(out.stderr):
            raise Unreachable(f"scontrol: {out.stderr.strip()}")
        return parse_scontrol(out.stdout) if out.returncode == 0 else None

    @staticmethod
    def _sacct(job_id: str) -> JobState | None:
        if not shutil.which("sacct"):
            return None
        out = _run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State,ExitCode"])
        if out.returncode != 0 or not out.stdout.strip():
            return None  # e.g. "Slurm accounting storage is disabled"
        state, exit_code = out.stdout.strip().splitlines()[0].split("|")[:2]
        code, signal = (int(x) for x in exit_code.split(":")[:2])
        return JobState(state.split()[0], None, code, signal or None)
