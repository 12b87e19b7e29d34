"""A synthetic H3-like hexagon hierarchy, and the cones cut from it.

Cells are axial coordinates (q, r). Like H3's aperture 7, each cell has 7 children one level
finer: the cell at `q*E1 + r*E2` and its 6 neighbours, where E1=(2,1) and E2=(-1,3) span the
finer lattice's 7-cell "flowers" (each of length sqrt(7), 60 degrees apart), so the children of
all cells tile the finer level exactly. A cone is one root cell and all its descendants over three
levels (7 coarse, 49 middle, 343 fine cells), each level with its 6-neighbour graph and a map
from each cell to its parent — the shape UrbanRepML's cone batches have.
"""

from __future__ import annotations

import math

import numpy as np

NEIGHBOURS = ((1, 0), (1, -1), (0, -1), (-1, 0), (-1, 1), (0, 1))
E1, E2 = (2, 1), (-1, 3)
LEVELS = 3  # resolutions inside a cone: coarse, middle, fine (like H3 7, 8, 9)


def hex_disk(radius: int) -> list[tuple[int, int]]:
    return [(q, r) for q in range(-radius, radius + 1)
            for r in range(max(-radius, -q - radius), min(radius, -q + radius) + 1)]


def disk_radius_for(count: int) -> int:
    radius = 0
    while 3 * radius * (radius + 1) + 1 < count:
        radius += 1
    return radius


def children(cell: tuple[int, int]) -> list[tuple[int, int]]:
    q, r = cell
    cq, cr = q * E1[0] + r * E2[0], q * E1[1] + r * E2[1]
    return [(cq, cr)] + [(cq + dq, cr + dr) for dq, dr in NEIGHBOURS]


def xy(cell: tuple[int, int]) -> tuple[float, float]:
    q, r = cell
    return q + r / 2.0, r * math.sqrt(3) / 2.0


def level_edges(cells: list[tuple[int, int]]) -> np.ndarray:
    """6-neighbour edges (both directions) among the given cells, as a 2 x E index array."""
    index = {c: i for i, c in enumerate(cells)}
    src, dst = [], []
    for i, (q, r) in enumerate(cells):
        for dq, dr in NEIGHBOURS:
            j = index.get((q + dq, r + dr))
            if j is not None:
                src.append(i)
                dst.append(j)
    return np.array([src, dst], dtype=np.int64)


def cone(root: tuple[int, int]) -> dict:
    """Cells per level (coarse first), edges per level, and parent index of each cell in the level above."""
    levels, parents = [], []
    above = [root]
    for _ in range(LEVELS):
        cells, parent = [], []
        for p_idx, cell in enumerate(above):
            for child in children(cell):
                cells.append(child)
                parent.append(p_idx)
        levels.append(cells)
        parents.append(np.array(parent, dtype=np.int64))
        above = cells
    return {"cells": levels, "edges": [level_edges(c) for c in levels], "parents": parents[1:]}


class SmoothField:
    """Features on the fine level: a few random plane waves per channel, smooth across cells."""

    def __init__(self, channels: int, scale: float, rng: np.random.Generator, waves: int = 6):
        self.freq = rng.normal(0, 1.0 / scale, size=(channels, waves, 2))
        self.phase = rng.uniform(0, 2 * math.pi, size=(channels, waves))
        self.amp = rng.uniform(0.3, 1.0, size=(channels, waves)) / math.sqrt(waves)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        # points: N x 2 -> N x channels
        angles = np.einsum("nd,cwd->ncw", points, self.freq) + self.phase[None]
        return (np.sin(angles) * self.amp[None]).sum(-1).astype(np.float32)
