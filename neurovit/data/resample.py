"""Resample a (Z, Y, X) stack to another voxel size slab by slab (memory: a few slices, not the volume).

Grid convention (as `scipy.ndimage.zoom(..., grid_mode=True)`): voxel centres at (i + 0.5) · size, so a
stack keeps its physical extent. z is interpolated linearly between the two nearest input slices (for a
factor-2 reduction that is the mean of the two slices it covers); each plane is then resized with
`skimage.transform.resize` (bilinear, Gaussian anti-aliasing when shrinking). Hand-written only for the
slab streaming: scipy and scikit-image resample whole in-memory arrays, and the stacks here can be larger
than memory (memory-mapped TIFF, chunked OME-Zarr).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def resampled_shape(shape: Iterable[int], from_voxel: Iterable[float], to_voxel: Iterable[float]) -> tuple[int, ...]:
    """Shape of a stack of `shape` voxels of size `from_voxel` on a grid of `to_voxel` (same extent)."""
    return tuple(max(1, int(round(n * a / b))) for n, a, b in zip(shape, from_voxel, to_voxel, strict=True))


def _source_z(n_in: int, n_out: int) -> np.ndarray:
    """Input z coordinate of every output slice centre, clamped to [0, n_in − 1]."""
    z = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    return np.clip(z, 0, n_in - 1)


def resample(src, out_shape: Iterable[int], out: np.ndarray | None = None, *, slab: int = 16,
             dtype=np.float32, progress: bool = False, desc: str = "resample") -> np.ndarray:
    """`src` (any sliceable (Z, Y, X) array) resampled to `out_shape`, written into `out` (e.g. a memmap)
    `slab` output slices at a time; returns `out`."""
    from skimage.transform import resize

    out_shape = tuple(int(s) for s in out_shape)
    n_in, (ny, nx) = int(src.shape[0]), out_shape[1:]
    if out is None:
        out = np.empty(out_shape, dtype=dtype)
    zs = _source_z(n_in, out_shape[0])
    shrink = ny < src.shape[1] or nx < src.shape[2]
    starts = range(0, out_shape[0], slab)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="slab", leave=False)
    for a in starts:
        b = min(a + slab, out_shape[0])
        lo, hi = int(np.floor(zs[a])), min(int(np.floor(zs[b - 1])) + 2, n_in)
        block = np.asarray(src[lo:hi], dtype=np.float32)
        for k in range(a, b):
            z0 = int(np.floor(zs[k]))
            w = float(zs[k] - z0)
            plane = block[z0 - lo]
            if w > 0 and z0 + 1 < n_in:
                plane = (1.0 - w) * plane + w * block[z0 + 1 - lo]
            if plane.shape != (ny, nx):
                plane = resize(plane, (ny, nx), order=1, mode="edge", anti_aliasing=shrink, preserve_range=True)
            out[k] = plane
    return out
