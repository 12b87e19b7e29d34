"""The SLURM backend, through the SLURM CLI: `sbatch --parsable` of a generated batch script,
state from one `squeue --json` for every job (filtered here: 22.05 ignores -j/-t with --json),
falling back to `scontrol show job ID -o` and `sacct` when a job has left squeue; `scancel` to
stop (SIGTERM, SLURM's KillWait, SIGKILL), `scancel --signal=KILL` after urbanrun's grace.

The batch script is the one place a shell runs: every word in it is shlex-quoted.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from urbanrun.engine.core.errors import UserError

DEFAULTS = {"partition": "", "account": "", "time": "", "gres": "", "cpus_per_task": "", "mem": "",
            "output_dir": "", "extra": []}
POLL_MIN, POLL_MAX = 2.0, 15.0  # squeue at most every 2 s, backing off to 15 s while nothing changes
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
    opts = {**DEFAULTS, **config_table, **recipe_table, **given}
    if not isinstance(opts.get("extra", []), list):
        raise UserError("backends.slurm.extra must be a list of #SBATCH lines, e.g. [\"--constraint=a100\"].")
    return opts


def available() -> bool:
    return all(shutil.which(tool) for tool in ("sbatch", "squeue", "scancel", "scontrol"))


def batch_script(run_id: str, recipe: str, argv: list[str], cwd: str, env: dict[str, str], log: Path,
                 opts: dict) -> str:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={shlex.quote('urbanrun-' + recipe)}",
             f"#SBATCH --output={shlex.quote(str(log))}", f"#SBATCH --chdir={shlex.quote(cwd)}",
             "#SBATCH --open-mode=append"]
    for key, flag in (("partition", "partition"), ("account", "account"), ("time", "time"), ("gres", "gres"),
                      ("cpus_per_task", "cpus-per-task"), ("mem", "mem")):
        if str(opts.get(key, "")).strip():
            lines.append(f"#SBATCH --{flag}={shlex.quote(str(opts[key]))}")
    for extra in opts.get("extra", []):
        extra = str(extra).strip()
        lines.append(f"#SBATCH {extra if extra.startswith('-') else '--' + extra}")
    lines.append(f"# urbanrun run {run_id}")
    for key, value in env.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise UserError(f"environment variable name {key!r} is not valid in a batch script.")
        lines.append(f"export {key}={shlex.quote(value)}")
    lines.append("exec " + shlex.join(argv))  # exec: SLURM's signals reach the training process itself
    return "\n".join(lines) + "\n"


def _run(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise UserError(f"{args[0]} was not found: the slurm backend needs the SLURM client on this machine "
                        f"(a cluster's login node).") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"{' '.join(args[:2])} did not answer within {timeout:.0f} s: is slurmctld up?") from None


def submit(script: Path) -> str:
    out = _run(["sbatch", "--parsable", str(script)])
    if out.returncode != 0:
        raise UserError(f"sbatch refused the job: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout.strip().split(";")[0]


def cancel(job_id: str, kill: bool = False) -> None:
    args = ["scancel", "--signal=KILL", "--full", job_id] if kill else ["scancel", job_id]
    _run(args)


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


class SlurmClient:
    """One squeue for all jobs, at most every POLL_MIN seconds, backing off while nothing changes."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._cache: dict[str, JobState] = {}
        self._next = 0.0
        self._interval = POLL_MIN
        self.calls = 0

    def state(self, job_id: str) -> JobState | None:
        if self.clock() >= self._next or job_id not in self._cache:
            self.refresh()
        known = self._cache.get(job_id)
        if known is None:  # left squeue (purged) or never seen: ask for it by id
            known = self._scontrol(job_id) or self._sacct(job_id)
            if known is not None:
                self._cache[job_id] = known
        return known

    def refresh(self) -> None:
        self.calls += 1
        out = _run(["squeue", "--json"])
        if out.returncode != 0:
            raise UserError(f"squeue failed: {out.stderr.strip()}")
        jobs = {str(j.get("job_id")): parse_squeue_job(j) for j in json.loads(out.stdout).get("jobs", [])}
        changed = jobs != {k: v for k, v in self._cache.items() if k in jobs}
        self._cache.update(jobs)
        self._interval = POLL_MIN if changed else min(POLL_MAX, self._interval * 1.5)
        self._next = self.clock() + self._interval

    def nudge(self) -> None:
        """Look again at the next call (after a submit or a cancel)."""
        self._next, self._interval = 0.0, POLL_MIN

    @staticmethod
    def _scontrol(job_id: str) -> JobState | None:
        out = _run(["scontrol", "show", "job", job_id, "-o"])
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
