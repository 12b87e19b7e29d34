"""Two of plotext's inner loops, done by numpy with the same result (plotext is pinned below 6).

A braille plot frame spends most of its time in two pure-Python loops over every dot it draws:
`get_lines` (the dots on the line between each pair of points) and `hd_group` (the dots put
together into braille characters). A noisy curve of a few hundred points is thousands of dots:
the two took about half of a ~35 ms loss-pane frame. `install()` puts these in their place in
plotext's utility module, which its build calls them through. Each falls back to plotext's own
function for anything but the plain case they are written for (whole-number dot coordinates and
one marker size per curve), and the tests compare both on random curves, dot for dot.
"""

from __future__ import annotations

import numpy as np
import plotext._utility as _ut

_plotext_get_lines = _ut.get_lines
_plotext_hd_group = _ut.hd_group


def _whole(values) -> np.ndarray | None:
    """The values as an int64 array, when every one is a plain int (plotext's dot coordinates)."""
    if not values or set(map(type, values)) != {int}:
        return None
    return np.fromiter(values, dtype=np.int64, count=len(values))


def _spread(values: list, index: np.ndarray) -> list:
    """values[i] for each i of index (one curve's marker, colour and style: usually all the same)."""
    first = values[0]
    if all(v == first for v in values):
        return [first] * len(index)
    return [values[i] for i in index.tolist()]


def get_lines(x, y, *other):
    """plotext's get_lines: the dots of the straight lines between consecutive points, each
    segment from its first dot up to (not including) the next point, then the last point; every
    dot carries its segment's first point's marker, colour and style."""
    xs, ys = _whole(x), _whole(y)
    if xs is None or ys is None or len(xs) != len(ys) or len(xs) < 2 or any(len(o) != len(xs) for o in other):
        return _plotext_get_lines(x, y, *other)
    x0, y0, dx, dy = xs[:-1], ys[:-1], np.diff(xs), np.diff(ys)
    steps = np.maximum(np.abs(dx), np.abs(dy))  # a segment's dots, its end excluded (plotext's length - 1)
    segment = np.repeat(np.arange(len(steps)), steps)
    starts = np.cumsum(steps) - steps
    k = np.arange(len(segment)) - np.repeat(starts, steps)  # the dot's place along its segment
    div = np.where(steps > 0, steps, 1).astype(np.float64)
    # plotext: lower + k * slope, slope = (upper - lower) / (length - 1), then int(): the same float
    # operations in the same order, so the same dots
    line_x = (x0[segment] + k * (dx / div)[segment]).astype(np.int64)
    line_y = (y0[segment] + k * (dy / div)[segment]).astype(np.int64)
    index = np.append(segment, len(xs) - 1)  # the point each dot takes its marker and colour from
    out_x = line_x.tolist() + [x[-1]]
    out_y = line_y.tolist() + [y[-1]]
    return [out_x, out_y] + [_spread(list(o), index) for o in other]


def hd_group(x, y, xf, yf):
    """plotext's hd_group: dots put together into characters of xf by yf dots; returns each
    character's place and its dots (rows from the top, as plotext's marker tables read them)."""
    xs, ys = _whole(x), _whole(y)
    if xs is None or ys is None or len(xs) != len(ys) or len(set(xf)) != 1 or len(set(yf)) != 1 \
            or len(xf) != len(xs) or len(yf) != len(xs):
        return _plotext_hd_group(x, y, xf, yf)
    fx, fy = xf[0], yf[0]
    cx, cy = xs // fx, ys // fy
    key = (cx - cx.min()) * (int(cy.max() - cy.min()) + 1) + (cy - cy.min())
    _, first, group = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # characters in the order their first dot came, as plotext's dict
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    bit = (fy - 1 - ys % fy) * fx + xs % fx  # the dot's place in the character, top row first
    dots = np.zeros((len(first), fx * fy), dtype=np.int64)
    dots[rank[group.ravel()], bit] = 1
    firsts = first[order]
    return cx[firsts].tolist(), cy[firsts].tolist(), [tuple(row) for row in dots.tolist()]


def install() -> None:
    _ut.get_lines = get_lines
    _ut.hd_group = hd_group
