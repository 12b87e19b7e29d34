"""The GPU-aware launch queue's ledger: one JSON file in the runs folder (`queue.json`), changed only
under its lock (`.queue.lock`), holding the runs still waiting (in queue order) and the memory
promised to runs already admitted, by GPU UUID.

Admission is a pure function of the ledger and one NVML reading, so it is tested with recorded
readings. A GPU's available memory is NVML's free memory minus what admitted runs were promised and
do not yet visibly hold (a run's memory appears seconds to minutes after it starts: counting only
NVML's free memory would admit two runs into the same memory). A promise is released when the run's
processes visibly hold it, or a settle delay after the run ended.

What a run holds is NVML's per-process figure; where NVML has none (N/A under WDDM on Windows GeForce
cards, MIG, containers) it is the run's own `gpu_mem` (bytes, metrics contract), and where neither is
known the promise stays owed in full: N/A is never taken for 0 bytes held. A GPU's free memory is only
ever the device's own reading (nvmlDeviceGetMemoryInfo), never assumed: a GPU that reports none admits
nothing.

No daemon: each queued run's gate process (engine/session/queue_gate.py) calls `try_admit` for
itself every poll, under the lock; the head of the queue is admitted first (FIFO by priority).
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from urbanrun.engine.core.atomic import atomic_write_text
from urbanrun.engine.core.errors import UserError

LEDGER_FILE = "queue.json"
LOCK_FILE = ".queue.lock"
LOCK_TIMEOUT = 30.0
SETTLE_SECONDS = 10.0  # a promise outlives its run this long: the driver frees memory a little later
VISIBLE_FRACTION = 0.5  # a run "holds its promise" once NVML shows this share of it on that GPU
GB = 1e9


@dataclass(frozen=True)
class Decision:
    admitted: bool
    gpus: tuple[dict, ...] = ()  # the chosen GPUs: {"index", "uuid", "name"}
    reason: str = ""  # why it still waits
    position: int = 0  # 1 = next in line


def ledger_path(runs_dir: Path) -> Path:
    return Path(runs_dir) / LEDGER_FILE


@contextmanager
def locked(runs_dir: Path):
    """The ledger, read under its lock; what the block leaves in it is written back atomically."""
    import filelock  # here: importing the queue (the supervisor does) loads no lock library

    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    try:
        with filelock.FileLock(runs_dir / LOCK_FILE, timeout=LOCK_TIMEOUT):
            ledger = read(runs_dir)
            before = json.dumps(ledger, sort_keys=True)
            yield ledger
            if json.dumps(ledger, sort_keys=True) != before:
                atomic_write_text(ledger_path(runs_dir), json.dumps(ledger, indent=1, sort_keys=True))
    except filelock.Timeout:
        raise UserError(f"the launch queue's lock ({runs_dir / LOCK_FILE}) stays taken for over "
                        f"{LOCK_TIMEOUT:.0f} s; is another urbanrun stuck? Try again.") from None


def read(runs_dir: Path) -> dict:
    """The ledger, tolerant: a missing or damaged file is an empty queue (the waiting runs' records
    still say they are queued, and their gates put them back)."""
    try:
        data = json.loads(ledger_path(runs_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    waiting = [w for w in map(_waiting, _list(data.get("waiting"))) if w is not None]
    promises = [p for p in map(_promise, _list(data.get("promises"))) if p is not None]
    try:
        seq = _number(data.get("seq"), int, 0)
    except ValueError:
        seq = 0
    seq = max([seq] + [w["seq"] for w in waiting])
    return {"waiting": waiting, "promises": promises, "seq": seq}


# An entry with a field of the wrong kind (a hand edit, another version) is dropped, never a crash of
# every gate: a waiting run's gate puts it back from its record; a promise is the admitted run's own.
def _list(value) -> list:
    return value if isinstance(value, list) else []


REQUIRED = object()


def _number(value, kind, default, least=None):
    if value is None:
        if default is REQUIRED:
            raise ValueError(value)
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(value)
    if least is not None and value < least:
        raise ValueError(value)
    return kind(value)


def _waiting(w) -> dict | None:
    if not isinstance(w, dict) or not isinstance(w.get("run_id"), str):
        return None
    try:
        return {"run_id": w["run_id"], "mem_gb": _number(w.get("mem_gb"), float, REQUIRED, 0),
                "gpus": _number(w.get("gpus"), int, 1, 1), "priority": _number(w.get("priority"), int, 0),
                "exclusive": bool(w.get("exclusive")), "max_per_gpu": _number(w.get("max_per_gpu"), int, None, 1),
                "seq": _number(w.get("seq"), int, 0), "enqueued": _number(w.get("enqueued"), float, 0.0)}
    except ValueError:
        return None


def _promise(p) -> dict | None:
    if not isinstance(p, dict) or not isinstance(p.get("run_id"), str):
        return None
    try:
        out = {**p, "gpu_uuid": p.get("gpu_uuid") if isinstance(p.get("gpu_uuid"), str) else None,
               "mem_gb": _number(p.get("mem_gb"), float, REQUIRED, 0)}
        for key in ("admitted", "ended_seen", "visible_bytes"):  # bad: as if not yet known
            try:
                out[key] = _number(p.get(key), float, None)
            except ValueError:
                out[key] = None
            if out[key] is None:
                out.pop(key)
        return out
    except ValueError:
        return None


def enqueue(ledger: dict, run_id: str, mem_gb: float, gpus: int = 1, priority: int = 0,
            exclusive: bool = False, max_per_gpu: int | None = None, now: float | None = None) -> dict:
    if any(w["run_id"] == run_id for w in ledger["waiting"]):
        return next(w for w in ledger["waiting"] if w["run_id"] == run_id)
    ledger["seq"] += 1
    entry = {"run_id": run_id, "mem_gb": float(mem_gb), "gpus": int(gpus), "priority": int(priority),
             "exclusive": bool(exclusive), "max_per_gpu": max_per_gpu, "seq": ledger["seq"],
             "enqueued": now if now is not None else time.time()}
    ledger["waiting"].append(entry)
    return entry


def order(ledger: dict) -> list[dict]:
    """Waiting runs in the order they start: higher priority first, then first come."""
    return sorted(ledger["waiting"], key=lambda w: (-w.get("priority", 0), w.get("seq", 0)))


def position(ledger: dict, run_id: str) -> int | None:
    for i, w in enumerate(order(ledger), 1):
        if w["run_id"] == run_id:
            return i
    return None


def remove(ledger: dict, run_id: str) -> bool:
    """Take a run out of the queue (cancelled, or its gate is gone). True if it was waiting."""
    before = len(ledger["waiting"])
    ledger["waiting"] = [w for w in ledger["waiting"] if w["run_id"] != run_id]
    return len(ledger["waiting"]) != before


def move(ledger: dict, run_id: str, by: int) -> bool:
    """Swap a waiting run with its neighbour: earlier in the queue (by < 0) or later (by > 0)."""
    queue = order(ledger)
    i = next((k for k, w in enumerate(queue) if w["run_id"] == run_id), None)
    if i is None:
        return False
    j = i + (1 if by > 0 else -1)
    if not 0 <= j < len(queue):
        return False
    a, b = queue[i], queue[j]
    a["seq"], b["seq"] = b["seq"], a["seq"]
    a["priority"], b["priority"] = b["priority"], a["priority"]
    return True


def release(ledger: dict, run_id: str) -> None:
    ledger["promises"] = [p for p in ledger["promises"] if p["run_id"] != run_id]


# -- admission ------------------------------------------------------------------------------------------
def held_by_run(processes: list[dict], gpu: dict, pids: set[int]) -> float | None:
    """Bytes NVML shows the run's processes holding on this GPU; None when it shows no figure for
    any of them (not listed, or listed with N/A memory)."""
    figures = [p["used_mem"] for p in processes
               if p.get("pid") in pids and p.get("gpu") == gpu.get("index") and p.get("used_mem") is not None]
    return float(sum(figures)) if figures else None


def visible(processes: list[dict], gpu: dict, state: dict) -> float:
    """What an admitted run visibly holds on this GPU: NVML's figure, else the run's own `gpu_mem`
    (its device's figure, taken for each of its GPUs), else nothing yet."""
    held = held_by_run(processes, gpu, set(state.get("pids") or ()))
    if held is None:
        held = state.get("gpu_mem")
    return held or 0.0


def settle(ledger: dict, run_state: dict[str, dict], processes: list[dict], gpus: list[dict], now: float,
           settle_seconds: float = SETTLE_SECONDS) -> None:
    """Drop promises that are visible in NVML or whose run ended more than settle_seconds ago, and
    waiting entries whose run is no longer queued. `run_state` maps run id -> {"active", "ended",
    "pids", "queued", "gpu_mem"} as the caller read them (gpu_mem: the run's own latest figure, or None)."""
    by_uuid = {g.get("uuid"): g for g in gpus}
    kept = []
    for p in ledger["promises"]:
        state = run_state.get(p["run_id"], {})
        if not state.get("active", False):
            ended = state.get("ended") or p.get("ended_seen") or now
            p["ended_seen"] = ended
            if now - ended >= settle_seconds:
                continue
        gpu = by_uuid.get(p["gpu_uuid"])
        if gpu is not None and (state.get("pids") or state.get("gpu_mem") is not None):
            p["visible_bytes"] = visible(processes, gpu, state)
        kept.append(p)
    ledger["promises"] = kept
    ledger["waiting"] = [w for w in ledger["waiting"] if run_state.get(w["run_id"], {}).get("queued", True)]


def device_free(gpu: dict) -> float | None:
    """The GPU's free bytes as the device reports them (free, or total - used); None if it does not."""
    if gpu.get("mem_free") is not None:
        return float(gpu["mem_free"])
    if gpu.get("mem_total") is not None and gpu.get("mem_used") is not None:
        return float(gpu["mem_total"] - gpu["mem_used"])
    return None


def unpromised(gpu: dict, ledger: dict) -> float:
    """NVML's free bytes on this GPU minus promises its runs do not yet visibly hold (0 when the
    device reports no free memory: none is assumed)."""
    free = device_free(gpu)
    owed = 0.0
    for p in ledger["promises"]:
        if p["gpu_uuid"] == gpu.get("uuid"):
            promised = p["mem_gb"] * GB
            visible = p.get("visible_bytes") or 0.0
            owed += 0.0 if visible >= VISIBLE_FRACTION * promised else promised - visible
    return max(0.0, (free or 0.0) - owed)


def _runs_on(gpu: dict, ledger: dict, processes: list[dict]) -> int:
    promised = {p["run_id"] for p in ledger["promises"] if p["gpu_uuid"] == gpu.get("uuid")}
    others = {p.get("pid") for p in processes if p.get("gpu") == gpu.get("index") and not p.get("run_id")}
    return len(promised) + len(others)


def _fits(entry: dict, gpu: dict, ledger: dict, processes: list[dict]) -> tuple[bool, str]:
    name = f"GPU {gpu.get('index')}"
    if gpu.get("lost"):
        return False, f"{name} is lost"
    if entry.get("exclusive") and _runs_on(gpu, ledger, processes):
        return False, f"{name} is in use (the run wants a GPU of its own)"
    limit = entry.get("max_per_gpu")
    if limit and _runs_on(gpu, ledger, processes) >= limit:
        return False, f"{name} already has {limit} run(s) (max_per_gpu)"
    if device_free(gpu) is None:
        return False, f"{name} reports no free memory figure"
    available = unpromised(gpu, ledger)
    if available < entry["mem_gb"] * GB:
        return False, f"{name} has {available / GB:.1f} GB unpromised"
    return True, ""


def try_admit(ledger: dict, run_id: str, gpu_status: dict, gpus: list[dict], processes: list[dict],
              now: float | None = None) -> Decision:
    """Admit `run_id` if it is next in line and enough GPUs have enough memory; records the promises."""
    now = time.time() if now is None else now
    queue = order(ledger)
    index = next((i for i, w in enumerate(queue) if w["run_id"] == run_id), None)
    if index is None:
        return Decision(False, reason="not in the queue (cancelled?)")
    entry = queue[index]
    need = f"needs {entry['mem_gb']:.1f} GB" + (f" on each of {entry['gpus']} GPUs" if entry["gpus"] > 1 else "")
    if not gpu_status.get("available") or not gpus:
        why = gpu_status.get("reason") or "no NVIDIA GPU found"
        return Decision(False, reason=f"{need}; no GPU to run on ({why})", position=index + 1)
    biggest = max((g.get("mem_total") or 0) for g in gpus)
    fits_anywhere = entry["mem_gb"] * GB <= biggest and entry["gpus"] <= len(gpus)
    # runs ahead that could ever fit go first (FIFO); one that fits on no GPU here never blocks the rest
    for ahead in queue[:index]:
        if ahead["mem_gb"] * GB <= biggest and ahead["gpus"] <= len(gpus):
            return Decision(False, reason=f"{need}; waiting behind {ahead['run_id']}", position=index + 1)
    if not fits_anywhere:
        return Decision(False, position=index + 1,
                        reason=f"{need}; fits on no GPU here (the largest has {biggest / GB:.1f} GB"
                               + (f", {len(gpus)} GPU(s) in all" if entry["gpus"] > len(gpus) else "") + ")")
    candidates, why_not = [], []
    for gpu in sorted(gpus, key=lambda g: -unpromised(g, ledger)):
        ok, why = _fits(entry, gpu, ledger, processes)
        (candidates if ok else why_not).append(gpu if ok else why)
    if len(candidates) < entry["gpus"]:
        return Decision(False, reason=f"{need}, " + ", ".join(why_not[:3]), position=index + 1)
    chosen = sorted(candidates[:entry["gpus"]], key=lambda g: g.get("index", 0))
    for gpu in chosen:
        ledger["promises"].append({"run_id": run_id, "gpu_uuid": gpu.get("uuid"), "gpu_index": gpu.get("index"),
                                   "mem_gb": entry["mem_gb"], "admitted": now})
    remove(ledger, run_id)
    return Decision(True, gpus=tuple({"index": g.get("index"), "uuid": g.get("uuid"), "name": g.get("name")}
                                     for g in chosen))


def cuda_env(gpus: tuple[dict, ...] | list[dict]) -> dict[str, str]:
    """The environment that pins a run to its admitted GPUs (NVML indices are in PCI bus order)."""
    return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": ",".join(str(g["index"]) for g in gpus)}


def settle_seconds() -> float:
    try:
        return float(os.environ.get("URBANRUN_QUEUE_SETTLE", SETTLE_SECONDS))
    except ValueError:
        return SETTLE_SECONDS
