"""Which metrics share a plot: train/val pairs (`train_loss`/`val_loss`, `train/acc`/`val/acc`,
Lightning's `train_loss_step`/`train_loss_epoch`) go on one plot, under their common name; a
filter by name keeps only the metrics that match."""

from __future__ import annotations

import re

_SPLIT = re.compile(r"^(train|training|val|valid|validation|test|eval)[_/.\-]|[_/.\-](train|training|val|valid|validation|test|eval|step|epoch)$",
                    re.IGNORECASE)


def group_key(name: str) -> str:
    """The plot a metric belongs on: its name without a train/val/test prefix or suffix."""
    key = name
    for _ in range(3):  # e.g. train_loss_epoch -> loss_epoch -> loss
        stripped = _SPLIT.sub("", key)
        if stripped == key or not stripped:
            break
        key = stripped
    return key


def _order(name: str) -> tuple:
    """Within a plot: train before val before test, then by name."""
    low = name.lower()
    rank = 0 if "train" in low else 1 if "val" in low else 2 if "test" in low or "eval" in low else 0
    return rank, low


def matches(name: str, pattern: str) -> bool:
    """A filter: any of its words (split on spaces or |) is part of the name, ignoring case."""
    words = [w for w in re.split(r"[\s|]+", pattern.lower()) if w]
    return not words or any(w in name.lower() for w in words)


def groups(names, pattern: str = "") -> dict[str, list[str]]:
    """Plots (common name -> metric names), loss plots first, for the metrics the filter keeps."""
    found: dict[str, list[str]] = {}
    for name in names:
        if matches(name, pattern):
            found.setdefault(group_key(name), []).append(name)
    ordered = sorted(found, key=lambda k: ("loss" not in k.lower(), k.lower()))
    return {k: sorted(set(found[k]), key=_order) for k in ordered}
