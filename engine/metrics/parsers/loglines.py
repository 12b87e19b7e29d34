"""Metrics and progress from plain log lines, the way real training scripts print them:

    Epoch 2/5 | Train Loss: 0.4312 | Val Loss: 0.4520 | LR: 9.5e-04
    12:01:02 INFO Epoch   10/100  loss=0.012345  best=0.012001
    Epoch 1/2:  45%|████▌     | 45/100 [00:10<00:12,  4.50it/s, loss=0.123]

`key=value` pairs anywhere (except on a settings line, one with a `key=word` or `key=[...]` pair such
as `Model: dims=[32, 64] device=cpu batch_size=8`), `Key: value` segments between `|`, `Epoch i/N` / `Step i/N`
progress, tqdm bars (the last carriage-return frame), after a Python logging prefix is stripped.
Per-recipe regexes with named groups add to these. Log-line metric names are snake_cased
(`Train Loss` -> `train_loss`). A line with nothing number-like is rejected by one regex search.
"""

from __future__ import annotations

import math
import re

from urbanrun.engine.core.text import last_frame

NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf(?:inity)?)"
_END = r"(?=$|[\s;|)\]}]|,\s|,$)"
TORCHRUN_PREFIX = re.compile(r"^\[default(\d+)\]:(?:\[rank\d+\]:\s?)?")
CANDIDATE = re.compile(r"[=:]\s*[-+]?(?:\d|\.\d|nan|inf)|\d\s*/\s*\d|%\|", re.I)
PREFIX = re.compile(
    r"^(?:\[?\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\]?\s*(?:[-|]\s*)?"
    r"|\[?\d\d:\d\d:\d\d(?:[.,]\d+)?\]?\s*(?:[-|]\s*)?)?"
    r"(?:[\w.]+\s+-\s+)?"  # logger name in "name - LEVEL - msg"
    r"(?:\[?(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\]?(?::[\w.]+:|\s*[-:|]\s*|\s+))?")
KEY_EQ = re.compile(r"(?<![\w./-])([A-Za-z_][\w./-]{0,63})\s*=\s*(" + NUM + ")" + _END, re.I)
# a key=value whose value is a word or a bracket (device=cpu, amp=False, dims=[32, 64]): the line is a
# settings dump (a model or config printout), and its numbers (batch_size=8) are settings, not metrics
SETTING_PAIR = re.compile(r"(?<![\w./-])[A-Za-z_][\w./-]{0,63}\s*=\s*(?:[\[{(]|(?![-+]?(?:nan|inf(?:inity)?)(?![a-z_]))[A-Za-z_])",
                          re.I)
KEY_COLON = re.compile(r"^\s*([A-Za-z][\w ./-]{0,47}?)\s*:\s*(" + NUM + r")\s*$", re.I)
# at most 18 digits a count: a longer one is no progress (and int() refuses 4,300 digits: a crash)
PROGRESS = re.compile(r"\b(epoch|step|iter(?:ation)?|batch)\b\s*[:#\[]?\s*(\d{1,18})\s*/\s*(\d{1,18})(?!\d)", re.I)
PROGRESS_CUT = re.compile(PROGRESS.pattern + r"\]?\s*:?", re.I)
TQDM = re.compile(
    r"(?:(?P<desc>.*?):\s*)?(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>[\d.]+[kMG]?)/(?P<total>[\d.]+[kMG]?)\s*"
    r"\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+)(?:,\s*(?P<rate>[\d.]+|\?)\s*(?P<unit>[^,\]]*))?(?:,\s*(?P<postfix>[^\]]*))?\]")


def snake(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip()).lower()


def _value(text: str) -> float:
    low = text.lower().lstrip("+")
    if low in ("nan", "-nan"):
        return math.nan
    if low.lstrip("-") in ("inf", "infinity"):
        return -math.inf if low.startswith("-") else math.inf
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in low else value


def _seconds(clock: str) -> float | None:
    if "?" in clock:
        return None
    total = 0.0
    for part in clock.split(":"):
        total = total * 60 + float(part)
    return total


def _count(text: str) -> float:
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}.get(text[-1:], 1)
    return float(text.rstrip("kMG")) * scale


class LogLineParser:
    """feed(lines) -> (points, progress): metric points, and the latest progress seen."""

    format = "log"

    def __init__(self, patterns: list[re.Pattern] | tuple = ()):
        self.patterns = list(patterns)

    def feed(self, lines: list[str]) -> tuple[list[dict], dict | None]:
        """Points, and the latest progress seen per unit ({"epoch": {...}, "batch": {...}}) or None."""
        points, progress = [], {}
        for raw in lines:
            point, prog = self.parse_line(last_frame(raw))
            if point:
                points.append(point)
            if prog:
                progress[prog["unit"]] = prog
        return points, progress or None

    def parse_line(self, line: str) -> tuple[dict | None, dict | None]:
        if line.startswith("[default"):  # torchrun --tee: metrics come from rank 0's lines only
            m = TORCHRUN_PREFIX.match(line)
            if m:
                if m.group(1) != "0":
                    return None, None
                line = line[m.end():]
        point: dict = {}
        progress = None
        for pattern in self.patterns:
            m = pattern.search(line)
            if m:
                for name, text in m.groupdict().items():
                    if text is not None:
                        try:
                            point[name] = _value(text)
                        except ValueError:
                            continue
        if not point and not CANDIDATE.search(line):
            return None, None
        line = PREFIX.sub("", line, count=1)
        bar = TQDM.search(line) if "%|" in line else None
        if bar:
            progress = self._tqdm(bar)
            for key, text in KEY_EQ.findall(bar.group("postfix") or ""):
                point[snake(key)] = _value(text)
            line = line[:bar.start()] + line[bar.end():]
            if "epoch" in progress:
                point.setdefault("epoch", progress["epoch"])
        for m in PROGRESS.finditer(line):
            word = m.group(1).lower()
            unit = word if word in ("epoch", "batch") else "step"
            n, total = int(m.group(2)), int(m.group(3))
            if bar is None:
                progress = {"unit": unit, "n": n, "total": total}
            point.setdefault(unit, n)
        if progress is not None and bar is None:
            line = PROGRESS_CUT.sub(" | ", line)  # "Step 3/9 loss: 1" -> " |  loss: 1"
        if not SETTING_PAIR.search(line):
            for key, text in KEY_EQ.findall(line):
                point[snake(key)] = _value(text)
        if "|" in line or ":" in line:
            for segment in line.split("|") if "|" in line else [line]:
                m = KEY_COLON.match(segment)
                if m:
                    point[snake(m.group(1))] = _value(m.group(2))
        metrics = [k for k in point if k not in ("epoch", "step", "batch")]
        return (point if metrics else None), progress

    @staticmethod
    def _tqdm(m: re.Match) -> dict:
        desc = (m.group("desc") or "").strip()
        inner = PROGRESS.search(desc)
        rate = m.group("rate")
        unit = (m.group("unit") or "").strip()
        per_second = None
        if rate and rate != "?":
            per_second = float(rate) if not unit.startswith("s/") else 1.0 / float(rate) if float(rate) else None
        progress = {"unit": "batch", "n": _count(m.group("n")), "total": _count(m.group("total")),
                    "rate": per_second, "elapsed": _seconds(m.group("elapsed")), "eta": _seconds(m.group("eta")),
                    "desc": desc}
        if inner:
            progress["epoch"], progress["epochs"] = int(inner.group(2)), int(inner.group(3))
        return progress
