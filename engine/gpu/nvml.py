"""GPU telemetry from NVML (`import pynvml`, the nvidia-ml-py package), sampled like nvitop.

Fast fields (utilisation, memory, temperature, power, clocks) every `interval` (1 s), process
lists every 2 s, slow fields (fan, performance state, throttle reasons, ECC, power limit) every
5 s: one NVML call per field per interval at most. A field a GPU does not support is None
(shown N/A), never an error. No driver, a driver/library mismatch or no permission is a state
(`GpuStatus`), never a crash; a GPU that falls off the bus is marked lost and the others go on.
"""

from __future__ import annotations

import time

FAST, PROCS, SLOW = 1.0, 2.0, 5.0
MIB = 1024 * 1024


def _nvml():
    import pynvml  # imported lazily: the engine must start fast on a machine without GPUs

    return pynvml


class NvmlSource:
    """sample(now) -> (status, gpus, processes) when something was sampled, else None."""

    def __init__(self, interval: float = FAST, process_interval: float = PROCS, slow_interval: float = SLOW):
        self.interval, self.process_interval, self.slow_interval = interval, process_interval, slow_interval
        self.status: dict = {}
        self._handles: list = []
        self._static: list[dict] = []
        self._slow: list[dict] = []
        self._gpus: list[dict] = []
        self._procs: list[dict] = []
        self._next = {"fast": 0.0, "procs": 0.0, "slow": 0.0}
        self._proc_version: str | None = None  # "v3" or "v2", chosen at run time
        self._util_ts: dict[int, int] = {}
        self._started = False

    # -- set-up ------------------------------------------------------------------------------------
    def start(self) -> dict:
        self._started = True
        try:
            nv = _nvml()
        except ImportError:
            self.status = {"available": False, "kind": "no_library",
                           "reason": "no NVIDIA GPU found (the nvidia-ml-py package is not installed)"}
            return self.status
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            self.status = describe_init_error(nv, exc)
            return self.status
        try:
            driver = _text(nv.nvmlSystemGetDriverVersion())
            count = nv.nvmlDeviceGetCount()
            cuda = _call(nv.nvmlSystemGetCudaDriverVersion_v2) if hasattr(nv, "nvmlSystemGetCudaDriverVersion_v2") else None
            self._handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except nv.NVMLError as exc:
            self.status = {"available": False, "kind": "error", "reason": f"NVML failed: {exc}"}
            return self.status
        self._static = []
        for i, h in enumerate(self._handles):
            self._static.append({"index": i, "name": _call(lambda: _text(nv.nvmlDeviceGetName(h))),
                                 "uuid": _call(lambda: _text(nv.nvmlDeviceGetUUID(h))),
                                 "bus_id": _call(lambda: _text(nv.nvmlDeviceGetPciInfo(h).busId))})
        self._slow = [{} for _ in self._handles]
        self._gpus = [dict(s) for s in self._static]
        cuda_text = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None
        self.status = {"available": count > 0, "kind": "ok" if count else "none", "driver": driver,
                       "cuda": cuda_text, "count": count,
                       "reason": "" if count else "NVML found no GPU on this machine"}
        return self.status

    def snapshot(self):
        """Every field read now (for one-shot commands)."""
        if not self._started:
            self.start()
        return self.sample(time.time()) or (self.status, [], [])

    # -- sampling ----------------------------------------------------------------------------------
    def sample(self, now: float) -> tuple[dict, list[dict], list[dict]] | None:
        if not self._started:
            self.start()
            return self.status, list(self._gpus), []
        if not self.status.get("available") or now < self._next["fast"]:
            return None
        nv = _nvml()
        self._next["fast"] = now + self.interval
        if now >= self._next["slow"]:
            self._next["slow"] = now + self.slow_interval
            for i, h in enumerate(self._handles):
                if not self._gpus[i].get("lost"):
                    try:
                        self._slow[i] = self._read_slow(nv, h)
                    except nv.NVMLError_GpuIsLost:
                        self._gpus[i] = {**self._static[i], "lost": True}
        for i, h in enumerate(self._handles):
            if self._gpus[i].get("lost"):
                continue
            try:
                self._gpus[i] = {**self._static[i], **self._slow[i], **self._read_fast(nv, h)}
            except nv.NVMLError_GpuIsLost:
                self._gpus[i] = {**self._static[i], "lost": True}
        if now >= self._next["procs"]:
            self._next["procs"] = now + self.process_interval
            self._procs = [p for i, h in enumerate(self._handles) if not self._gpus[i].get("lost")
                           for p in self._read_processes(nv, i, h)]
        return self.status, [dict(g) for g in self._gpus], [dict(p) for p in self._procs]

    @staticmethod
    def _read_fast(nv, h) -> dict:
        util = _call(lambda: nv.nvmlDeviceGetUtilizationRates(h))
        mem = _call(lambda: nv.nvmlDeviceGetMemoryInfo(h))
        power = _call(lambda: nv.nvmlDeviceGetPowerUsage(h))
        return {
            "util_gpu": util.gpu if util else None, "util_mem": util.memory if util else None,
            "mem_used": mem.used if mem else None, "mem_total": mem.total if mem else None,
            "mem_free": mem.free if mem else None,
            "temp": _call(lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
            "power_w": power / 1000.0 if power is not None else None,
            "clock_sm": _call(lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
            "clock_mem": _call(lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)),
        }

    @staticmethod
    def _read_slow(nv, h) -> dict:
        limit = _call(lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h))
        reasons = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons
        pstate = _call(lambda: nv.nvmlDeviceGetPerformanceState(h))
        return {
            "fan": _call(lambda: nv.nvmlDeviceGetFanSpeed(h)),
            "pstate": f"P{pstate}" if pstate is not None else None,
            "throttle": _call(lambda: reasons(h)),
            "ecc_uncorrected": _call(lambda: nv.nvmlDeviceGetTotalEccErrors(
                h, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC)),
            "power_limit_w": limit / 1000.0 if limit is not None else None,
        }

    def _read_processes(self, nv, index: int, h) -> list[dict]:
        rows: dict[int, dict] = {}
        for kind, getter in (("C", "GetComputeRunningProcesses"), ("G", "GetGraphicsRunningProcesses")):
            for p in self._processes(nv, h, getter) or []:
                used = p.usedGpuMemory
                row = rows.setdefault(p.pid, {"gpu": index, "pid": p.pid, "type": kind, "used_mem": used})
                if row["type"] != kind:
                    row["type"] = "C+G"
        try:  # SM utilisation per process since our last look (NotFound: no samples yet)
            samples = nv.nvmlDeviceGetProcessUtilization(h, self._util_ts.get(index, 0))
            for s in samples:
                if s.pid in rows:
                    rows[s.pid]["sm_util"] = s.smUtil
                self._util_ts[index] = max(self._util_ts.get(index, 0), s.timeStamp)
        except nv.NVMLError:
            pass
        return list(rows.values())

    def _processes(self, nv, h, getter: str):
        """v3 process structs where the driver has them, else v2; checked for the driver-535 bug
        (v3 read against an older struct gives pid 0 / absurd memory)."""
        v3 = getattr(nv, f"nvmlDevice{getter}_v3", None)
        v2 = getattr(nv, f"nvmlDevice{getter}_v2", None) or getattr(nv, f"nvmlDevice{getter}")
        if self._proc_version != "v2" and v3 is not None:
            try:
                procs = v3(h)
                total = _call(lambda: nv.nvmlDeviceGetMemoryInfo(h).total) or float("inf")
                if all(p.pid > 0 and (p.usedGpuMemory is None or p.usedGpuMemory <= total) for p in procs):
                    self._proc_version = "v3"
                    return procs
            except nv.NVMLError_FunctionNotFound:
                pass
            except nv.NVMLError:
                return None
            self._proc_version = "v2"
        try:
            return v2(h)
        except nv.NVMLError:
            return None


def describe_init_error(nv, exc) -> dict:
    """The reason NVML would not start, in words a person can act on."""
    mismatch = getattr(nv, "NVML_ERROR_LIB_RM_VERSION_MISMATCH", 18)
    value = getattr(exc, "value", None)
    if isinstance(exc, getattr(nv, "NVMLError_LibraryNotFound", ())):
        return {"available": False, "kind": "no_driver",
                "reason": "no NVIDIA GPU found (the NVIDIA driver library libnvidia-ml is not installed)"}
    if isinstance(exc, getattr(nv, "NVMLError_DriverNotLoaded", ())):
        return {"available": False, "kind": "no_driver", "reason": "no NVIDIA GPU found (the NVIDIA driver is not loaded)"}
    if value == mismatch or "mismatch" in str(exc).lower():
        return {"available": False, "kind": "nvml_mismatch",
                "reason": "Failed to initialize NVML: Driver/library version mismatch — the kernel module and the "
                          "user-space driver differ (usually after a driver update): reboot, or reload the nvidia "
                          "kernel modules"}
    if isinstance(exc, getattr(nv, "NVMLError_NoPermission", ())):
        return {"available": False, "kind": "permission",
                "reason": "NVML refused access (no permission for /dev/nvidia*): add this user to the video group"}
    return {"available": False, "kind": "error", "reason": f"NVML could not start: {exc}"}


def _call(fn):
    """A field's value, or None when this GPU does not support it (or it fails)."""
    nv = _nvml()
    try:
        return fn()
    except nv.NVMLError_GpuIsLost:
        raise
    except nv.NVMLError:
        return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

