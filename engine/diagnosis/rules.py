"""Diagnoses: rules over a run's output and how it ended. Each says what happened (kind,
severity, a one-line summary), shows the evidence lines, and says what to change.

`diagnose(lines, exit_code, signal, ...)` is pure: the same text gives the same diagnoses.
Parameters of the run (batch size, mixed precision, checkpointing) make remedies concrete.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from urbanrun.engine.core.text import last_frame

UNITS = {"B": 1, "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30, "TiB": 2 ** 40}
SIZE = r"([\d.]+ ?(?:[KMGT]i)?B)"
TRACEBACK = "Traceback (most recent call last):"
# numbers are bounded (a line, a GPU, a rank): int() of a 5,000-digit one raises, and no such number is real
FRAME_RE = re.compile(r'^\s*File "([^"]+)", line (\d{1,12}), in (.+?)\s*$')  # \s*: a Windows log's \r
EXCEPTION_RE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Warning)|[A-Za-z_][\w.]*\.\w+Error)(?::\s?(.*))?$")
# Frames of installed libraries and the standard library, as POSIX and Windows print them:
# .../lib/python3.11/..., C:\Users\me\miniconda3\envs\x\Lib\site-packages\torch\..., the
# Windows stdlib C:\Python311\Lib\json\... (Windows spells its stdlib folder `Lib`), an embedded
# python311.zip, <frozen runpy>.
LIBRARY_RE = re.compile(r"(?i:site-packages|dist-packages)|/lib/python3|/usr/lib/python|<frozen|\\Lib\\|"
                        r"(?i:[/\\]python3\d*\.zip[/\\])")


def is_library_frame(path: str) -> bool:
    return LIBRARY_RE.search(path) is not None


@dataclass(frozen=True)
class Diagnosis:
    kind: str
    severity: str  # error | warning | info
    summary: str
    evidence: tuple[str, ...] = ()
    remedies: tuple[str, ...] = ()
    facts: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["evidence"], data["remedies"] = list(self.evidence), list(self.remedies)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Diagnosis":
        return cls(kind=data["kind"], severity=data["severity"], summary=data["summary"],
                   evidence=tuple(data.get("evidence", ())), remedies=tuple(data.get("remedies", ())),
                   facts=dict(data.get("facts", {})))


def size_bytes(text: str) -> float:
    number, unit = re.match(r"([\d.]+) ?((?:[KMGT]i)?B)", text).groups()
    return float(number) * UNITS[unit]


def gib(value: float) -> str:
    """A size as PyTorch prints it: MiB below 1 GiB, GiB above."""
    return f"{value / 2 ** 20:.2f} MiB" if value < 2 ** 30 else f"{value / 2 ** 30:.2f} GiB"


class Lines(list):
    """A run's lines with their text joined once: a rule whose pattern is found nowhere in the
    text (most rules, on most logs) skips the line-by-line scan."""

    @property
    def text(self) -> str:
        joined = getattr(self, "_text", None)
        if joined is None:
            joined = self._text = "\n".join(self)
        return joined


def _find(lines: list[str], pattern: re.Pattern) -> list[int]:
    if isinstance(lines, Lines) and not pattern.search(lines.text):
        return []
    return [i for i, line in enumerate(lines) if pattern.search(line)]


def _clip(line: str) -> str:
    return line.strip()[:400]


# -- the rules ---------------------------------------------------------------------------------------
OOM_RE = re.compile(r"(CUDA|HIP) out of memory\. Tried to allocate " + SIZE)
OOM_NEW_RE = re.compile(r"GPU (\d{1,6}) has a total capac(?:i)?ty of " + SIZE + " of which " + SIZE + " is free")
OOM_ALLOC_RE = re.compile(r"Of the allocated memory " + SIZE + " is allocated by PyTorch, and " + SIZE +
                          " is reserved by PyTorch but unallocated")
OOM_OLD_RE = re.compile(r"\(GPU (\d{1,6}); " + SIZE + " total capacity; " + SIZE + " already allocated; " + SIZE +
                        " free; " + SIZE + r" reserved in total by PyTorch\)")


def _oom(lines, params) -> Diagnosis | None:
    hits = _find(lines, OOM_RE)
    if not hits:
        return None
    line = lines[hits[-1]]
    device, tried = OOM_RE.search(line).groups()
    facts = {"device": device, "tried": size_bytes(tried)}
    if m := OOM_NEW_RE.search(line):
        facts.update(gpu=int(m.group(1)), total=size_bytes(m.group(2)), free=size_bytes(m.group(3)))
    if m := OOM_ALLOC_RE.search(line):
        facts.update(allocated=size_bytes(m.group(1)), reserved_unallocated=size_bytes(m.group(2)))
    if m := OOM_OLD_RE.search(line):
        facts.update(gpu=int(m.group(1)), total=size_bytes(m.group(2)), allocated=size_bytes(m.group(3)),
                     free=size_bytes(m.group(4)), reserved_unallocated=size_bytes(m.group(5)) - size_bytes(m.group(3)))
    summary = f"{device} out of memory" + (f" on GPU {facts['gpu']}" if "gpu" in facts else "") + \
              f": tried to allocate {gib(facts['tried'])}"
    if "free" in facts and "total" in facts:
        summary += f" with {gib(facts['free'])} free of {gib(facts['total'])}"
    if "allocated" in facts:
        summary += f" (PyTorch: {gib(facts['allocated'])} allocated, {gib(max(0, facts.get('reserved_unallocated', 0)))} " \
                   f"reserved but unallocated)"
    fragmented = facts.get("reserved_unallocated", 0) >= max(facts["tried"], 2 ** 30 * 0.5)
    facts["fragmented"] = fragmented
    remedies = []
    if fragmented:
        remedies.append("Fragmentation: much memory is reserved but unallocated; set "
                        "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True in the recipe's env and relaunch.")
    batch = params.get("batch_size")
    if isinstance(batch, int) and batch > 1:
        remedies.append(f"Smaller batch: --set batch_size={max(1, batch // 2)} (was {batch}; for cone batches that is "
                        f"fewer cones per batch; memory grows about linearly with it).")
    else:
        remedies.append("Smaller batch (for cone batches: fewer cones per batch; for full-area graphs: fewer/smaller "
                        "subgraphs, e.g. neighbour sampling).")
    # `--set NAME=…` only where the run's recipe has that parameter (launch refuses any other name)
    if not params.get("grad_checkpoint"):
        how = "--set grad_checkpoint=true" if "grad_checkpoint" in params else "torch.utils.checkpoint around the big blocks"
        remedies.append(f"Gradient checkpointing: {how} (recompute activations in backward; less memory for more compute).")
    if not params.get("amp"):
        how = "--set amp=true" if "amp" in params else "torch.autocast in the forward pass"
        remedies.append(f"Mixed precision: {how} (autocast halves activation memory; GradScaler on CUDA).")
    remedies.append("Leak check: if memory grew step after step before this, a tensor is being kept with its graph "
                    "(log loss.item() or loss.detach(), not loss; don't append outputs to lists).")
    return Diagnosis("cuda_oom", "error", summary, (_clip(line),), tuple(remedies), facts)


DEVICE_RE = re.compile(r"Expected all tensors to be on the same device|Expected object of device type|"
                       r"is on (?:cpu|cuda:\d+), different from other tensors on|Input type \(.*\) and weight type \(.*\) "
                       r"should be the same")


def _device_mismatch(lines, params) -> Diagnosis | None:
    hits = _find(lines, DEVICE_RE)
    if not hits:
        return None
    line = lines[hits[-1]]
    devices = sorted(set(re.findall(r"\b(cuda:\d+|cpu)\b", line)))
    return Diagnosis("device_mismatch", "error",
                     "Tensors on different devices" + (f" ({' and '.join(devices)})" if devices else ""),
                     (_clip(line),),
                     ("Move the model and every batch tensor to one device: model.to(device), and for each batch "
                      "batch = batch.to(device) (a PyG Data/Batch moves x and edge_index together; for dict batches "
                      "move each tensor, including parent/child index maps).",
                      "Create new tensors on the right device: torch.zeros(..., device=x.device)."),
                     {"devices": devices})


DTYPE_RE = re.compile(r"Expected 'edge_index' to be of integer type|scatter\(\): Expected dtype int(?:32/int)?64 for index|"
                      r"index_add_\(\): Expected dtype int64 for index|Expected tensor for argument #\d+ 'indices' to have "
                      r"(?:one of the following )?scalar types?: Long|Expected dtype int(?:32/int)?64 for index")


def _edge_index_dtype(lines, params) -> Diagnosis | None:
    hits = _find(lines, DTYPE_RE)
    if not hits:
        return None
    return Diagnosis("edge_index_dtype", "error", "An index tensor (edge_index or a scatter index) is not integer",
                     (_clip(lines[hits[-1]]),),
                     ("Make it integer: edge_index = edge_index.long() (it often arrives as float from numpy or "
                      "torch.tensor of a float array; parent/child maps too).",
                      "Check a sample with data.validate(raise_on_error=True) before training."))


RANGE_RE = re.compile(r"contains larger indices than the number of nodes|Found indices in 'edge_index' that are larger|"
                      r"index -?\d+ is out of bounds for dimension \d+ with size \d+|srcIndex < srcSelectDimSize|"
                      r"contains negative indices")


def _edge_index_range(lines, params) -> Diagnosis | None:
    hits = _find(lines, RANGE_RE)
    if not hits:
        return None
    return Diagnosis("edge_index_range", "error", "An edge (or index) points at a node that does not exist",
                     (_clip(lines[hits[-1]]),),
                     ("Check node counts after filtering or cutting cones: every index must be < num_nodes; "
                      "renumber with torch_geometric.utils.subgraph(..., relabel_nodes=True).",
                      "data.validate(raise_on_error=True) names the offending tensor; on CPU the error is readable."))


ASSERT_RE = re.compile(r"device-side assert triggered")


def _device_assert(lines, params) -> Diagnosis | None:
    hits = _find(lines, ASSERT_RE)
    if not hits:
        return None
    evidence = [lines[i] for i in _find(lines, re.compile(r"Assertion `.*` failed"))][-2:] + [lines[hits[-1]]]
    return Diagnosis("device_assert", "error", "CUDA device-side assert: a kernel found invalid input "
                     "(most often an index out of range)", tuple(_clip(e) for e in evidence),
                     ("The CUDA context is unusable after this: the process must restart (urbanrun relaunches cleanly).",
                      "Rerun with CUDA_LAUNCH_BLOCKING=1 (or on --device cpu) to see the operation that failed; the "
                      "Assertion line names the check (srcIndex < srcSelectDimSize: an index out of range)."))


NCCL_RE = re.compile(r"NCCL error|ncclInternalError|ncclSystemError|ncclUnhandledCudaError|Watchdog caught collective "
                     r"operation timeout|NCCL communicator was aborted|ProcessGroupNCCL.*(?:timeout|Exception)")


def _nccl(lines, params) -> Diagnosis | None:
    hits = _find(lines, NCCL_RE)
    if not hits:
        return None
    timeout = any("timeout" in lines[i].lower() for i in hits)
    return Diagnosis("nccl", "error", "NCCL collective " + ("timed out (a rank stopped participating)" if timeout
                                                            else "failed"),
                     tuple(_clip(lines[i]) for i in hits[-3:]),
                     ("Set NCCL_DEBUG=INFO (and TORCH_DISTRIBUTED_DEBUG=DETAIL) to see which rank and peer failed.",
                      "A timeout usually means one rank died or runs a different number of steps: use a "
                      "DistributedSampler with drop_last=True, and look at every rank's log.",
                      "On consumer GPUs without P2P, try NCCL_P2P_DISABLE=1; a longer timeout goes in "
                      "init_process_group(timeout=...)."))


CHILD_RE = re.compile(r"ChildFailedError")
RANK_PREFIX = re.compile(r"^(?:\[(?:default|rank)\d+\]:\s?)+")  # torchrun's per-rank line prefixes


def _torchrun(lines, params) -> Diagnosis | None:
    hits = _find(lines, CHILD_RE)
    if not hits:
        return None
    facts: dict = {}
    try:
        start = next(i for i in range(len(lines)) if "Root Cause (first observed failure)" in lines[i])
        for line in lines[start:start + 12]:
            if m := re.search(r"rank\s*:\s*(\d{1,9}) \(local_rank: (\d{1,9})\)", line):
                facts.update(rank=int(m.group(1)), local_rank=int(m.group(2)))
            if m := re.search(r"exitcode\s*:\s*(-?\d{1,9}) \(pid: (\d{1,12})\)", line):
                facts.update(exit_code=int(m.group(1)), pid=int(m.group(2)))
            if m := re.search(r"host\s*:\s*(\S+)", line):
                facts["host"] = m.group(1)
        evidence = [_clip(line) for line in lines[start:start + 8] if line.strip()]
    except StopIteration:
        evidence = [_clip(lines[hits[-1]])]
    # the root-cause rank's own exception when its output is here (tee'd lines carry its prefix)
    exceptions = [line.strip() for line in lines if EXCEPTION_RE.match(RANK_PREFIX.sub("", line).strip())
                  and "ChildFailedError" not in line]
    mine = [line for line in exceptions if re.match(rf"\[(?:default|rank){facts.get('rank')}\]:", line)]
    root = (mine or exceptions or [None])[0]
    if root:
        evidence.insert(0, _clip(root))
        facts["exception"] = root
    who = f"rank {facts['rank']} (local rank {facts['local_rank']})" if "rank" in facts else "a worker"
    code = f" with exit code {facts['exit_code']}" if "exit_code" in facts else ""
    return Diagnosis("torchrun_child_failed", "error", f"torchrun: {who} failed first{code}", tuple(evidence),
                     (f"Read {who}'s own output: its traceback is the cause (torchrun --log-dir/--tee keep one log "
                      f"per rank; urbanrun's torchrun backend follows them).",
                      "Decorate the entry point with torch.distributed.elastic.multiprocessing.errors.record to get "
                      "the traceback in this summary."), facts)


def _nvml(lines, params) -> Diagnosis | None:
    hits = _find(lines, re.compile(r"Driver/library version mismatch"))
    if not hits:
        return None
    return Diagnosis("nvml_mismatch", "error", "NVIDIA driver/library version mismatch (NVML cannot start)",
                     (_clip(lines[hits[-1]]),),
                     ("The kernel module and the user-space driver differ, usually after a driver update: reboot, or "
                      "reload the modules (sudo rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia; sudo modprobe nvidia).",))


def _driver_old(lines, params) -> Diagnosis | None:
    hits = _find(lines, re.compile(r"NVIDIA driver on your system is too old|CUDA driver version is insufficient"))
    if not hits:
        return None
    return Diagnosis("driver_too_old", "error", "The NVIDIA driver is too old for this PyTorch's CUDA",
                     (_clip(lines[hits[-1]]),),
                     ("Update the NVIDIA driver, or install a PyTorch wheel built for the CUDA version your driver "
                      "supports (nvidia-smi shows it; e.g. the cu118 wheels).",))


NAN_RE = re.compile(r"NaN loss|loss\s*(?:is|=|:)\s*[-+]?(?:nan|inf)\b|non-finite loss|Loss is NaN", re.I)


def _all_finite(values) -> bool:
    import numpy as np  # here, not at the top: the CLI's record-only commands import the rules

    return bool(np.isfinite(np.asarray(values, dtype=float)).all())


def _nan(lines, params, metrics) -> Diagnosis | None:
    """NaN/Inf in a loss (log text or any followed loss series): an error. NaN/Inf in another
    metric only: a warning naming it (an fp16 grad norm may be inf on a skipped step)."""
    text = lines.text.lower() if isinstance(lines, Lines) else None  # NAN_RE is case-blind, so slow: look first
    maybe = text is None or "nan" in text or "inf" in text or "non-finite" in text
    hits = _find(lines, NAN_RE) if maybe else []
    bad = [name for name, values in (metrics or {}).items() if not _all_finite(values)]
    bad_loss = [name for name in bad if "loss" in name.lower()]
    if not hits and not bad:
        return None
    evidence = tuple(_clip(lines[i]) for i in hits[-3:])
    evidence += tuple(f"metric '{name}' has NaN/Inf values" for name in (bad_loss or bad)[:3])
    if not hits and not bad_loss:
        return Diagnosis("nan_metric", "warning", f"Metric '{bad[0]}' became NaN/Inf", evidence,
                         ("Find where it is computed: a division by zero, log of 0, or an fp16 overflow.",),
                         {"metrics": bad})
    remedies = ["Lower the learning rate or add warm-up; clip gradients (torch.nn.utils.clip_grad_norm_).",
                "Look for NaN/Inf in the inputs (features, normalisation by zero)."]
    remedies.insert(1, "With mixed precision, keep the GradScaler (fp16 overflow) or use bf16." if params.get("amp")
                    else "If the model is large, mixed precision with a GradScaler can also expose overflow: check it.")
    return Diagnosis("nan_loss", "error", "The loss became NaN/Inf" + (f" ({bad_loss[0]})" if bad_loss else ""),
                     evidence, tuple(remedies), {"metrics": bad_loss})


SWALLOWED_RE = re.compile(r"Error during training|Training failed|training failed|Exception (?:occurred|raised) during "
                          r"training")


def _swallowed(lines, params, exit_code) -> Diagnosis | None:
    hits = _find(lines, SWALLOWED_RE)
    if not hits or exit_code not in (0, None):
        return None
    cause = next((m.group(1) for i in hits if (m := re.search(r"Error during training:\s*(.+)", lines[i]))), None)
    return Diagnosis("swallowed_error", "error",
                     "The script caught an error and exited 0" + (f": {cause[:200]}" if cause else ""),
                     tuple(_clip(lines[i]) for i in hits[-3:]),
                     ("The run is marked failed: its exit code hides the failure.",
                      "Re-raise after logging (raise at the end of the except block) so the traceback and a "
                      "non-zero exit code show what failed."), {"cause": cause})


# -- the generic fallbacks -----------------------------------------------------------------------------
def last_traceback(lines: list[str]) -> tuple[str | None, tuple[str, int, str] | None, list[str]]:
    """(exception line, deepest frame in the user's own code, the traceback's lines) of the last traceback."""
    starts = [i for i, line in enumerate(lines) if TRACEBACK in line]
    if not starts:
        return None, None, []
    block = lines[starts[-1]:starts[-1] + 400]
    frames, exception = [], None
    for line in block[1:]:
        if m := FRAME_RE.match(line):
            frames.append((m.group(1), int(m.group(2)), m.group(3)))
        elif EXCEPTION_RE.match(line.strip()):
            exception = line.strip()
            break
    user = [f for f in frames if not is_library_frame(f[0])]
    return exception, (user[-1] if user else (frames[-1] if frames else None)), block


def _traceback(lines, found) -> Diagnosis | None:
    exception, frame, _ = last_traceback(lines)
    if exception is None:
        return None
    if exception.startswith("KeyboardInterrupt"):
        return Diagnosis("interrupted", "info", "Stopped with Ctrl-C (KeyboardInterrupt)", (exception,), ())
    if found:
        return None  # a specific rule already explains it
    where = f"{frame[0]}:{frame[1]} in {frame[2]}" if frame else None
    evidence = (exception,) + ((f'File "{frame[0]}", line {frame[1]}, in {frame[2]}',) if frame else ())
    return Diagnosis("traceback", "error", exception[:300], evidence,
                     ((f"The deepest frame in your code: {where}." if where else "See the traceback in the log."),),
                     {"exception": exception, "file": frame[0] if frame else None, "line": frame[1] if frame else None})


def _exit_status(lines, exit_code, signal, killed_by_user, has_traceback) -> Diagnosis | None:
    if killed_by_user:
        return None
    if signal == 9 or exit_code == 137:
        if has_traceback:
            return None
        return Diagnosis("host_oom", "error", "Killed by signal 9 (KILL) with no Python error: most likely the Linux "
                         "out-of-memory killer (host RAM, not GPU memory)",
                         ("exit: signal 9 (KILL)" if signal == 9 else "exit code 137 (128 + signal 9, KILL)",),
                         ("Confirm with `dmesg | grep -i -E 'killed process|out of memory'` (or journalctl -k).",
                          "Use less host RAM: fewer DataLoader workers or a smaller prefetch_factor, load cones lazily "
                          "instead of holding the whole dataset, free big numpy arrays after building tensors.",
                          "urbanrun's host figures show the run's RSS growing: watch it in the GPU view."))
    if signal == 2 and not has_traceback:
        return Diagnosis("interrupted", "info", "Stopped with Ctrl-C (SIGINT)", ("exit: signal 2 (SIGINT)",), ())
    if signal:
        return Diagnosis("signal", "error", f"Killed by signal {signal}", (f"exit: signal {signal}",),
                         ("Something outside the script stopped it (scheduler, another user, a watchdog).",))
    if exit_code not in (0, None) and not has_traceback:
        tail = [line.strip() for line in lines[-5:] if line.strip()]
        return Diagnosis("exit_code", "error", f"Exited with code {exit_code} and no error text in its output",
                         tuple(tail[-3:]), ("Run the command by hand to see what it prints on stderr.",))
    return None


TEXT_RULES = (_oom, _device_assert, _edge_index_dtype, _edge_index_range, _device_mismatch, _nccl, _torchrun,
              _nvml, _driver_old)


def diagnose(lines: list[str], exit_code: int | None = None, signal: int | None = None, *,
             params: dict | None = None, metrics: dict[str, list[float]] | None = None,
             killed_by_user: bool = False) -> list[Diagnosis]:
    """Every diagnosis the output supports, most specific first."""
    params = params or {}
    lines = Lines(last_frame(line) for line in lines)  # tqdm redraws, and Windows' CRLF line ends
    found = [d for rule in TEXT_RULES if (d := rule(lines, params))]
    for extra in (_nan(lines, params, metrics), _swallowed(lines, params, exit_code)):
        if extra:
            found.append(extra)
    if killed_by_user:
        return found
    generic = _traceback(lines, found)
    if generic:
        found.append(generic)
    has_traceback = any(TRACEBACK in line for line in lines)
    status = _exit_status(lines, exit_code, signal, killed_by_user, has_traceback)
    if status and (not found or status.kind == "host_oom"):  # a bare exit status only when nothing explains more
        found.append(status)
    return found


def headline(diagnoses: list[Diagnosis]) -> str | None:
    """The one line a runs table shows: the most severe, most specific diagnosis."""
    order = {"error": 0, "warning": 1, "info": 2}
    ranked = sorted(diagnoses, key=lambda d: order.get(d.severity, 3))
    return ranked[0].summary if ranked else None
