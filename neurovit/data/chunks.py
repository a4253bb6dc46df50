"""Chunked prediction plan: a volume cut into output tasks aligned to the output's zarr chunks, each read
with a halo so every output voxel sees the context it would see in a whole-volume pass.

A task's core is a box of whole output chunks (so two tasks never write the same zarr chunk and
concurrent writers need no locks); its region is the core grown by `halo` voxels per axis, clipped to
the volume. The z halo is the model's block depth (blocks of D slices centred on each slice; all-slices
models average D-deep neighbourhoods), the in-plane halo half a window. Tasks are listed in C order, so
rank r of W processes takes tasks r, r + W, ...: disjoint, and balanced to within one task.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset

from neurovit.errors import NeurovitError


@dataclass(frozen=True)
class Task:
    """One output box: `core` (z0, z1, y0, y1, x0, x1) written, `region` read (core plus halo)."""

    index: int
    core: tuple[int, int, int, int, int, int]
    region: tuple[int, int, int, int, int, int]

    @property
    def key(self) -> str:
        z0, _, y0, _, x0, _ = self.core
        return f"{z0}.{y0}.{x0}"

    def core_in_region(self) -> tuple[slice, slice, slice]:
        """The core as slices of the region array."""
        c, r = self.core, self.region
        return tuple(slice(c[2 * a] - r[2 * a], c[2 * a + 1] - r[2 * a]) for a in range(3))  # type: ignore[return-value]


def plan_tasks(shape, task_shape, chunk_shape, halo) -> list[Task]:
    """Tasks covering a (Z, Y, X) volume: cores of `task_shape` (a multiple of `chunk_shape` on every axis,
    or the whole axis), regions grown by `halo` (z, y, x) and clipped to the volume."""
    shape = tuple(int(s) for s in shape)
    task = tuple(min(int(t), s) for t, s in zip(task_shape, shape, strict=True))
    chunk = tuple(min(int(c), s) for c, s in zip(chunk_shape, shape, strict=True))
    for t, c, s, axis in zip(task, chunk, shape, "zyx", strict=True):
        if t < 1 or (t % c and t != s):
            raise NeurovitError(f"task size {t} along {axis} must be a positive multiple of the output chunk "
                                f"size {c} (or the whole axis, {s}), so no two tasks share a chunk")
    starts = [range(0, s, t) for s, t in zip(shape, task, strict=True)]
    tasks = []
    for i, (z0, y0, x0) in enumerate(itertools.product(*starts)):
        core = []
        region = []
        for a0, t, s, h in zip((z0, y0, x0), task, shape, halo, strict=True):
            a1 = min(a0 + t, s)
            core += [a0, a1]
            region += [max(a0 - int(h), 0), min(a1 + int(h), s)]
        tasks.append(Task(i, tuple(core), tuple(region)))  # type: ignore[arg-type]
    return tasks


def rank_share(n_tasks: int, rank: int, world_size: int) -> list[int]:
    """Task indices of `rank` among `world_size` processes: rank, rank + W, ... (disjoint, balanced)."""
    return list(range(rank, n_tasks, world_size))


class ChunkDataset(Dataset):
    """Items of (volume, task) pairs: the raw region (float32, (Z', Y', X')) read lazily, with its ids."""

    def __init__(self, volumes: list, tasks: list[list[Task]], keys: list[tuple[int, int]]):
        self.volumes, self.tasks, self.keys = volumes, tasks, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> dict:
        v, t = self.keys[i]
        task = self.tasks[v][t]
        z0, z1, y0, y1, x0, x1 = task.region
        region = np.asarray(self.volumes[v][z0:z1, y0:y1, x0:x1])
        return {"volume": v, "task": t, "region": region}


def collate_one(items: list[dict]) -> dict:
    """Batches of one task (regions differ in shape at the volume's borders)."""
    if len(items) != 1:
        raise ValueError("chunked prediction runs one task per batch")
    return items[0]


def voxels(tasks: list[Task], core: bool = True) -> int:
    """Voxels of the tasks' cores (or regions): the halo overhead is regions / cores."""
    box = (lambda t: t.core) if core else (lambda t: t.region)
    return sum(math.prod(b[2 * a + 1] - b[2 * a] for a in range(3)) for b in map(box, tasks))
