"""The contract of a metric point's axis: a `step` is a whole number from 0 to 2^53 (the largest
every JSON reader holds exactly), an `epoch` a finite number in that range. A point whose step or
epoch breaks it (NaN, 1e300, -3, 2.5) is a bad record: dropped whole, counted and named by its
source like a torn line, so no view plots it, prints it or counts progress by it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from urbanrun.engine.core.points import Block, Points

if TYPE_CHECKING:  # numpy is imported where a block (its arrays) is checked: listing runs needs none
    import numpy as np

MAX_STEP = 2 ** 53


def axis_problem(point: dict) -> str | None:
    """Why a point's step or epoch is not one (None: it is fine, or it has none)."""
    for key, whole_only in (("step", True), ("epoch", False)):
        value = point.get(key)
        if type(value) not in (int, float):  # absent, or not a number (a bool, a string): no axis of its own
            continue
        if not (0 <= value <= MAX_STEP) or (whole_only and value != int(value)):
            return _why(key, value, whole_only)
    return None


def _why(key: str, value, whole_only: bool) -> str:
    shown = repr(value) if not abs(value) > 1e15 else f"{value:.6g}"  # not 300 digits; NaN: nan
    kind = "a whole number" if whole_only else "a number"
    return f"{key} {shown} is not {kind} from 0 to 2^53"


def _bad_rows(block: Block) -> np.ndarray | None:
    """A mask of the block's rows whose step or epoch breaks the contract (None: all are fine)."""
    import numpy as np

    bad = None
    for key, whole_only in (("step", True), ("epoch", False)):
        column = block.column(key)
        if column is None:
            continue
        lo, hi = column.min(), column.max()  # the usual block: a look at two numbers (NaN fails both)
        if lo >= 0 and hi <= MAX_STEP and (not whole_only or (np.modf(column)[0] == 0).all()):
            continue
        wrong = ~((column >= 0) & (column <= MAX_STEP))  # NaN compares False: wrong
        if whole_only:
            wrong |= np.floor(np.nan_to_num(column)) != np.nan_to_num(column)
        bad = wrong if bad is None else bad | wrong
    return bad if bad is not None and bad.any() else None


class StepCheck:
    """Drops the points of one source whose axis is not one; keeps the count and the first reason."""

    def __init__(self):
        self.bad = 0
        self.first_error: str | None = None

    def keep(self, points):
        """The points (a list of dicts or Points) without the bad ones, of the same kind."""
        if type(points) is Points:
            return self._keep_points(points)
        if not points:
            return points
        kept = []
        for point in points:
            problem = axis_problem(point)
            if problem is None:
                kept.append(point)
            else:
                self._count(1, problem)
        return kept

    def _keep_points(self, points: Points) -> Points:
        if not any((type(part) is Block and _bad_rows(part) is not None) or
                   (type(part) is not Block and any(axis_problem(p) for p in part)) for part in points.parts):
            return points  # the usual case: nothing copied
        out = Points()
        for part in points.parts:
            if type(part) is not Block:
                out.extend(self.keep(part))
                continue
            bad = _bad_rows(part)
            if bad is not None:
                first = part.values[int(bad.argmax())]
                self._count(int(bad.sum()), axis_problem(dict(zip(part.names, first.tolist()))))
                part = Block(part.names, part.values[~bad])
            out.add_block(part.names, part.values)
        return out

    def _count(self, n: int, problem: str | None) -> None:
        self.bad += n
        if self.first_error is None and problem:
            self.first_error = problem
