"""The run store: one folder per run under the runs directory, its record in run.toml.

Contract (shared/DESIGN.md): runs/<run_id>/run.toml written atomically, output.log, metrics.jsonl,
and exit_status.json written by the babysitter when the run's process ends.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import tomli_w

from urbanrun.engine.core.atomic import atomic_write_text
from urbanrun.engine.core.errors import UserError

STATUSES = ("starting", "pending", "running", "exited", "failed", "killed", "lost", "imported")
ACTIVE = frozenset({"starting", "pending", "running"})
RECORD_FILE = "run.toml"
LOG_FILE = "output.log"
METRICS_FILE = "metrics.jsonl"
EXIT_FILE = "exit_status.json"
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SECRET_RE = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|ACCESS_?KEY|CREDENTIAL", re.I)


@dataclass
class RunRecord:
    id: str
    recipe: str
    argv: list[str]
    cwd: str
    status: str = "starting"
    backend: str = "local"
    env: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    changed: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None
    pid_create_time: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    diagnosis: str | None = None  # the headline of `diagnoses`
    diagnoses: list[dict] = field(default_factory=list)
    parent: str | None = None  # the run this one relaunches (OOM recovery)
    recovery: str | None = None  # what the relaunch changed, e.g. "batch_size 32 -> 16"
    created: float | None = None
    started: float | None = None
    ended: float | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    host: str | None = None
    kill_requested: float | None = None
    kill_deadline: float | None = None
    error: str | None = None
    gpu_mem_peak_mb: float | None = None  # the run's processes' GPU memory, summed, at its highest
    gpu_util_mean: float | None = None  # mean utilisation of the GPUs (or SMs) the run used
    loss_name: str | None = None  # the run's loss series when it ended, with its best and last value
    loss_best: float | None = None
    loss_last: float | None = None
    steps: float | None = None
    job_id: str | None = None  # the scheduler's id (slurm backend)
    pending_reason: str | None = None  # why the scheduler has not started it (Resources, Priority, …)
    backend_options: dict = field(default_factory=dict)
    log_path: str | None = None  # where the output goes when not the run folder's output.log
    metrics_files: list[str] = field(default_factory=list)  # expanded paths/globs to follow as well
    log_patterns: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_json(self, run_dir: Path) -> dict[str, Any]:
        """The run object of the CLI's --json output: every field, None as null, times as ISO text."""
        out = asdict(self)
        out["run_dir"] = str(run_dir)
        for key in ("created", "started", "ended", "kill_requested"):
            out[key] = iso(out[key])
        out.pop("kill_deadline")
        return out


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def redact_env(env: dict[str, str]) -> dict[str, str]:
    return {k: ("***" if SECRET_RE.search(k) else v) for k, v in env.items()}


def new_run_id(recipe: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", recipe).strip("-") or "run"
    return f"{stamp}-{safe}-{secrets.token_hex(2)}"


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def create(self, record: RunRecord) -> Path:
        path = self.run_dir(record.id)
        path.mkdir(parents=True, exist_ok=False)
        self.save(record)
        return path

    def save(self, record: RunRecord) -> None:
        atomic_write_text(self.run_dir(record.id) / RECORD_FILE, tomli_w.dumps(record.to_dict()))

    def load(self, run_id: str) -> RunRecord:
        path = self.run_dir(run_id) / RECORD_FILE
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"run '{run_id}' has no record ({path} is missing).") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path} is not a valid run record ({exc}); the run's other files are untouched.") from None
        try:
            return RunRecord.from_dict(data)
        except TypeError as exc:
            raise UserError(f"{path} is missing fields a run record needs ({exc}).") from None

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob(f"*/{RECORD_FILE}"))

    def load_all(self) -> tuple[list[RunRecord], list[str]]:
        """All readable records, oldest first, and one sentence per record that could not be read."""
        records, problems = [], []
        for run_id in self.ids():
            try:
                records.append(self.load(run_id))
            except UserError as exc:
                problems.append(str(exc))
        return records, problems

    def resolve(self, ref: str) -> str:
        """A full run id from a full id or a unique prefix; bad or unknown refs are UserErrors."""
        if not ref or not RUN_ID_RE.match(ref) or ".." in ref:
            raise UserError(f"'{ref}' is not a run id (ids look like 20261125-174100-cones-1a2b; no '/' or '..').")
        ids = self.ids()
        if ref in ids:
            return ref
        matches = [i for i in ids if i.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UserError(f"no run '{ref}' in {self.root}; `urbanrun ls --all` lists the runs.")
        shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
        raise UserError(f"'{ref}' matches {len(matches)} runs ({shown}); give more of the id.")

    def log_path(self, record: RunRecord) -> Path:
        return Path(record.log_path) if record.log_path else self.run_dir(record.id) / LOG_FILE

    def read_exit_status(self, run_id: str) -> dict | None:
        """The babysitter's record of how the run's process ended, or None while it has not ended."""
        path = self.run_dir(run_id) / EXIT_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
