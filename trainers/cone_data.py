"""Cones on disk, one file per cone, and a batcher that loads them lazily, batch by batch.

The cache is built on first use (atomically, file by file, a marker last), so a second run with
the same lattice settings starts at once and two runs building it together do not clash.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .hexlattice import LEVELS, SmoothField, cone, disk_radius_for, hex_disk, xy

FEATURES = 8
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    base = os.environ.get("URBANRUN_CONE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "urbanrun", "cones")
    return Path(base)


def build_cones(count: int, seed: int, cache_dir: Path | None = None) -> list[Path]:
    """Paths of `count` cone files for this seed, writing those that are missing."""
    radius = disk_radius_for(count)
    key = hashlib.sha1(f"v{CACHE_VERSION}-r{radius}-f{FEATURES}-s{seed}".encode()).hexdigest()[:10]
    folder = (cache_dir or default_cache_dir()) / key
    roots = hex_disk(radius)[:count]
    paths = [folder / f"cone_{i:04d}.pt" for i in range(len(roots))]
    if (folder / "complete").exists() and all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    field = SmoothField(FEATURES, scale=3.0, rng=rng)  # waves about one cone wide
    for root, path in zip(roots, paths):
        if path.exists():
            continue
        c = cone(root)
        fine = np.array([xy(cell) for cell in c["cells"][-1]])
        data = {
            "x": torch.from_numpy(field(fine)),
            "edge_index": [torch.from_numpy(e) for e in c["edges"]],
            "parent": [torch.from_numpy(p) for p in c["parents"]],
            "sizes": torch.tensor([len(cells) for cells in c["cells"]]),
        }
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            torch.save(data, tmp)
            os.replace(tmp, path)
        except BaseException:  # a full disk: a half-written cone would hold the space every later run needs
            tmp.unlink(missing_ok=True)
            raise
    (folder / "complete").write_text(str(len(paths)))
    return paths


class LazyConeBatcher(Dataset):
    """Item i is batch i: `batch_size` cones loaded from disk and joined into one graph per level.

    Works with a DataLoader (batch_size=None) and worker processes; `set_epoch` reshuffles."""

    def __init__(self, files: list[Path], batch_size: int, shuffle: bool = True, seed: int = 0):
        self.files = list(files)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.order = list(range(len(self.files)))

    def set_epoch(self, epoch: int) -> None:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1000 + epoch)
            self.order = torch.randperm(len(self.files), generator=g).tolist()

    def __len__(self) -> int:
        return math.ceil(len(self.files) / self.batch_size)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        chosen = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        return collate([torch.load(self.files[i], weights_only=True) for i in chosen])


def collate(cones: list[dict]) -> dict:
    """Join cones into one disjoint graph per level, offsetting node and parent indices."""
    xs, edges, parents = [], [[] for _ in range(LEVELS)], [[] for _ in range(LEVELS - 1)]
    offsets = [0] * LEVELS
    for c in cones:
        sizes = c["sizes"].tolist()
        xs.append(c["x"])
        for lvl in range(LEVELS):
            edges[lvl].append(c["edge_index"][lvl] + offsets[lvl])
        for lvl in range(LEVELS - 1):
            parents[lvl].append(c["parent"][lvl] + offsets[lvl])  # parent of level lvl+1 lives in level lvl
        for lvl in range(LEVELS):
            offsets[lvl] += sizes[lvl]
    return {
        "x": torch.cat(xs),
        "edge_index": [torch.cat(e, dim=1) for e in edges],
        "parent": [torch.cat(p) for p in parents],
        "num_cones": len(cones),
    }
