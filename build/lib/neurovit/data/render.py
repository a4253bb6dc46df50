"""Morphology → ground-truth mask: the union of tapered capsules between nodes, on an anisotropic grid.

Geometry. An edge from node a (radius ra) to node b (radius rb) is the union of the balls
B(a + t (b - a), ra + t (rb - ra)) for t in [0, 1] (a "cone-sphere"). A point p lies inside iff
min_t |p - c(t)| - r(t) <= 0. With L = |b - a|, axial coordinate x = (p - a)·u, radial distance h and
slope k = (rb - ra) / L, this convex function of s = tL is minimal at s* = x + k h / sqrt(1 - k²)
(clamped to [0, L]); for |k| >= 1 one end ball contains the other. The shape does not change when an
edge is split, so long edges are cut into short pieces to keep bounding boxes tight.

Grid. Voxel (iz, iy, ix) has its centre at physical (x, y, z) = (ix vx, iy vy, iz vz) for a voxel size
(vz, vy, vx); morphologies in µm are translated beforehand (see `fit_to_volume`). Radii are clamped to
at least half the smallest voxel size, and (by default) every voxel containing a centreline point is
set too, so thin neurites stay 26-connected. Somata (type 1) are balls of their radius; an edge that
leaves a soma node uses the child's radius at both ends instead of a cone from the soma radius.
Only the capsule pieces that can reach the grid are made, so parts far outside cost nothing.

Size guard. A grid of more than `MAX_GRID_VOXELS` voxels is refused with a DatasetError (a neuron in nm
or voxel units read as µm would otherwise ask for terabytes); raise the module constant to go beyond.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

from neurovit.data.swc import SOMA, Morphology, xyz_to_zyx
from neurovit.errors import DatasetError

VoxelSize = tuple[float, float, float]

#: Largest grid `fit_to_volume`, `render_mask` and `render_segment_ids` accept: 2**31 = 2,147,483,648
#: voxels (a 2 GiB boolean mask, 8 GiB of int32 segment ids).
MAX_GRID_VOXELS = 2**31
#: Largest node coordinate (µm, after converting voxel units) the renderer accepts: 1e15 µm = 1000 km.
MAX_COORDINATE_UM = 1e15


def _extent_um(m: Morphology, voxel_size: VoxelSize) -> str:
    """The neuron's bounding-box size in µm as "X x Y x Z µm (x, y, z)", for error messages."""
    if m.n_nodes == 0:
        return "nothing (no nodes)"
    um = m.to_um(voxel_size) if m.units == "voxel" else m
    with np.errstate(over="ignore", invalid="ignore"):
        lo, hi = um.bounds()
        ext = hi - lo
    return " x ".join(f"{e:.4g}" for e in ext) + " µm (x, y, z)"


def _refuse_grid(m: Morphology, shape_text: str, n_voxels: float, voxel_size: VoxelSize,
                 what: str) -> DatasetError:
    where = m.source or "<morphology>"
    return DatasetError(
        f"{where}: {what} would be a {shape_text} (z, y, x) grid = {n_voxels:.3g} voxels, over the limit "
        f"of {MAX_GRID_VOXELS:,} (neurovit.data.render.MAX_GRID_VOXELS); the neuron spans "
        f"{_extent_um(m, voxel_size)} at voxel size {tuple(voxel_size)} µm (z, y, x): "
        "check the SWC's units (µm vs nm/voxels) and the voxel size")


def _check_shape(m: Morphology, shape: Sequence[int], voxel_size: VoxelSize,
                 what: str) -> tuple[int, int, int]:
    """`shape` as three non-negative ints no larger in total than MAX_GRID_VOXELS, else DatasetError."""
    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        dims = ()
    where = m.source or "<morphology>"
    if len(dims) != 3 or min(dims) < 0:
        raise DatasetError(f"{where}: the {what} shape must be three non-negative integers (z, y, x), "
                           f"got {shape!r}")
    n = math.prod(dims)
    if n > MAX_GRID_VOXELS:
        raise _refuse_grid(m, " x ".join(map(str, dims)), n, voxel_size, what)
    return dims  # type: ignore[return-value]


def segments_zyx(m: Morphology, voxel_size: Sequence[float]) -> tuple[np.ndarray, ...]:
    """Capsule list (a, b, ra, rb) in physical (z, y, x) coordinates for a µm or voxel-unit morphology."""
    if m.units == "voxel":
        m = m.to_um(voxel_size)
    pts = xyz_to_zyx(m.xyz).astype(np.float64)
    e = m.edges
    child, par = e[:, 0], e[:, 1]
    ra, rb = m.radius[child].copy(), m.radius[par].copy()
    from_soma = (m.types[par] == SOMA) & (m.types[child] != SOMA)
    rb[from_soma] = ra[from_soma]
    balls = np.flatnonzero((m.types == SOMA) | ((m.parent < 0) & (m.n_children == 0)))
    a = np.concatenate([pts[child], pts[balls]])
    b = np.concatenate([pts[par], pts[balls]])
    return a, b, np.concatenate([ra, m.radius[balls]]), np.concatenate([rb, m.radius[balls]])


def _split_long(a, b, ra, rb, max_len: float):
    """Cut edges longer than max_len into equal pieces (exact: the swept-ball union is unchanged)."""
    length = np.linalg.norm(b - a, axis=1)
    pieces = np.maximum(1, np.ceil(length / max_len)).astype(np.int64)
    if (pieces == 1).all():
        return a, b, ra, rb
    seg = np.repeat(np.arange(len(a)), pieces)
    k = np.arange(len(seg)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    t0 = (k / pieces[seg])[:, None]
    t1 = ((k + 1) / pieces[seg])[:, None]
    d, dr = b - a, rb - ra
    return (a[seg] + t0 * d[seg], a[seg] + t1 * d[seg],
            ra[seg] + t0[:, 0] * dr[seg], ra[seg] + t1[:, 0] * dr[seg])


def cone_sphere_excess(p: np.ndarray, a: np.ndarray, b: np.ndarray, ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """min over t of |p - c(t)| - r(t) for rows of points and capsules (<= 0 means inside)."""
    d = b - a
    length = np.linalg.norm(d, axis=-1)
    safe = np.where(length > 0, length, 1.0)
    u = d / safe[..., None]
    q = p - a
    x = (q * u).sum(-1)
    h = np.sqrt(np.maximum((q * q).sum(-1) - x * x, 0.0))
    k = (rb - ra) / safe
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(np.abs(k) < 1, x + k * h / np.sqrt(np.maximum(1 - k * k, 1e-300)),
                     np.where(k > 0, length, 0.0))
    s = np.clip(s, 0.0, length)
    excess = np.sqrt((x - s) ** 2 + h * h) - (ra + k * s)
    ball = length == 0
    if np.any(ball):
        excess = np.where(ball, np.sqrt((q * q).sum(-1)) - np.maximum(ra, rb), excess)
    return excess


def _inside_voxels(a, b, ra, rb, shape, voxel_size, chunk: int = 1 << 22) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (flat voxel index, capsule index) for every voxel centre inside a capsule, chunk by chunk."""
    v = np.asarray(voxel_size, dtype=np.float64)
    shp = np.asarray(shape, dtype=np.int64)
    r = np.maximum(ra, rb)
    lo = np.ceil((np.minimum(a, b) - r[:, None]) / v - 1e-9).astype(np.int64)
    hi = np.floor((np.maximum(a, b) + r[:, None]) / v + 1e-9).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, shp - 1)
    dims = np.maximum(hi - lo + 1, 0)
    counts = dims.prod(axis=1)
    keep = np.flatnonzero(counts > 0)
    if len(keep) == 0:
        return
    bounds = np.searchsorted(np.cumsum(counts[keep]), np.arange(chunk, counts[keep].sum() + chunk, chunk))
    start = 0
    for stop in np.unique(np.append(bounds + 1, len(keep))):
        stop = int(min(stop, len(keep)))
        if stop <= start:
            continue
        seg = keep[start:stop]
        start = stop
        cnt = counts[seg]
        rep = np.repeat(np.arange(len(seg)), cnt)
        local = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        nx = dims[seg, 2][rep]
        ny = dims[seg, 1][rep]
        ix = local % nx
        rest = local // nx
        iy = rest % ny
        iz = rest // ny
        iz += lo[seg, 0][rep]
        iy += lo[seg, 1][rep]
        ix += lo[seg, 2][rep]
        p = np.stack([iz * v[0], iy * v[1], ix * v[2]], axis=1)
        s = seg[rep]
        inside = cone_sphere_excess(p, a[s], b[s], ra[s], rb[s]) <= 1e-9
        flat = (iz[inside] * shp[1] + iy[inside]) * shp[2] + ix[inside]
        yield flat, s[inside]


def _centreline_voxels(a, b, shape, voxel_size) -> tuple[np.ndarray, np.ndarray]:
    """(flat index, capsule index) of the voxels containing points sampled densely along each axis."""
    v = np.asarray(voxel_size, dtype=np.float64)
    steps = np.maximum(1, np.ceil(np.abs((b - a) / v).max(axis=1) * 2)).astype(np.int64)
    seg = np.repeat(np.arange(len(a)), steps + 1)
    k = np.arange(len(seg)) - np.repeat(np.cumsum(steps + 1) - (steps + 1), steps + 1)
    t = (k / steps[seg])[:, None]
    idx = np.rint((a[seg] + t * (b[seg] - a[seg])) / v).astype(np.int64)
    ok = ((idx >= 0) & (idx < np.asarray(shape))).all(axis=1)
    idx, seg = idx[ok], seg[ok]
    return (idx[:, 0] * shape[1] + idx[:, 1]) * shape[2] + idx[:, 2], seg


def _pieces_near_grid(a, b, ra, rb, pieces, shape, v) -> tuple[np.ndarray, np.ndarray]:
    """(first piece, number of pieces) of every capsule (split into `pieces` equal parts) that can reach
    a voxel centre of the grid: those meeting the grid box grown by the capsule's radius and a voxel,
    plus one piece either side. A ball of radius <= r containing a grid point has its centre within r
    of the grid box, so the pieces left out draw nothing in the grid; the kept ones are the very pieces
    (same arithmetic) the whole capsule is split into, so the result is unchanged — only faster, and a
    neuron kilometres long (units mistaken) no longer needs memory for every piece."""
    r = np.maximum(ra, rb)[:, None]
    lo = -r - v
    hi = (np.asarray(shape, dtype=np.float64) - 1) * v + r + v
    d = b - a
    moving = d != 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ta, tb = (lo - a) / d, (hi - a) / d
        t0 = np.maximum(0.0, np.where(moving, np.minimum(ta, tb), -np.inf).max(axis=1))
        t1 = np.minimum(1.0, np.where(moving, np.maximum(ta, tb), np.inf).min(axis=1))
    reaches = (moving | ((a >= lo) & (a <= hi))).all(axis=1) & (t0 <= t1)
    t0, t1 = np.where(reaches, t0, 0.0), np.where(reaches, t1, 0.0)
    first = np.clip(np.floor(t0 * pieces) - 1, 0, pieces - 1).astype(np.int64)
    last = np.clip(np.floor(t1 * pieces) + 1, 0, pieces - 1).astype(np.int64)
    return first, np.where(reaches, last - first + 1, 0)


def _split_window(a, b, ra, rb, pieces, first, count):
    """Pieces first..first+count-1 of each capsule split into `pieces` equal parts, exactly as
    `_split_long` computes them; returns (a, b, ra, rb, capsule index of each piece)."""
    seg = np.repeat(np.arange(len(a)), count)
    if (pieces == 1).all():
        return a[seg], b[seg], ra[seg], rb[seg], seg
    k = np.arange(len(seg)) - np.repeat(np.cumsum(count) - count, count) + first[seg]
    t0 = (k / pieces[seg])[:, None]
    t1 = ((k + 1) / pieces[seg])[:, None]
    d, dr = b - a, rb - ra
    return (a[seg] + t0 * d[seg], a[seg] + t1 * d[seg],
            ra[seg] + t0[:, 0] * dr[seg], ra[seg] + t1[:, 0] * dr[seg], seg)


def _prepare(m: Morphology, voxel_size, min_radius, shape: Sequence[int] | None = None):
    """Validated voxel size and split capsules (a, b, ra, rb) with the node index owning each piece;
    with `shape`, only the pieces that can reach that grid are made (see `_pieces_near_grid`)."""
    from neurovit.data.volumes import check_voxel_size

    v = check_voxel_size(voxel_size)
    a, b, ra, rb = segments_zyx(m, v)
    reach = float(max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0)))
    if not reach <= MAX_COORDINATE_UM:
        raise DatasetError(f"{m.source or '<morphology>'}: node coordinates reach {reach:.3g} µm, beyond "
                           f"±{MAX_COORDINATE_UM:.0e} µm (1000 km) at voxel size {tuple(v)} µm (z, y, x): "
                           "check the SWC's units (µm vs nm/voxels) and the voxel size")
    balls = np.flatnonzero((m.types == SOMA) | ((m.parent < 0) & (m.n_children == 0)))
    owner = np.concatenate([m.edges[:, 0], balls])
    rmin = 0.5 * min(v) if min_radius is None else float(min_radius)
    ra, rb = np.maximum(ra, rmin), np.maximum(rb, rmin)
    max_len = max(4.0 * max(v), 2.0 * float(np.median(np.maximum(ra, rb))))
    pieces = np.maximum(1, np.ceil(np.linalg.norm(b - a, axis=1) / max_len)).astype(np.int64)
    if shape is not None:
        first, count = _pieces_near_grid(a, b, ra, rb, pieces, shape, np.asarray(v, dtype=np.float64))
        a, b, ra, rb, seg = _split_window(a, b, ra, rb, pieces, first, count)
        return v, a, b, ra, rb, owner[seg]
    a, b, ra, rb = _split_long(a, b, ra, rb, max_len)
    return v, a, b, ra, rb, np.repeat(owner, pieces)


def render_mask(m: Morphology, shape: Sequence[int], voxel_size: Sequence[float] = (1.0, 1.0, 1.0), *,
                min_radius: float | None = None, connect: bool = True) -> np.ndarray:
    """Boolean (Z, Y, X) mask of the morphology (µm, or voxel units with `m.units == "voxel"`).

    `min_radius` (µm) defaults to half the smallest voxel size; `connect` also sets the voxels that
    contain the centreline, so neurites thinner than a voxel remain connected.
    """
    from neurovit.data.volumes import check_voxel_size

    shape = _check_shape(m, shape, check_voxel_size(voxel_size), "mask")
    mask = np.zeros(math.prod(shape), dtype=bool)
    if m.n_nodes == 0:
        return mask.reshape(shape)
    v, a, b, ra, rb, _ = _prepare(m, voxel_size, min_radius, shape)
    for flat, _ in _inside_voxels(a, b, ra, rb, shape, v):
        mask[flat] = True
    if connect:
        mask[_centreline_voxels(a, b, shape, v)[0]] = True
    return mask.reshape(shape)


def render_segment_ids(m: Morphology, shape: Sequence[int], voxel_size: Sequence[float] = (1.0, 1.0, 1.0), *,
                       min_radius: float | None = None, connect: bool = True) -> np.ndarray:
    """int32 (Z, Y, X) volume: index of the child node of the edge covering each voxel, -1 for background.

    Soma balls and isolated roots carry their own node index. Where capsules overlap, one of them wins.
    Used by the synthetic microscope to give each branch its own brightness.
    """
    from neurovit.data.volumes import check_voxel_size

    shape = _check_shape(m, shape, check_voxel_size(voxel_size), "segment-id volume")
    out = np.full(math.prod(shape), -1, dtype=np.int32)
    if m.n_nodes == 0:
        return out.reshape(shape)
    v, a, b, ra, rb, owner = _prepare(m, voxel_size, min_radius, shape)
    if connect:
        flat, seg = _centreline_voxels(a, b, shape, v)
        out[flat] = owner[seg]
    for flat, seg in _inside_voxels(a, b, ra, rb, shape, v):
        out[flat] = owner[seg]
    return out.reshape(shape)


def fit_to_volume(m: Morphology, voxel_size: Sequence[float], margin: float = 5.0) -> tuple[Morphology, tuple]:
    """Translate a µm morphology so it fits a new volume with `margin` µm around it; returns (morph, shape).

    A voxel-unit morphology is converted to µm first (with `voxel_size`). Raises DatasetError when that
    grid would exceed `MAX_GRID_VOXELS` (usually an SWC in nm or voxel units read as µm, or a far too small
    voxel size)."""
    from neurovit.data.volumes import check_voxel_size

    v = check_voxel_size(voxel_size)
    margin = float(margin)
    if not (math.isfinite(margin) and margin >= 0):
        raise DatasetError(f"{m.source or '<morphology>'}: the margin around the neuron must be a finite "
                           f"number >= 0 µm, got {margin}")
    if m.units == "voxel":
        m = m.to_um(v)
    with np.errstate(over="ignore", invalid="ignore"):
        lo, hi = m.bounds()
        extent = xyz_to_zyx(hi - lo + 2 * margin)
        dims = np.floor(extent / np.asarray(v)) + 1
        n = float(np.prod(dims))
    if not (np.isfinite(dims).all() and n <= MAX_GRID_VOXELS):
        shape_text = " x ".join(f"{d:.0f}" if d < 1e15 else f"{d:.3g}" for d in dims)
        raise _refuse_grid(m, shape_text, n, v, "the fitted volume")
    shifted = m.translate(margin - lo)
    shape = tuple(int(d) for d in dims)
    return shifted, shape
