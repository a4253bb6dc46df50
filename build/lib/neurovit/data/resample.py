"""Resample a (Z, Y, X) stack to another voxel size slab by slab (memory: a few slices, not the volume).

Grid convention (the project's, see the README): voxel i has its centre at i · size on each axis, as SWC
µm ↔ voxel conversion assumes; so output voxel j of size `to` samples input coordinate j · to / from,
linearly interpolated on every axis (clamped at the last voxel). When an axis shrinks by a factor f > 1
it is first smoothed with a Gaussian of σ = (f − 1) / 2 input voxels (scikit-image's anti-aliasing
rule), so noise and thin structures are not aliased. Hand-written only for the slab streaming: scipy and
scikit-image resample whole in-memory arrays, and stacks here can be larger than memory (memory-mapped
TIFF, chunked OME-Zarr).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def resampled_shape(shape: Iterable[int], from_voxel: Iterable[float], to_voxel: Iterable[float]) -> tuple[int, ...]:
    """Shape of a stack of `shape` voxels of size `from_voxel` on a grid of `to_voxel` (same extent)."""
    return tuple(max(1, int(round(n * a / b))) for n, a, b in zip(shape, from_voxel, to_voxel, strict=True))


def _coords(n_in: int, n_out: int, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """(lower input index, weight of the upper one) of each output voxel j at input coordinate j · ratio."""
    c = np.clip(np.arange(n_out) * ratio, 0, n_in - 1)
    i0 = np.minimum(np.floor(c).astype(np.int64), max(n_in - 2, 0))
    return i0, (c - i0).astype(np.float32)


def _sigma(ratio: float) -> float:
    return max(0.0, (ratio - 1.0) / 2.0)


def _lerp(a: np.ndarray, axis: int, i0: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Linear interpolation of `a` along `axis` at i0 + w."""
    lo = np.take(a, i0, axis=axis)
    if a.shape[axis] == 1:
        return lo
    hi = np.take(a, i0 + 1, axis=axis)
    shape = [1] * a.ndim
    shape[axis] = -1
    w = w.reshape(shape)
    return lo + w * (hi - lo)


def resample(src, from_voxel: Iterable[float], to_voxel: Iterable[float], out_shape: Iterable[int] | None = None,
             out: np.ndarray | None = None, *, slab: int = 16, dtype=np.float32, progress: bool = False,
             desc: str = "resample") -> np.ndarray:
    """`src` (any sliceable (Z, Y, X) array) of voxel size `from_voxel` on the grid of `to_voxel`
    (shape `out_shape`, default `resampled_shape`), written into `out` (e.g. a memmap) `slab` output
    slices at a time; returns `out`."""
    from scipy.ndimage import gaussian_filter1d

    shape_in = tuple(int(s) for s in src.shape)
    ratios = [b / a for a, b in zip(from_voxel, to_voxel, strict=True)]  # input voxels per output voxel
    out_shape = tuple(int(s) for s in (out_shape or resampled_shape(shape_in, from_voxel, to_voxel)))
    if out is None:
        out = np.empty(out_shape, dtype=dtype)
    (z0, wz), (y0, wy), (x0, wx) = (_coords(n, m, r) for n, m, r in zip(shape_in, out_shape, ratios))
    sz, sy, sx = (_sigma(r) for r in ratios)
    halo = int(math.ceil(4 * sz))  # gaussian_filter1d's default truncation: 4 σ
    starts = range(0, out_shape[0], slab)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="slab", leave=False)
    for a in starts:
        b = min(a + slab, out_shape[0])
        lo = max(int(z0[a]) - halo, 0)
        hi = min(int(z0[b - 1]) + 2 + halo, shape_in[0])
        block = np.asarray(src[lo:hi], dtype=np.float32)
        if sz > 0:  # the halo holds the neighbours the filter needs; stack edges repeat (mode "nearest")
            block = gaussian_filter1d(block, sz, axis=0, mode="nearest")
        block = _lerp(block, 0, z0[a:b] - lo, wz[a:b])
        for axis, s, i0, w in ((1, sy, y0, wy), (2, sx, x0, wx)):
            if s > 0:
                block = gaussian_filter1d(block, s, axis=axis, mode="nearest")
            if block.shape[axis] != len(i0) or np.any(w) or np.any(i0 != np.arange(len(i0))):
                block = _lerp(block, axis, i0, w)
        out[a:b] = block
    return out

