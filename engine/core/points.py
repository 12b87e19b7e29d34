"""Metric points in arrival order, as a source parsed them: a run of points that share one list
of names (a trainer's usual lines: the same keys in the same order) as one block of columns,
any other point as a dict. The reducer takes a block whole, so the common case never builds a
dict per point; printing and recording iterate the points as dicts."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable, Iterator

if TYPE_CHECKING:  # numpy itself is imported where blocks are joined: events import this module, and the
    import numpy as np  # TUI's first frame and the CLI's record-only commands need no numpy


class Block:
    """Points with the same names: `values[i, j]` is point i's value of `names[j]` (float64)."""

    __slots__ = ("names", "values")

    def __init__(self, names: tuple[str, ...], values: np.ndarray):
        self.names = names
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def column(self, name: str) -> np.ndarray | None:
        return self.values[:, self.names.index(name)] if name in self.names else None

    def dicts(self) -> Iterator[dict]:
        names = self.names
        for row in self.values.tolist():
            yield dict(zip(names, map(whole, row)))


class Points:
    """Points in order: blocks and lists of dicts. Consecutive blocks with the same names are
    joined (one numpy append a metric for a whole poll, not one per parse block)."""

    __slots__ = ("_parts", "_open", "_len")

    def __init__(self, dicts: Iterable[dict] = ()):
        self._parts: list[Block | list[dict]] = []
        self._open: list[np.ndarray] = []  # arrays of the last block, joined when read
        self._len = 0
        for point in dicts:
            self.add(point)

    def add(self, point: dict) -> None:
        self._close()
        if not self._parts or type(self._parts[-1]) is not list:
            self._parts.append([])
        self._parts[-1].append(point)
        self._len += 1

    def add_block(self, names: tuple[str, ...], values: np.ndarray) -> None:
        if not len(values):
            return
        last = self._parts[-1] if self._parts else None
        if not (self._open and type(last) is Block and last.names == names):
            self._close()
            self._parts.append(Block(names, values))
        self._open.append(values)
        self._len += len(values)

    def extend(self, points: Iterable[dict] | Points) -> None:
        if type(points) is not Points:
            for point in points:
                self.add(point)
            return
        for part in points.parts:
            if type(part) is Block:
                self.add_block(part.names, part.values)
            else:
                for point in part:
                    self.add(point)

    @property
    def parts(self) -> list[Block | list[dict]]:
        self._close()
        return self._parts

    def _close(self) -> None:
        if self._open:
            import numpy as np

            block = self._parts[-1]
            block.values = self._open[0] if len(self._open) == 1 else np.concatenate(self._open)
            self._open = []

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[dict]:
        for part in self.parts:
            yield from (part.dicts() if type(part) is Block else part)

    def __getitem__(self, index: int) -> dict:
        if type(index) is not int:
            raise TypeError("Points are indexed by position (use list() for slices)")
        i = index + self._len if index < 0 else index
        for part in self.parts if 0 <= i < self._len else ():
            if i < len(part):
                return dict(zip(part.names, map(whole, part.values[i].tolist()))) if type(part) is Block else part[i]
            i -= len(part)
        raise IndexError("point index out of range")

    def __eq__(self, other) -> bool:
        if isinstance(other, (Points, list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Points({len(self)} points in {len(self.parts)} parts)"


def whole(v: float):
    """A whole float as the int it was most likely written as (as JSON output shows it)."""
    return int(v) if v.is_integer() and abs(v) < 2 ** 53 and (v or math.copysign(1.0, v) > 0) else v
