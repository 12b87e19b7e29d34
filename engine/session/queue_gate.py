"""The gate of a queued run: started by the supervisor in the run's own session where the babysitter
would be, it waits until the launch queue admits the run (engine/runs/queue.py, under the ledger's
lock), then becomes the babysitter (exec: same pid, same session, so the record's pid and create time
stay true) with the admitted GPUs in its environment (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER).

No daemon: every queued run has its own gate, so the queue advances with no urbanrun open and
survives urbanrun's restarts. A stop (platform.send_stop) while waiting cancels the run: it leaves the queue without
ever starting (status `cancelled`). Where no stop is sent (Windows), the canceller marks the record and the ledger
itself, and the gate, finding its run no longer queued at its next look, ends.

    python -m urbanrun.engine.session.queue_gate RUN_DIR -- BABYSITTER ARGS...
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from pathlib import Path

from urbanrun.engine import platform
from urbanrun.engine.platform import cgroup
from urbanrun.engine.gpu.nvml import NvmlSource
from urbanrun.engine.gpu.recorded import RecordedGpuSource
from urbanrun.engine.gpu.sources import RECORDING_ENV
from urbanrun.engine.runs import proctree, queue
from urbanrun.engine.core.errors import UserError
from urbanrun.engine.core.state import GPU_MEM_KEY
from urbanrun.engine.metrics.follower import last_lines
from urbanrun.engine.runs.store import METRICS_FILE, RecordError, RunRecord, RunStore

POLL_SECONDS = 2.0


class GpuReader:
    """One NVML reading per call (every field due), or the recording named by URBANRUN_GPU_RECORDING,
    read afresh each time (a test or a post-mortem changes it to change the machine)."""

    def __init__(self):
        self.recording = os.environ.get(RECORDING_ENV)
        self.nvml = None if self.recording else NvmlSource(interval=0.0, process_interval=0.0, slow_interval=3600.0)

    def read(self) -> tuple[dict, list[dict], list[dict]]:
        if self.recording:
            try:
                return RecordedGpuSource(self.recording).snapshot()
            except (OSError, ValueError) as exc:
                return {"available": False, "reason": f"GPU recording {self.recording} unreadable: {exc}"}, [], []
        return self.nvml.snapshot()


def run_pids(record: RunRecord) -> list[int]:
    root = proctree.run_root(record)
    return [p.pid for p in proctree.tree_members(root, record.job_name)] if root else []


def reported_gpu_mem(run_dir: Path, lines: int = 64) -> float | None:
    """The run's own latest `gpu_mem` (bytes) among the last lines of its metrics.jsonl, or None:
    what the queue counts as held where NVML's per-process memory is N/A (WDDM, MIG, containers)."""
    try:
        tail = last_lines(run_dir / METRICS_FILE, lines)
    except OSError:
        return None
    for line in reversed(tail):
        if GPU_MEM_KEY not in line:
            continue
        try:
            value = json.loads(line).get(GPU_MEM_KEY)
        except (ValueError, AttributeError):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf:
            return float(value)
    return None


def run_states(store: RunStore, ledger: dict) -> dict[str, dict]:
    """What the ledger needs to know of the runs it names: alive?, ended when?, pids, still queued?,
    the run's own GPU memory figure."""
    out = {}
    for run_id in {p["run_id"] for p in ledger["promises"]} | {w["run_id"] for w in ledger["waiting"]}:
        try:
            record = store.load(run_id)
        except UserError:  # a record gone or unreadable, an id no run can have: its promise and place go too
            out[run_id] = {"active": False, "ended": 0.0, "queued": False}
            continue
        started = record.active and record.status != "queued"
        if record.status == "queued" and gate_gone(record):  # its place would block the queue forever
            out[run_id] = {"active": False, "ended": record.created or 0.0, "queued": False}
            continue
        out[run_id] = {"active": record.active, "ended": record.ended, "queued": record.status == "queued",
                       "pids": run_pids(record) if started else [],
                       "gpu_mem": reported_gpu_mem(store.run_dir(run_id)) if started else None}
    return out


def gate_gone(record: RunRecord) -> bool:
    """A queued run's gate is known to be gone (killed hard, the OOM killer, a reboot): its recorded
    pid and create time name no live process here. No urbanrun may be open to mark the run lost,
    so the other gates take it out of the line themselves. A record without a pid yet (its launch
    is still starting the gate) or from another host is never judged."""
    if record.pid is None or record.pid_create_time is None or record.host not in (None, socket.gethostname()):
        return False
    return proctree.run_root(record) is None


def step(store: RunStore, run_id: str, reader: GpuReader, now: float) -> queue.Decision:
    """One look, under the ledger's lock: settle promises, then try to admit this run."""
    with queue.locked(store.root) as ledger:
        try:
            record = store.load(run_id)
        except RecordError as exc:  # deleted or damaged while waiting: nothing is left to start
            queue.remove(ledger, run_id)
            return queue.Decision(False, reason=f"no longer queued ({exc})")
        if record.status != "queued":
            return queue.Decision(False, reason=f"no longer queued ({record.status})")
        if queue.position(ledger, run_id) is None:  # a damaged or deleted ledger: take our place again
            queue.enqueue(ledger, run_id, record.queue_mem_gb or 0.0, record.queue_gpus or 1,
                          record.queue_priority or 0, bool(record.queue_exclusive), record.queue_max_per_gpu,
                          now=record.created)
        status, gpus, processes = reader.read()
        states = run_states(store, ledger)
        owner = {pid: rid for rid, s in states.items() for pid in s.get("pids", [])}
        for p in processes:
            p["run_id"] = owner.get(p.get("pid"))
        queue.settle(ledger, states, processes, gpus, now, queue.settle_seconds())
        return queue.try_admit(ledger, run_id, status, gpus, processes, now)


def cancel(store: RunStore, run_id: str, now: float) -> bool:
    """Take a waiting run out of the queue and mark it cancelled; False if it was admitted already."""
    with queue.locked(store.root) as ledger:
        if queue.position(ledger, run_id) is None and any(p["run_id"] == run_id for p in ledger["promises"]):
            return False
        queue.remove(ledger, run_id)
        record = store.update(run_id, {"status": "cancelled", "ended": now, "queue_reason": None, "queue_position": None})
    cgroup.remove(record.cgroup, run_id)  # made for a command that will never start
    return True


def _cgroup_of(babysitter: list[str]) -> str | None:
    """The run's cgroup as its launch gave it to the babysitter: SCRIPT RUN_DIR [--cgroup PATH] -- ..."""
    return babysitter[3] if len(babysitter) > 3 and babysitter[2] == "--cgroup" else None


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m urbanrun.engine.session.queue_gate RUN_DIR -- BABYSITTER ARGS...", file=sys.stderr)
        return 2
    run_dir, babysitter = Path(argv[0]).resolve(), argv[2:]
    store, run_id = RunStore(run_dir.parent), run_dir.name
    stop = []
    platform.handle_stop_signals(lambda *_: stop.append(True))
    reader = GpuReader()
    poll = float(os.environ.get("URBANRUN_QUEUE_POLL", POLL_SECONDS))
    shown = None
    while True:
        now = time.time()
        if stop and cancel(store, run_id, now):
            print(f"urbanrun: {run_id} cancelled while queued; it never started.", flush=True)
            return 0
        decision = step(store, run_id, reader, now)
        if decision.admitted:
            break
        if decision.reason.startswith("no longer queued"):
            cgroup.remove(_cgroup_of(babysitter), run_id)  # made for a command that will never start
            print(f"urbanrun: {run_id} {decision.reason}; it never started.", flush=True)
            return 0
        if (decision.reason, decision.position) != shown:
            shown = (decision.reason, decision.position)
            store.update(run_id, {"queue_reason": decision.reason, "queue_position": decision.position})
            print(f"urbanrun: queued (#{decision.position}): {decision.reason}", flush=True)
        time.sleep(poll)
    cwd = store.load(run_id).cwd
    try:  # the folder its record names, as it is now: one removed while the run waited is said, not run in
        os.chdir(cwd)
    except OSError as exc:
        why = (f"its working directory {cwd} cannot be entered ({exc.strerror or exc}): it was removed or changed "
               f"while the run was queued, so it never started; put the folder back and launch it again")
        store.update(run_id, {"status": "failed", "ended": time.time(), "error": why, "queue_reason": None,
                              "queue_position": None})  # its promise ends with it (the settle delay)
        cgroup.remove(_cgroup_of(babysitter), run_id)
        print(f"urbanrun: {run_id}: {why}.", flush=True)
        return 1
    env = {**os.environ, **queue.cuda_env(decision.gpus)}
    gpus = [g["index"] for g in decision.gpus]
    store.update(run_id, {"status": "running", "started": time.time(), "gpus": gpus,
                          "queue_reason": None, "queue_position": None})
    print(f"urbanrun: admitted on GPU {','.join(map(str, gpus))}; starting.", flush=True)
    if platform.EXEC_KEEPS_PID:
        os.execve(sys.executable, [sys.executable, *babysitter], env)
    # Windows' exec would start a new process, unknown to the record: be the babysitter here
    from urbanrun.engine.runs import babysitter as sitter

    os.environ.update(env)
    return sitter.main(babysitter[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
