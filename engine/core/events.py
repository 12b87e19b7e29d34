"""Events: every fact the UI shows arrives as one of these. One JSON object per line when recorded.

Later sources (telemetry, diagnosis) add their own event classes with @register.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from urbanrun.engine.core.points import Points

EVENT_TYPES: dict[str, type] = {}


def register(cls):
    EVENT_TYPES[cls.__name__] = cls
    return cls


@dataclass(frozen=True)
class Event:
    ts: float
    type: ClassVar[str] = "Event"


@register
@dataclass(frozen=True)
class RunChanged(Event):
    """A run's record as it now is (launch, status change, reattach, kill request)."""

    run: dict = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.run["id"]


@register
@dataclass(frozen=True)
class LogLines(Event):
    """Complete lines appended to a run's output.log (carriage returns kept)."""

    run_id: str = ""
    lines: tuple[str, ...] = ()
    restarted: bool = False  # the log was truncated or replaced before these lines


@register
@dataclass(frozen=True)
class MetricPoints(Event):
    """Points from a metrics source: each a dict with step/epoch/time and metric values (a tuple
    of dicts, or Points: blocks of columns that the reducer takes whole)."""

    run_id: str = ""
    source: str = ""
    points: tuple[dict, ...] | Points = ()
    format: str = "jsonl"  # jsonl | csv | tensorboard | wandb | log (log-line metrics yield to the others)


@register
@dataclass(frozen=True)
class Progress(Event):
    """How far a run is: unit (epoch | step | batch), n of total, rate per second, elapsed, ETA."""

    run_id: str = ""
    progress: dict = field(default_factory=dict)


@register
@dataclass(frozen=True)
class Notice(Event):
    """Something a person should know that is not a run's own output (a corrupt line, a warning)."""

    level: str = "info"  # info | warning | error
    text: str = ""
    run_id: str | None = None
    code: str | None = None  # what kind (file_gone, file_unreadable, ...: the CLI's notice codes), if one
    path: str | None = None  # the file it is about, if one


@register
@dataclass(frozen=True)
class GpuStatus(Event):
    """Whether GPUs can be read, and if not, why (no driver, version mismatch, permission)."""

    status: dict = field(default_factory=dict)


@register
@dataclass(frozen=True)
class StorageStatus(Event):
    """Whether the runs folder's disk has room: {"path", "free", "full"}, sent when that changes."""

    status: dict = field(default_factory=dict)


@register
@dataclass(frozen=True)
class GpuSample(Event):
    """One NVML reading: per GPU fields (None = not supported) and GPU processes with their runs."""

    gpus: tuple[dict, ...] = ()
    processes: tuple[dict, ...] = ()


@register
@dataclass(frozen=True)
class HostSample(Event):
    """CPU per core, RAM, swap, and each live run's process tree CPU % and RSS."""

    host: dict = field(default_factory=dict)


@register
@dataclass(frozen=True)
class Diagnosed(Event):
    """The run's current diagnoses (the whole list: it replaces the previous one)."""

    run_id: str = ""
    diagnoses: tuple[dict, ...] = ()


def encode(event: Event) -> str:
    data: dict[str, Any] = {"type": type(event).__name__}
    for f in fields(event):
        data[f.name] = getattr(event, f.name)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=_plain)


def _plain(value):
    """Points (blocks of columns) are written as the list of dicts they stand for."""
    if isinstance(value, Points):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def decode(line: str) -> Event:
    """The event a recorded line holds. A line that is not one of this version's events (another
    type, a field of another kind: a newer urbanrun's recording, or a damaged one) is a ValueError
    saying why, never an event that would break the reducer later."""
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not an event object")
    kind = data.pop("type", None)
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown event type {kind!r}")
    names = {f.name: f.type for f in fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    for name, value in kwargs.items():
        if not _fits(names[name], value):
            raise ValueError(f"{kind}.{name} is {_kind_of(value)}, not {names[name]}")
    if cls is RunChanged and not isinstance(kwargs.get("run", {}).get("id"), str):
        raise ValueError("RunChanged.run has no id")
    if cls is HostSample and not isinstance(kwargs.get("host", {}).get("runs", {}), dict):
        raise ValueError("HostSample.host.runs is not an object")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()}
    return cls(**kwargs)


_ITEM_KINDS = {"str": str, "dict": dict}


def _fits(annotation: str, value) -> bool:
    """Whether a decoded JSON value is of the kind a field's annotation says (the few kinds events use)."""
    if value is None:
        return annotation.endswith("| None")
    kind = annotation.removesuffix(" | None").removesuffix(" | Points")
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind in _ITEM_KINDS:
        return isinstance(value, _ITEM_KINDS[kind])
    if kind.startswith("tuple["):  # tuple[str, ...] or tuple[dict, ...]
        item = _ITEM_KINDS[kind[len("tuple["):].split(",")[0]]
        return isinstance(value, list) and all(isinstance(v, item) for v in value)
    return True


def _kind_of(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), type(value).__name__)
