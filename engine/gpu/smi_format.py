"""GPU readings the way nvidia-smi prints them: `--query-gpu=... --format=csv[,noheader][,nounits]`
with nvidia-smi's field names, units and N/A, and the familiar boxed table with processes."""

from __future__ import annotations

from typing import Callable

from urbanrun.engine.core.errors import UserError

MIB = 1024 * 1024
NA = "[N/A]"


def _mib(key: str) -> Callable[[dict, dict], object]:
    return lambda g, s: None if g.get(key) is None else int(g[key]) // MIB


def _watts(key: str) -> Callable[[dict, dict], object]:
    return lambda g, s: None if g.get(key) is None else f"{g[key]:.2f}"


def _field(key: str) -> Callable[[dict, dict], object]:
    return lambda g, s: g.get(key)


# nvidia-smi field name -> (unit, value from (gpu reading, status))
QUERY_FIELDS: dict[str, tuple[str | None, Callable[[dict, dict], object]]] = {
    "index": (None, _field("index")),
    "name": (None, _field("name")),
    "uuid": (None, _field("uuid")),
    "gpu_uuid": (None, _field("uuid")),
    "pci.bus_id": (None, _field("bus_id")),
    "driver_version": (None, lambda g, s: s.get("driver")),
    "count": (None, lambda g, s: s.get("count")),
    "memory.used": ("MiB", _mib("mem_used")),
    "memory.total": ("MiB", _mib("mem_total")),
    "memory.free": ("MiB", _mib("mem_free")),
    "utilization.gpu": ("%", _field("util_gpu")),
    "utilization.memory": ("%", _field("util_mem")),
    "temperature.gpu": (None, _field("temp")),
    "power.draw": ("W", _watts("power_w")),
    "power.limit": ("W", _watts("power_limit_w")),
    "enforced.power.limit": ("W", _watts("power_limit_w")),
    "clocks.sm": ("MHz", _field("clock_sm")),
    "clocks.current.sm": ("MHz", _field("clock_sm")),
    "clocks.mem": ("MHz", _field("clock_mem")),
    "clocks.current.memory": ("MHz", _field("clock_mem")),
    "fan.speed": ("%", _field("fan")),
    "pstate": (None, _field("pstate")),
    "clocks_throttle_reasons.active": (None, lambda g, s: None if g.get("throttle") is None else f"0x{g['throttle']:016x}"),
    "clocks_event_reasons.active": (None, lambda g, s: None if g.get("throttle") is None else f"0x{g['throttle']:016x}"),
    "ecc.errors.uncorrected.volatile.total": (None, _field("ecc_uncorrected")),
}


def parse_format(text: str) -> tuple[bool, bool]:
    """(header, units) from `csv[,noheader][,nounits]`."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or parts[0] != "csv" or not set(parts[1:]) <= {"noheader", "nounits"}:
        raise UserError(f'"{text}" is not a valid format: use csv, optionally with ,noheader and ,nounits.')
    return "noheader" not in parts, "nounits" not in parts


def query_csv(fields_text: str, fmt: str, status: dict, gpus: list[dict]) -> str:
    header, units = parse_format(fmt)
    names = [f.strip() for f in fields_text.split(",") if f.strip()]
    for name in names:
        if name not in QUERY_FIELDS:
            raise UserError(f'Field "{name}" is not a valid field to query (known: {", ".join(QUERY_FIELDS)}).')
    lines = []
    if header:
        lines.append(", ".join(f"{n} [{QUERY_FIELDS[n][0]}]" if QUERY_FIELDS[n][0] else n for n in names))
    for gpu in gpus:
        cells = []
        for name in names:
            unit, get = QUERY_FIELDS[name]
            value = NA if gpu.get("lost") and name not in ("index", "name", "uuid") else get(gpu, status)
            if value is None:
                value = NA
            cells.append(f"{value} {unit}" if unit and units and value != NA else str(value))
        lines.append(", ".join(cells))
    return "\n".join(lines)


def table(status: dict, gpus: list[dict], processes: list[dict]) -> str:
    """The nvidia-smi box: GPUs, then processes with the run each belongs to."""
    w = [41, 24, 22]
    bar = "+" + "+".join("-" * n for n in w) + "+"
    full = sum(w) + 2
    title = f" urbanrun gpus   Driver Version: {status.get('driver') or NA}   CUDA Version: {status.get('cuda') or NA}"
    out = ["+" + "-" * full + "+", "|" + title.ljust(full) + "|", bar,
           "| GPU  Name" + " " * 31 + "|" + "Memory-Usage".rjust(23) + " | GPU-Util  Mem-Util   |",
           "| Fan  Temp   Perf          Pwr:Usage/Cap |" + "Bus-Id".rjust(23) + " | Uncorr. ECC          |",
           bar.replace("-", "=")]
    for g in gpus:
        if g.get("lost"):
            out.append(f"| {g['index']:>3}  {str(g.get('name'))[:33]:<35}|{'GPU is lost':>23} | {'ERR!':<21}|")
            out.append(bar)
            continue
        mem = f"{_v(_mib('mem_used')(g, status))}MiB / {_v(_mib('mem_total')(g, status))}MiB"
        util = f"{_pct(g.get('util_gpu')):>7}   {_pct(g.get('util_mem')):>7}"
        fan = _pct(g.get("fan"))
        temp = f"{g['temp']}C" if g.get("temp") is not None else "N/A"
        power = f"{_w(g.get('power_w'))} / {_w(g.get('power_limit_w'))}"
        out.append(f"| {g['index']:>3}  {str(g.get('name'))[:35]:<35}|{mem:>23} | {util:<21}|")
        out.append(f"| {fan:>3}  {temp:>4}   {str(g.get('pstate') or 'N/A'):<4} {power:>22} |"
                   f"{str(g.get('bus_id') or NA):>23} | {_v(g.get('ecc_uncorrected')):>10}          |")
        out.append(bar)
    out += ["", "+" + "-" * full + "+", "| Processes:".ljust(full + 1) + "|",
            "|  GPU        PID   Type   Process name".ljust(60) + "GPU Memory   Run".ljust(full - 59) + "|",
            "|" + "=" * full + "|"]
    if not processes:
        out.append("|  No running processes found".ljust(full + 1) + "|")
    for p in processes:
        used = "N/A" if p.get("used_mem") is None else f"{int(p['used_mem']) // MIB}MiB"
        name = str(p.get("name") or "?")[:28]
        run = p.get("run_id") or ("(not on this host)" if p.get("foreign") else "-")
        row = f"| {p.get('gpu', 0):>4} {p['pid']:>10} {p.get('type', 'C'):>6}   {name:<28} {used:>12}   {run}"
        out.append(row.ljust(full + 1)[:full + 1] + "|")
    out.append("+" + "-" * full + "+")
    return "\n".join(out)


def _v(value) -> str:
    return "N/A" if value is None else str(value)


def _pct(value) -> str:
    return "N/A" if value is None else f"{value}%"


def _w(value) -> str:
    return "N/A" if value is None else f"{value:.0f}W"
