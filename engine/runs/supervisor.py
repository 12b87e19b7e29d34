"""Run supervisor: launch a recipe under a babysitter, kill a whole process tree without
blocking, and reconcile a record with reality (exit status written, process gone, pid reused)."""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import psutil

from urbanrun.engine import platform
from urbanrun.engine.core import redact
from urbanrun.engine.platform import cgroup
from urbanrun.engine.runs import code_state, proctree, queue, stop_request
from urbanrun.engine.core.config import Config, Recipe, expand
from urbanrun.engine.core.text import not_utf8
from urbanrun.engine.core.errors import UserError, storage_error
from urbanrun.engine.runs.backends import BACKENDS, slurm, torchrun
from urbanrun.engine.runs.store import EXIT_FILE, LOG_FILE, METRICS_FILE, RecordError, RunRecord, RunStore

BABYSITTER = Path(__file__).resolve().parent / "babysitter.py"
QUEUE_GATE = "-m urbanrun.engine.session.queue_gate"  # a queued run's first process (argv words)
BABYSITTER_LINGER = 5.0  # seconds a babysitter may outlive its tree after a kill before it is killed too
SURVIVOR_AFTER = 3.0  # seconds after the first hard kill: a process still alive then survives it (state D)
CHILD_START_WINDOW = 10.0  # seconds: the babysitter's child is created this soon after it notes the time


class Supervisor:
    def __init__(self, config: Config, store: RunStore, clock: Callable[[], float] = time.time):
        self.config = config
        self.store = store
        self.clock = clock
        self._popens: dict[str, subprocess.Popen] = {}  # babysitters this process started: reap them
        self._sigkilled: set[str] = set()  # SLURM jobs already sent scancel --signal=KILL
        self._slurm: slurm.SlurmClient | None = None

    # -- launch --------------------------------------------------------------------------------
    def launch(self, recipe_name: str, overrides: dict[str, str] | None = None,
               values: dict[str, Any] | None = None, backend: str | None = None,
               options: dict[str, str] | None = None, queue_request: dict | None = None,
               env: dict[str, str] | None = None) -> RunRecord:
        """Start a run. `overrides` are texts (`--set name=value`); `values` are typed (the form);
        `backend` local | torchrun | slurm (default: the recipe's) with its `options`; with a
        `queue_request` ({"mem_gb", "gpus", "priority", "exclusive", "max_per_gpu"}) the run waits in
        the GPU-aware queue until GPUs with that memory are free; `env`: variables over the recipe's
        env (a next action's, e.g. PYTORCH_CUDA_ALLOC_CONF). Everything is checked before anything
        is written."""
        recipe = self.config.recipe(recipe_name)
        backend = backend or recipe.backend
        if backend not in BACKENDS:
            raise UserError(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}.")
        if queue_request is not None and backend == "slurm":
            raise UserError("--queue is for runs on this machine's GPUs; SLURM has its own queue (drop --queue).")
        chosen = recipe.values_from_text(overrides or {})
        for name, value in (values or {}).items():
            if isinstance(value, str) and redact.MASK in value:
                continue  # a value redacted in a record (a relaunch): the recipe's default stands in
            chosen[name] = _checked(recipe, name, value)
        now = self.clock()
        run_id = self.store.free_run_id(recipe.name, now)
        run_dir = self.store.run_dir(run_id).resolve()
        ctx = self.config.context(run_dir)
        cwd = recipe.resolved_cwd(ctx)
        if not cwd.is_dir():
            raise UserError(f"recipe '{recipe.name}': working directory {cwd} does not exist; set `cwd` "
                            f"(or the [paths] entry it uses) in {self.config.path} to an existing folder.")
        ctx["cwd"] = str(cwd)
        argv = recipe.argv(chosen, ctx)
        if _find_executable(argv[0], cwd) is None:
            raise UserError(f"recipe '{recipe.name}': program '{argv[0]}' was not found (cwd {cwd}); "
                            f"fix `command` in {self.config.path}.")
        env_overrides = {k: expand(v, ctx, where=f"recipes.{recipe.name}.env") for k, v in recipe.env.items()}
        env_overrides.update(env or {})
        texts = [v for v in (*chosen.values(), *(options or {}).values()) if isinstance(v, str)]
        for part in (str(cwd), *argv, *env_overrides, *env_overrides.values(), *texts):
            if "\0" in part:  # no argv or environment can carry a NUL byte; Popen would fail after the folder
                raise UserError(f"recipe '{recipe.name}': {part.split(chr(0))[0]!r}… holds a NUL character, which no "
                                f"command line or environment can pass; remove it.")
            if (shown := not_utf8(part)) is not None:  # a Latin-1 terminal or folder: the record cannot hold it
                raise UserError(f"recipe '{recipe.name}': {shown!r} holds a byte that is not UTF-8 (shown as ?); "
                                f"the run's record is UTF-8 text and cannot hold it: use UTF-8 (retype the value, or rename the folder).")
        opts: dict = {}
        if backend == "torchrun":
            opts = torchrun.options(self.config.backends.get("torchrun", {}),
                                    recipe.backend_options.get("torchrun", {}), options or {})
            argv = torchrun.wrap(argv, run_dir, opts)
            env_overrides.update(torchrun.env(opts))
        elif backend == "slurm":
            opts = slurm.options(self.config.backends.get("slurm", {}), recipe.backend_options.get("slurm", {}),
                                 options or {})
            if not slurm.available():
                raise UserError("the slurm backend needs sbatch, squeue, scancel and scontrol on this machine "
                                "(run urbanrun on the cluster's login node).")
        elif options:
            raise UserError(f"--opt is for the torchrun and slurm backends; '{recipe.name}' runs locally.")
        metrics_files = [expand(f, ctx, where=f"recipes.{recipe.name}.metrics_files") for f in recipe.metrics_files]
        code = code_state.capture(cwd)
        defaults = recipe.defaults()
        # the record holds no secret (it is written, shown, recorded and logged); the process gets them
        known = redact.secrets_in(argv, env_overrides)
        record = RunRecord(
            id=run_id, recipe=recipe.name, argv=redact.argv(argv), cwd=str(cwd), backend=backend,
            backend_options=redact.data({k: v for k, v in opts.items() if v not in ("", [], None)}, known),
            env=redact.env(env_overrides),
            params=redact.data({k: v for k, v in chosen.items() if v is not None}, known),
            changed=redact.data({k: v for k, v in chosen.items() if v != defaults.get(k) and v is not None}, known),
            created=now, host=socket.gethostname(), metrics_files=redact.data(metrics_files, known),
            log_patterns=list(recipe.log_patterns), job_name=platform.job_name(run_id),
            **(code.record_fields() if code else {}),
        )
        if queue_request is not None:
            record.status = "queued"
            record.queue_reason = "waiting for its first look at the GPUs"
            for key in ("mem_gb", "gpus", "priority", "exclusive", "max_per_gpu"):
                setattr(record, f"queue_{key}", queue_request.get(key))
        job = self._slurm_job(record, run_dir, argv, env_overrides, opts) if backend == "slurm" else None
        self.store.create(record)  # read-only or full: one sentence, no folder left
        try:
            code_state.keep_diff(run_dir, code)
            if job is not None:
                return self._submit(record, run_dir, *job)
            if queue_request is not None:
                with queue.locked(self.store.root) as ledger:
                    queue.enqueue(ledger, record.id, record.queue_mem_gb, record.queue_gpus or 1,
                                  record.queue_priority or 0, bool(record.queue_exclusive), record.queue_max_per_gpu,
                                  now)
                    record.queue_position = queue.position(ledger, record.id)
            return self._spawn(record, run_dir, argv, env_overrides)
        except OSError as exc:
            if record.pid is not None or record.job_id:
                raise  # something started: its folder is its record
            self.store.discard(record.id)
            if queue_request is not None:
                self._unqueue(record.id)
            raise storage_error(exc, self.store.root, "prepare the run") from None

    def _unqueue(self, run_id: str) -> None:
        """Take a run whose launch failed out of the queue's ledger: its place would stand (and count
        in every other run's position) until a gate's look dropped it. The disk that refused the
        launch may refuse this too (the next look drops it then)."""
        try:
            with queue.locked(self.store.root) as ledger:
                queue.remove(ledger, run_id)
        except (OSError, UserError):
            pass

    def _slurm_job(self, record: RunRecord, run_dir: Path, argv: list[str], env_overrides: dict[str, str],
                   opts: dict) -> tuple[str, dict[str, str], Path]:
        """The job script (checked: it is built before anything is written), sbatch's environment and
        the job's log."""
        log = Path(opts["output_dir"]).expanduser() / f"{record.id}.log" if opts.get("output_dir") else run_dir / LOG_FILE
        env = {**env_overrides, "URBANRUN_RUN_ID": record.id, "URBANRUN_RUN_DIR": str(run_dir),
               "URBANRUN_METRICS": str(run_dir / METRICS_FILE), "PYTHONUNBUFFERED": "1"}
        text, env = slurm.batch_script(record.id, record.recipe, argv, record.cwd, env, log, opts)
        return text, env, log

    def _submit(self, record: RunRecord, run_dir: Path, text: str, env: dict[str, str], log: Path) -> RunRecord:
        if log.parent != run_dir:
            log.parent.mkdir(parents=True, exist_ok=True)
            record.log_path = str(log)
        script = run_dir / "job.sbatch"
        slurm.write_script(script, text)
        try:
            record.job_id = slurm.submit(script, env)
        except UserError as exc:
            record.status, record.error, record.ended = "failed", str(exc), self.clock()
            self.store.save(record)
            return record
        record.status = "pending"
        self.slurm.nudge()
        self.store.save(record)
        return record

    @property
    def slurm_outage(self) -> str | None:
        """'SLURM controller unreachable since 10:02 (…)' while it does not answer, else None."""
        if self._slurm is None or self._slurm.reachable:
            return None
        return self._slurm.describe_outage()

    @property
    def slurm(self) -> slurm.SlurmClient:
        if self._slurm is None:
            self._slurm = slurm.SlurmClient()
        return self._slurm

    def _spawn(self, record: RunRecord, run_dir: Path, argv: list[str], env_overrides: dict[str, str]) -> RunRecord:
        env = {**platform.RUN_ENV, **os.environ, **env_overrides,
               "URBANRUN_RUN_ID": record.id, "URBANRUN_RUN_DIR": str(run_dir),
               "URBANRUN_METRICS": str(run_dir / METRICS_FILE), "PYTHONUNBUFFERED": "1"}
        with open(run_dir / LOG_FILE, "ab") as log:  # a folder that cannot take it: launch's storage error
            record.cgroup = cgroup.create(record.id)  # where one can be made: the whole run, found and killed as one
            try:
                inside = ["--cgroup", record.cgroup] if record.cgroup else []
                babysitter = [str(BABYSITTER), str(run_dir), *inside, "--", *argv]  # the real argv; the record's is redacted
                gate = [*QUEUE_GATE.split(), str(run_dir), "--"] if record.status == "queued" else []
                popen = subprocess.Popen(
                    [sys.executable, *gate, *babysitter],
                    cwd=record.cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    close_fds=True, **platform.new_session_kwargs())
            except OSError as exc:
                cgroup.remove(record.cgroup, record.id)
                record.status, record.error, record.ended = "failed", f"could not start: {exc}", self.clock()
                self.store.save(record)
                return record
        record.pid, record.pid_create_time = popen.pid, proctree.create_time_of(popen.pid)
        if record.status != "queued":  # a queued run's gate says when it starts
            record.status, record.started = "running", self.clock()
        try:
            self.store.save(record)
        except OSError:
            # a run whose start cannot be recorded would run unseen: stop it before it does anything
            root = proctree.process_if_same(popen.pid, record.pid_create_time)
            # the babysitter too: it would retry its exit status on this disk forever, and this wait with it
            platform.kill_hard([root, *proctree.tree_members(root, record.job_name)] if root else [], record.job_name)
            popen.wait()
            cgroup.remove(record.cgroup, record.id)
            record.pid = record.pid_create_time = None  # nothing of it runs: launch removes its folder
            raise
        self._popens[record.id] = popen
        return record

    # -- kill ----------------------------------------------------------------------------------
    def request_kill(self, run_id: str, grace: float | None = None, force: bool = False) -> tuple[RunRecord, bool]:
        """Begin stopping a run: the set to stop (every process of the run, by pid + create time)
        is taken now and kept in the record, then each gets the stop (the hard kill when forced);
        `reconcile` kills every survivor outright once the grace is over, again on each call
        until none is left. Returns at once: the record, and False when the run had already ended
        with nothing of it alive (then nothing is signalled and nothing is written). The caller
        reconciles the record first, so a stale one is found ended before anything is decided."""
        grace = self.config.kill_grace if grace is None else grace
        if not 0 <= grace < math.inf:  # nan would never escalate, inf never end
            raise UserError(f"--grace must be a number of seconds >= 0, not {grace}.")
        record = self.store.load(run_id)
        if record.status == "queued" and self.cancel_queued(record):
            return self.store.load(run_id), True
        if not record.watched:
            return record, False
        now = self.clock()
        if record.backend == "slurm":
            record.adopt(self.store.update(run_id, lambda r: _begin_kill(r, now, grace, force, [])))
            try:  # TERM, SLURM's KillWait, KILL; KILL at once if forced
                slurm.cancel(record.job_id, kill=force)
            except slurm.Unreachable as exc:
                raise UserError(f"the SLURM controller did not answer ({exc}); the kill of {run_id} is recorded "
                                f"and urbanrun sends it (scancel --signal=KILL) once the controller answers.") from None
            self.slurm.nudge()
            return record, True
        members = self.members(record)
        targets = [proctree.identity(p) for p in members]
        try:
            record.adopt(self.store.update(run_id, lambda r: _begin_kill(r, now, grace, force, targets)))
        except OSError:  # a run folder that cannot be written (read-only, immutable, full): the kill
            _begin_kill(record, now, grace, force, targets)  # goes on from this copy; the caller says so
        if force:
            self._kill_hard(record, members)
        else:
            self._stop(record, members)
        return record, True

    def _stop(self, record: RunRecord, procs: list) -> None:
        """The graceful stop: asked of the run's babysitter where only it can send it (Windows: it
        shares the run's console), else sent to `procs` from here. Asking can fail (a full disk):
        then nothing graceful is sent, and the hard kill after the grace ends the run."""
        if not platform.STOP_BY_REQUEST:
            platform.send_stop(procs, proctree.run_root(record, self.store.run_dir(record.id)))
            return
        try:
            stop_request.request(self.store.run_dir(record.id), self.clock())
        except OSError:
            pass

    def cancel_queued(self, record: RunRecord) -> bool:
        """Take a run that still waits out of the queue (status `cancelled`, never started) and tell
        its gate to go; False when the queue admitted it meanwhile (it is killed like any run)."""
        with queue.locked(self.store.root) as ledger:
            if not queue.remove(ledger, record.id) and queue.position(ledger, record.id) is None \
                    and any(p["run_id"] == record.id for p in ledger["promises"]):
                return False
            self.store.update(record.id, {"status": "cancelled", "ended": self.clock(), "queue_reason": None,
                                          "queue_position": None})
        cgroup.remove(record.cgroup, record.id)  # made for a command that will never start
        gate = proctree.run_root(record, self.store.run_dir(record.id))
        if gate is not None:
            platform.send_stop([gate], gate)
        return True

    def move_queued(self, run_id: str, by: int) -> bool:
        """Move a waiting run one place earlier (by < 0) or later in the queue."""
        with queue.locked(self.store.root) as ledger:
            moved = queue.move(ledger, run_id, by)
            places = {w["run_id"]: queue.position(ledger, w["run_id"]) for w in ledger["waiting"]}
        for rid, place in places.items():
            self.store.update(rid, {"queue_position": place})
        return moved

    def members(self, record: RunRecord) -> list:
        """Every live process of the run but its babysitter, each known by pid + create time:
        the babysitter's descendants (orphans stay under it: it is their subreaper on Linux) and
        its session, while the babysitter is the process the record names; the processes the
        record kept (the set a kill took, leftovers); their descendants. Never a bare pid."""
        if record.backend == "slurm":
            return []  # a SLURM job's processes are the scheduler's to end: its state says when
        found: dict[int, object] = {}
        root = proctree.run_root(record, self.store.run_dir(record.id))
        if root is None and proctree.copied_from(record, self.store.run_dir(record.id)):
            return []  # a copy of a live run's folder: its processes (and cgroup) are the original's
        if root is not None:
            found.update((p.pid, p) for p in proctree.tree_members(root, record.job_name))
        elif record.job_name:  # Windows: the run's named Job Object is an identity of its own
            found.update((p.pid, p) for p in proctree.session_members(None, record.started, record.job_name))
        elif record.active and not record.cgroup:  # babysitter killed from outside, nothing else holds them
            found.update((p.pid, p) for p in proctree.carrying_run_id(record.id, record.started or record.created))
        for pid in cgroup.pids(record.cgroup, record.id):  # membership is the identity: taken now
            try:
                found.setdefault(pid, psutil.Process(pid))
            except psutil.Error:
                continue
        for proc in proctree.recorded(record.kill_targets + record.leftovers):
            found.setdefault(proc.pid, proc)
            found.update((p.pid, p) for p in proctree.descendants(proc))
        if root is not None:
            found.pop(root.pid, None)
        return [p for p in found.values() if proctree.alive(p)]

    def _kill_hard(self, record: RunRecord, members: list) -> None:
        cgroup.kill(record.cgroup, record.id)  # all at once, late forks included
        platform.kill_hard(members, record.job_name)

    # -- reconcile -----------------------------------------------------------------------------
    def reconcile(self, record: RunRecord) -> bool:
        """Bring a record up to date with its processes (a running run, or one whose leftovers
        live on); True if it changed (and was saved)."""
        if not record.watched:
            return False
        if record.backend == "slurm":
            return self._reconcile_slurm(record) if record.active else False
        popen = self._popens.get(record.id)
        if popen is not None and popen.poll() is not None:
            del self._popens[record.id]
        now = self.clock()
        if record.kill_requested and record.kill_deadline is not None:
            self._escalate(record, now)
        try:
            status = self.store.read_exit_status(record.id)
        except RecordError as exc:
            if record.active and proctree.run_root(record, self.store.run_dir(record.id)) is not None:
                # its babysitter lives, so the status is still to come: a folder (or a full disk) in
                # its way is retried by it, and said in the run's log; made `unreadable` here, the
                # run's exit code was lost for good once the status landed
                status = None
            else:  # the run ended, but how cannot be told: say why, keep the file
                record.status, record.error, record.ended, record.leftovers = "unreadable", str(exc), now, []
                self.store.save(record)
                return True
        # the run's processes are looked for only when they matter (a process scan per poll
        # would cost a watched training run's supervisor CPU for nothing)
        needed = status is not None or not record.active or record.kill_requested is not None
        alive = self.members(record) if needed else []
        if record.active:
            self._settle(record, status, alive, now)
        if status is not None or not record.active:
            record.leftovers = self._leftovers(record, alive, now)
        elif record.kill_requested:  # the main process itself outlives the kill (state D): say so
            record.leftovers = self._leftovers(record, alive, now) if self._overdue(record, now) else []
        if not record.watched:
            cgroup.remove(record.cgroup, record.id)  # empty now (the babysitter removes it too, when it can)
        if not record.changes():
            return False
        self.store.save(record)
        return True

    def _settle(self, record: RunRecord, status: dict | None, alive: list, now: float) -> None:
        """An active record: has its main process ended, and how?"""
        root = proctree.run_root(record, self.store.run_dir(record.id))
        if status is not None:
            if record.kill_requested and alive:
                return  # the main process ended, the kill goes on: `killed` only when nothing is left
            record.exit_code = status.get("exit_code")
            record.signal = status.get("signal")
            record.ended = status.get("ended") or now
            if status.get("error"):
                record.error = status["error"]
            if record.kill_requested:
                record.status = "killed"
            else:
                record.status = "exited" if record.exit_code == 0 else "failed"
        elif root is None and (original := proctree.copied_from(record, self.store.run_dir(record.id))):
            record.status, record.ended, record.leftovers = "lost", now, []
            record.error = (f"this folder is a copy of the run folder {original}, whose processes are still running: "
                            f"they are that run's, and urbanrun does not act on them from here")
        elif record.pid is not None and record.pid_create_time is None:
            record.status, record.ended = "lost", now
            record.error = ("its record has no process create time, so its pid could be any process's: "
                            "urbanrun does not act on it")
        elif root is None and record.pid is not None and not self._child_alive(record):
            if (late := self._late_exit_status(record)) is not None:  # written since it was read: ended, not lost
                return self._settle(record, late, alive, now)
            record.status, record.ended = "lost", now
            record.error = "its process ended while no exit status was recorded (babysitter killed, or reboot)"
        elif record.pid is None and now - (record.created or now) > 30:
            record.status, record.ended = "lost", now
            record.error = "it never started (urbanrun stopped while launching it)"

    def _late_exit_status(self, record: RunRecord) -> dict | None:
        """The exit status read again once no process of the run is found: the babysitter writes it and
        then ends, so a status read just before its write and a look just after its end (another
        command on the run at the same moment) would otherwise call a run that ended `lost`."""
        try:
            return self.store.read_exit_status(record.id)
        except RecordError:
            return None

    def _leftovers(self, record: RunRecord, alive: list, now: float) -> list[dict]:
        """What the record says of the run's processes still alive: identities, with each one's
        state and why it survives once a kill is overdue."""
        overdue = self._overdue(record, now)
        fresh = [proctree.identity(p, why=overdue) for p in alive]
        if not overdue:  # same processes as before: keep the record as it is (no rewrite per poll)
            kept = {(d["pid"], d.get("created")): d for d in record.leftovers}
            fresh = [kept.get((d["pid"], d.get("created")), d) for d in fresh]
        return sorted(fresh, key=lambda d: d["pid"])

    def _overdue(self, record: RunRecord, now: float) -> bool:
        return (record.kill_deadline is not None and record.kill_requested is not None
                and now >= record.kill_deadline + SURVIVOR_AFTER)

    def _reconcile_slurm(self, record: RunRecord) -> bool:
        now = self.clock()
        if not record.job_id:
            return False
        job = self.slurm.state(record.job_id)
        before = (record.status, record.pending_reason, record.exit_code, record.signal, record.unreachable_since)
        if not self.slurm.reachable:  # the controller's silence is not the job's end: keep its last state
            record.unreachable_since = record.unreachable_since or self.slurm.unreachable_since
            if job is not None and not job.finished:
                job = None
        else:
            record.unreachable_since = None
        if job is None:
            if self.slurm.reachable and now - (record.created or now) > 60:
                record.status, record.ended = "lost", now
                record.error = f"SLURM no longer knows job {record.job_id} (purged, and no accounting to ask)"
        elif job.state in slurm.PENDING:
            record.status, record.pending_reason = "pending", job.reason
        elif not job.finished:
            record.status, record.pending_reason = "running", None
            record.started = record.started or job.started or now
            if record.kill_requested and now >= (record.kill_deadline or now) and record.id not in self._sigkilled:
                try:
                    slurm.cancel(record.job_id, kill=True)
                    self._sigkilled.add(record.id)
                except slurm.Unreachable:
                    pass  # sent again at the next reconcile that finds the controller answering
        else:
            record.exit_code, record.signal = job.exit_code, job.signal
            record.ended, record.pending_reason = job.ended or now, None
            record.started = record.started or job.started or record.ended
            if job.state == "CANCELLED":
                record.status = "killed"
            elif job.state == "COMPLETED" and not job.exit_code:
                record.status = "exited"
            else:
                record.status = "failed"
                if job.state not in ("FAILED", "COMPLETED"):
                    record.error = f"SLURM ended the job: {job.state}"
        if (record.status, record.pending_reason, record.exit_code, record.signal, record.unreachable_since) == before:
            return False
        self.store.save(record)
        return True

    def _escalate(self, record: RunRecord, now: float) -> None:
        """During the grace: the graceful stop to processes that joined the run since the kill began (a kill
        right after launch, a late fork). After it: the hard kill to every member, on every call, until
        none is left, whether or not the main process has already exited."""
        members = self.members(record)
        known = {(t.get("pid"), t.get("created")) for t in record.kill_targets}
        joined = [p for p in members if (p.pid, proctree.identity(p)["created"]) not in known]
        if joined:
            record.kill_targets = record.kill_targets + [proctree.identity(p) for p in joined]
        if now < record.kill_deadline:
            if joined:
                self._stop(record, joined)
            return
        if members:
            self._kill_hard(record, members)
            return
        root = proctree.run_root(record, self.store.run_dir(record.id))
        if root is not None and now > record.kill_deadline + BABYSITTER_LINGER \
                and not (self.store.run_dir(record.id) / EXIT_FILE).exists():
            platform.kill_hard([root], record.job_name)  # a babysitter that cannot finish: end it too

    def _child_alive(self, record: RunRecord) -> bool:
        """A babysitter killed from outside leaves its child running; the run is not lost yet."""
        child = _read_json(self.store.run_dir(record.id) / "child.json")
        if not isinstance(child, dict) or not isinstance(child.get("pid"), int):
            return False
        try:  # its identity: started by the babysitter just after the time it wrote down
            proc = psutil.Process(child["pid"])
            started = float(child.get("started") or 0)
            if not (started - 1 <= proc.create_time() <= started + CHILD_START_WINDOW and proctree.alive(proc)):
                return False
        except (psutil.Error, TypeError, ValueError):
            return False
        return proctree.names_run(proc, record.id)


def _begin_kill(record: RunRecord, now: float, grace: float, force: bool, targets: list[dict]) -> None:
    """The kill's part of the record: when it began, when the hard kill is due, and the set to stop."""
    record.kill_requested = record.kill_requested or now
    record.kill_deadline = min(record.kill_deadline or float("inf"), now if force else now + grace)
    known = {(t.get("pid"), t.get("created")) for t in record.kill_targets}
    record.kill_targets = record.kill_targets + [t for t in targets if (t["pid"], t["created"]) not in known]


def _checked(recipe: Recipe, name: str, value: Any) -> Any:
    from urbanrun.engine.core.params import ParamError

    try:
        return recipe.param(name).parse(value)
    except ParamError as exc:
        raise UserError(f"recipe '{recipe.name}', parameter '{name}': {exc}.") from None


def _find_executable(program: str, cwd: Path) -> str | None:
    if os.sep in program or (os.altsep and os.altsep in program):
        path = Path(program) if Path(program).is_absolute() else cwd / program
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(program)


def _read_json(path: Path) -> dict | None:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None

