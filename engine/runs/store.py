"""The run store: one folder per run under the runs directory, its record in run.toml.

Contract (shared/DESIGN.md): runs/<run_id>/run.toml written atomically, output.log, metrics.jsonl,
and exit_status.json written by the babysitter when the run's process ends.

One writer per record: every change to run.toml goes through `RunStore.update`, which holds the
run's lock (a lock file beside the record) while it reads the record from disk, applies the change
and writes it back, so the TUI, a CLI kill and a reconcile in another process never overwrite each
other's fields. Reading is tolerant: a record that cannot be read becomes that run's `unreadable`
state with the reason; it never stops the other runs from being listed.
"""

from __future__ import annotations

import copy
import errno
import functools
import json
import os
import re
import secrets
import shutil
import stat
import time
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from urbanrun.engine import platform
from urbanrun.engine.core import redact
from urbanrun.engine.core.atomic import atomic_write_text
from urbanrun.engine.core.errors import StorageError, UserError, storage_error
from urbanrun.engine.core.files import kind_of, path_stat, short
from urbanrun.engine.core.run_order import RUN_ID_SHAPE, creation_key

STATUSES = ("queued", "starting", "pending", "running", "exited", "failed", "killed", "cancelled", "lost",
            "imported", "unreadable")
ACTIVE = frozenset({"queued", "starting", "pending", "running"})
# the ends that count as success (exit 0 for a followed run): exited with 0, or imported (a
# finished run from disk, nothing known against it); every other end is a failure
CLEAN_ENDS = frozenset({"exited", "imported"})
RECORD_FILE = "run.toml"
LOG_FILE = "output.log"
METRICS_FILE = "metrics.jsonl"
EXIT_FILE = "exit_status.json"
LOCK_FILE = ".run.toml.lock"
# A record holds a command line and environment (the OS caps both at a few MB) and a few KB more;
# an exit status is a few numbers. Anything larger was not written by urbanrun, and parsing it
# whole would stall every listing (a 200 MB record took `ls` a minute and 700 MB).
RECORD_LIMIT = 8 * 1024 * 1024
EXIT_STATUS_LIMIT = 64 * 1024
LOCK_TIMEOUT = 30.0  # seconds; a writer holds the lock for one read and one write
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# what new_run_id makes: a folder so named is a run's, with or without its record
RUN_DIR_MODE = 0o700  # a run's folder holds its command line and output: its owner's only


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
    git_root: str | None = None  # the repository the run's cwd is in
    git_diff_sha: str | None = None  # sha256 of the uncommitted diff at launch (kept as code.diff)
    changes_since_good: dict | None = None  # what changed since the recipe's last good run (diagnosis)
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
    summary: dict = field(default_factory=dict)  # a finished run's figures (engine/session/summary.py)
    end_files: dict[str, list[int]] = field(default_factory=dict)  # its files when it ended (session/end_files.py)
    job_id: str | None = None  # the scheduler's id (slurm backend)
    job_name: str | None = None  # the run's named Job Object (Windows), for a later urbanrun to open
    pending_reason: str | None = None  # why the scheduler has not started it (Resources, Priority, …)
    unreachable_since: float | None = None  # its scheduler's controller has not answered since then
    backend_options: dict = field(default_factory=dict)
    log_path: str | None = None  # where the output goes when not the run folder's output.log
    metrics_files: list[str] = field(default_factory=list)  # expanded paths/globs to follow as well
    log_patterns: list[str] = field(default_factory=list)
    gpus: list[int] = field(default_factory=list)  # GPUs the launch queue admitted it to (CUDA_VISIBLE_DEVICES)
    queue_reason: str | None = None  # why a queued run still waits ("needs 15.0 GB, GPU 1 has 7.0 GB unpromised")
    queue_position: int | None = None  # 1 = next to start
    queue_mem_gb: float | None = None  # what it asked the queue for, per GPU
    queue_gpus: int | None = None
    queue_priority: int | None = None
    queue_exclusive: bool | None = None
    queue_max_per_gpu: int | None = None
    cgroup: str | None = None  # the run's own cgroup v2 (Linux, where one could be created)
    # processes of the run, as {pid, created, name, state}: taken when a kill begins (the set to
    # stop), and those alive after its main process ended (leftovers) or that outlived a kill
    kill_targets: list[dict] = field(default_factory=list)
    leftovers: list[dict] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def ended_cleanly(self) -> bool:
        return self.status in CLEAN_ENDS

    @property
    def watched(self) -> bool:
        """Still to be reconciled: running, or ended with processes of it left alive."""
        return self.active or bool(self.leftovers)

    def changes(self) -> dict[str, Any]:
        """The fields changed since this copy was read or written (copies, as asdict gives). Asked
        of every live run at every poll: fields are compared in place, only changed ones copied
        (asdict deep-copied the whole record each time: a quarter of a watching poll's CPU)."""
        base, changed = getattr(self, "_base", {}), {}
        for name in _FIELD_NAMES:
            value = getattr(self, name)
            if name not in base or base[name] != value:
                changed[name] = copy.deepcopy(value)
        return changed

    def mark_saved(self) -> None:
        self._base = asdict(self)  # asdict copies lists and dicts: later edits do not reach it

    def adopt(self, other: RunRecord) -> None:
        """Take every field of `other` (the record as written): this copy then sees others' changes too."""
        for f in fields(self):
            setattr(self, f.name, copy.deepcopy(getattr(other, f.name)))
        self.mark_saved()

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def unreadable(cls, run_id: str, reason: str) -> RunRecord:
        """What a run whose record cannot be read is shown as: its id, and why."""
        return cls(id=run_id, recipe="?", argv=[], cwd="", status="unreadable", error=reason)

    def to_json(self, run_dir: Path) -> dict[str, Any]:
        """The run object of the CLI's --json output: every field, None as null, times as ISO text."""
        out = asdict(self)
        out["run_dir"] = str(run_dir)
        for key in ("created", "started", "ended", "kill_requested", "unreachable_since"):
            out[key] = iso(out[key])
        out.pop("kill_deadline")
        out.pop("kill_targets")
        out.pop("end_files")  # internal: whether the stored figures still hold (mtimes in ns, beyond 2^53)
        # not "error": a top-level "error" is the CLI's failure object, and `show` of a lost run succeeds
        out["problem"] = out.pop("error")
        return out


_FIELD_NAMES = tuple(f.name for f in fields(RunRecord))  # what asdict copies, in its order


class RecordError(UserError):
    """A run's record or exit status that cannot be read: that run's problem, never the tool's (an
    agent tells it from a mistake in its own input by its code)."""

    def __init__(self, message: str = "", code: str = "unreadable_record"):
        super().__init__(message, code)


def _matches(value: Any, hint: Any) -> bool:
    """Whether a value read from TOML/JSON has the type a record field declares."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value) if args else isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict) and (not args or all(_matches(v, args[1]) for v in value.values()))
    return isinstance(value, origin or hint)


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(RunRecord)  # ~2 ms: once per process, not once per record read


def check_fields(data: dict, where: Path) -> None:
    """Raise RecordError naming the first field whose value has the wrong type."""
    hints = _field_types()
    for name, value in data.items():
        hint = hints.get(name)
        if hint is not None and not _matches(value, hint):
            raise RecordError(f"{where}: field '{name}' = {value!r} is not {_describe(hint)}; fix or remove that "
                              f"line (the run's other files are untouched).")


def _describe(hint: Any) -> str:
    text = {int: "a whole number", float: "a number", str: "a text", bool: "true or false"}
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    first = [a for a in typing.get_args(hint) if a is not type(None)][0] if union else hint
    origin = typing.get_origin(first)
    if origin is list:
        return "a list" + (" of tables" if typing.get_args(first) == (dict,) else "")
    if origin is dict:
        return "a table"
    return text.get(first, getattr(first, "__name__", str(first)))


def _is_run_folder(entry: os.DirEntry) -> bool:
    try:
        if not entry.is_dir():
            return False
        if os.path.lexists(os.path.join(entry.path, RECORD_FILE)):
            return True
        return bool(RUN_ID_SHAPE.match(entry.name)) or any(
            os.path.lexists(os.path.join(entry.path, name)) for name in (LOG_FILE, EXIT_FILE, METRICS_FILE, LOCK_FILE))
    except OSError:
        return False


def status_text(record: dict) -> str:
    """A run's status as people read it, the same in `ls`, `show` and the TUI: `stopping` while a
    kill is under way, `exited · 2 leftover processes` while processes of an ended run live on,
    `stopping · 1 process survives the kill` once the hard kill has not ended one."""
    status = record.get("status") or "starting"
    if status == "running" and record.get("kill_requested"):
        status = "stopping"
    left = record.get("leftovers") or []
    if not left:
        return status
    many = len(left) > 1
    if status != "stopping":
        return f"{status} · {len(left)} leftover process{'es' if many else ''}"
    if any(d.get("why") for d in left):
        return f"{status} · {len(left)} process{'es survive' if many else ' survives'} the kill"
    return f"{status} · {len(left)} process{'es' if many else ''} left"


def creation_order(record: RunRecord) -> tuple:
    """Sort key of runs by when they were made, oldest first (core/run_order.py)."""
    return creation_key(record.id, record.status, record.created)


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def new_run_id(recipe: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", recipe).strip("-")[:64].strip("-") or "run"  # a folder name has 255 bytes
    return f"{stamp}-{safe}-{secrets.token_hex(2)}"


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).absolute()  # run_dir in records and --json names the folder from anywhere
        # run id -> why its record could not be written by a reader that went on with what it knew
        # (a read-only or full run folder); the CLI says each once
        self.unsaved: dict[str, str] = {}
        self._recent: tuple[float, list[RunRecord]] | None = None  # see recent_records

    def run_dir(self, run_id: str) -> Path:
        """The run's folder; an id that could name anything outside the runs folder is refused."""
        if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
            raise UserError(f"'{run_id}' is not a run id (ids look like 20261125-174100-cones-1a2b; no '/' or '..').")
        return self.root / run_id

    def create(self, record: RunRecord) -> Path:
        """The run's folder with its first record. It is made under a hidden name and renamed into
        place with its record in it: a run folder is never seen without its record (a folder
        without one is a run whose record was lost, listed as such). A folder that cannot be made
        or written (read only, full) is one sentence naming it, and nothing of the attempt is left."""
        path = self.run_dir(record.id)
        self.check_folder()
        draft = self.root / f".{record.id}.creating"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            draft.mkdir(mode=RUN_DIR_MODE)
            platform.make_private(draft)  # mkdir's mode is narrowed by the umask, never widened: set it exactly
        except FileExistsError:
            raise self._taken(record.id) from None
        except OSError as exc:
            raise storage_error(exc, self.root, "create a run folder") from None
        try:
            self._write(record, draft)
            if path.exists():  # rename would replace an empty folder: a run id is never reused
                raise self._taken(record.id)
            platform.rename(draft, path)  # retried on Windows while a virus scanner looks into it
        except OSError as exc:
            shutil.rmtree(draft, ignore_errors=True)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise self._taken(record.id) from None
            raise storage_error(exc, self.root, "write a run record") from None
        except BaseException:  # whatever stopped the record (a bug, Ctrl-C) leaves no folder without one
            shutil.rmtree(draft, ignore_errors=True)
            raise
        return path

    def _taken(self, run_id: str) -> StorageError:
        return StorageError(f"run id {run_id} was taken in {self.root} by another launch in the same second; "
                            f"launch again.")

    def check_folder(self) -> None:
        """A runs folder that is a file is one sentence; a missing one is only a folder without runs yet."""
        st = path_stat(self.root, "runs folder")
        if st is not None and not stat.S_ISDIR(st.st_mode):
            what = "a file" if stat.S_ISREG(st.st_mode) else kind_of(st)
            raise UserError(f"the runs folder {self.root} is {what}; give a folder (--runs-dir or URBANRUN_RUNS_DIR).")

    def discard(self, run_id: str) -> None:
        """Remove a run folder that never held a run (its launch failed before anything started);
        moved out of sight first, so that no listing sees it half removed, without its record."""
        path, gone = self.run_dir(run_id), self.root / f".{run_id}.discarded"
        try:
            platform.rename(path, gone)
        except OSError:
            gone = path
        shutil.rmtree(gone, ignore_errors=True)

    def free_run_id(self, recipe: str, now: float | None = None, tries: int = 20) -> str:
        """A new run id whose folder does not exist yet."""
        for _ in range(tries):
            run_id = new_run_id(recipe, now)
            if not self.run_dir(run_id).exists():
                return run_id
        raise StorageError(f"no free run id for '{recipe}' in {self.root}: {tries} drawn, all taken; launch again.")

    def update(self, run_id: str, change: Callable[[RunRecord], Any] | dict[str, Any]) -> RunRecord:
        """The one way a record changes: under the run's lock, read it from disk, apply `change`
        (a function that edits the record, or field values), write it back atomically. Returns
        the record as written. An unreadable record is never overwritten (RecordError)."""
        import filelock  # here: the commands that only read records (ls, status, --help) never load it

        try:
            with filelock.FileLock(self.run_dir(run_id) / LOCK_FILE, timeout=LOCK_TIMEOUT):
                record = self.load(run_id)
                if callable(change):
                    change(record)
                else:
                    for name, value in change.items():
                        setattr(record, name, value)
                if record.id != run_id:
                    raise RecordError(f"a change to run {run_id} tried to rename it to '{record.id}'.")
                if record.changes():
                    self._write(record)
                return record
        except filelock.Timeout:
            raise UserError(f"run {run_id}'s record stays locked ({self.run_dir(run_id) / LOCK_FILE}) for over "
                            f"{LOCK_TIMEOUT:.0f} s; is another urbanrun stuck? Try again.") from None

    def save(self, record: RunRecord) -> None:
        """Write the fields this copy changed since it was read (through `update`, so fields others
        changed meanwhile are kept); the copy then holds the record as written."""
        changes = record.changes()
        if changes:
            record.adopt(self.update(record.id, changes))

    def _write(self, record: RunRecord, folder: Path | None = None) -> None:
        # the record is redacted when made (supervisor); this catches any secret-shaped value set later
        import tomli_w

        atomic_write_text((folder or self.run_dir(record.id)) / RECORD_FILE, tomli_w.dumps(redact.data(record.to_dict())))
        record.mark_saved()

    def load(self, run_id: str) -> RunRecord:
        """The record, checked field by field; RecordError (a UserError) says what is wrong."""
        path = self.run_dir(run_id) / RECORD_FILE
        try:
            data = tomllib.loads(platform.read_shared(path, RECORD_LIMIT).decode("utf-8"))
        except FileNotFoundError:
            if not path.parent.is_dir():  # gone while a command looked at it (moved, removed): not "no record"
                raise RecordError(f"run '{run_id}' is gone: its folder {path.parent} was moved or removed, and its "
                                  f"record with it, so urbanrun no longer sees the run; put the folder back to "
                                  f"watch or stop it.", code="run_not_found") from None
            raise RecordError(f"run '{run_id}' has no record ({path} is missing: its launch stopped before writing "
                              f"it, or it was removed), so urbanrun cannot show, wait on or stop it; its other "
                              f"files in {path.parent} are untouched: look at them there, and remove the folder "
                              f"once they are no longer needed.") from None
        except IsADirectoryError:
            raise RecordError(f"{path} is a folder, not a run record; the run's other files are untouched.") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise RecordError(f"{path} is not a valid run record ({exc}); the run's other files are untouched.") from None
        except OSError as exc:
            raise RecordError(f"{path} cannot be read ({exc.strerror or exc}).") from None
        if "id" not in data:
            raise RecordError(f"{path} has no `id`; a run record's id is its folder's name ('{run_id}'): "
                              f"add `id = \"{run_id}\"` if the folder is a run, else move the folder out of the runs folder.")
        if data["id"] != run_id:
            raise RecordError(f"{path}: its id {data['id']!r} is not its folder's name '{run_id}'; "
                              f"the record is not used until they agree.")
        check_fields(data, path)
        try:
            record = RunRecord.from_dict(data)
        except TypeError as exc:
            raise RecordError(f"{path} is missing fields a run record needs ({exc}).") from None
        record.mark_saved()
        return record

    def load_or_unreadable(self, run_id: str) -> RunRecord:
        try:
            return self.load(run_id)
        except UserError as exc:
            return RunRecord.unreadable(run_id, str(exc))

    def save_diagnoses(self, record: RunRecord, diagnoses: list[dict], headline: str | None) -> None:
        """Store a run's diagnoses so far (read by every view); only these fields are written."""
        record.diagnoses, record.diagnosis = list(diagnoses), headline
        self.save(record)

    def ids(self) -> list[str]:
        """The runs' ids: every folder with a record, and every run folder that lost its record (named
        as run ids are, or holding a run's files), which lists as unreadable, never hidden."""
        try:
            entries = list(os.scandir(self.root))
        except OSError:  # no runs folder yet (one that is a file is check_folder's to say)
            return []
        return sorted(e.name for e in entries if RUN_ID_RE.match(e.name) and _is_run_folder(e))

    def load_all(self) -> tuple[list[RunRecord], list[str]]:
        """Every record, oldest first (one that cannot be read as an `unreadable` record with the
        reason), and one sentence per record that could not be read."""
        records = sorted((self.load_or_unreadable(run_id) for run_id in self.ids()), key=creation_order)
        return records, [r.error for r in records if r.status == "unreadable"]

    def recent_records(self, max_age: float) -> list[RunRecord]:
        """Every record as read at most `max_age` seconds ago: for a question each of many runs asks
        of all the others (which run of the recipe started next), one read of the runs folder for a
        whole `ls`, not one per run."""
        now = time.monotonic()
        if self._recent is None or now - self._recent[0] > max_age:
            self._recent = (now, self.load_all()[0])
        return self._recent[1]

    def resolve(self, ref: str) -> str:
        """A full run id from the full id, `last` (the newest run), or a unique prefix or tail
        (`20261125-1741`, `1a2b`); bad, unknown or ambiguous refs are UserErrors that list candidates."""
        if not ref or len(ref) > 255 or not RUN_ID_RE.match(ref) or ".." in ref:
            raise UserError(f"'{short(ref)}' is not a run id (ids look like 20261125-174100-cones-1a2b; no '/' or '..').")
        self.check_folder()
        ids = self.ids()
        if ref in ids:
            return ref
        if ref == "last":
            if not ids:
                raise UserError(f"there is no run in {self.root} yet, so no 'last' run.", code="run_not_found")
            return max(ids, key=self._created)  # the order `ls` lists in
        matches = [i for i in ids if i.startswith(ref) or i.endswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UserError(f"no run '{ref}' in {self.root}; `urbanrun ls --all` lists the runs.", code="run_not_found")
        shown = ", ".join(matches[:8]) + (f", … ({len(matches) - 8} more)" if len(matches) > 8 else "")
        raise UserError(f"'{ref}' matches {len(matches)} runs: {shown}; give more of the id (or its 4-hex tail).",
                        code="ambiguous_run")

    def _created(self, run_id: str) -> tuple:
        return creation_order(self.load_or_unreadable(run_id))

    def log_path(self, record: RunRecord) -> Path:
        return Path(record.log_path) if record.log_path else self.run_dir(record.id) / LOG_FILE

    def read_exit_status(self, run_id: str) -> dict | None:
        """The babysitter's record of how the run's process ended, or None while it has not ended.
        One that is not what the babysitter writes is a RecordError."""
        path = self.run_dir(run_id) / EXIT_FILE
        try:
            status = json.loads(platform.read_shared(path, EXIT_STATUS_LIMIT).decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # written atomically: a bad one is not a partial write
            raise RecordError(f"{path} cannot be read as the run's exit status ({exc}).") from None
        if not isinstance(status, dict):
            raise RecordError(f"{path} holds {type(status).__name__} {status!r:.40}, not the exit status object "
                              f"the babysitter writes.")
        for key, kind in (("exit_code", int), ("signal", int), ("ended", float), ("started", float),
                          ("error", str)):
            if key in status and not _matches(status[key], kind | None):
                raise RecordError(f"{path}: '{key}' = {status[key]!r} is not {_describe(kind)}.")
        return status
