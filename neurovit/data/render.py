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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from neurovit.data.swc import SOMA, Morphology, xyz_to_zyx

VoxelSize = tuple[float, float, float]


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


def _prepare(m: Morphology, voxel_size, min_radius):
    """Validated voxel size and split capsules (a, b, ra, rb) with the node index owning each piece."""
    from neurovit.data.volumes import check_voxel_size

    v = check_voxel_size(voxel_size)
    a, b, ra, rb = segments_zyx(m, v)
    balls = np.flatnonzero((m.types == SOMA) | ((m.parent < 0) & (m.n_children == 0)))
    owner = np.concatenate([m.edges[:, 0], balls])
    rmin = 0.5 * min(v) if min_radius is None else float(min_radius)
    ra, rb = np.maximum(ra, rmin), np.maximum(rb, rmin)
    max_len = max(4.0 * max(v), 2.0 * float(np.median(np.maximum(ra, rb))))
    pieces = np.maximum(1, np.ceil(np.linalg.norm(b - a, axis=1) / max_len)).astype(np.int64)
    a, b, ra, rb = _split_long(a, b, ra, rb, max_len)
    return v, a, b, ra, rb, np.repeat(owner, pieces)


def render_mask(m: Morphology, shape: Sequence[int], voxel_size: Sequence[float] = (1.0, 1.0, 1.0), *,
                min_radius: float | None = None, connect: bool = True) -> np.ndarray:
    """Boolean (Z, Y, X) mask of the morphology (µm, or voxel units with `m.units == "voxel"`).

    `min_radius` (µm) defaults to half the smallest voxel size; `connect` also sets the voxels that
    contain the centreline, so neurites thinner than a voxel remain connected.
    """
    shape = tuple(int(s) for s in shape)
    mask = np.zeros(int(np.prod(shape)), dtype=bool)
    if m.n_nodes == 0:
        return mask.reshape(shape)
    v, a, b, ra, rb, _ = _prepare(m, voxel_size, min_radius)
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
    shape = tuple(int(s) for s in shape)
    out = np.full(int(np.prod(shape)), -1, dtype=np.int32)
    if m.n_nodes == 0:
        return out.reshape(shape)
    v, a, b, ra, rb, owner = _prepare(m, voxel_size, min_radius)
    if connect:
        flat, seg = _centreline_voxels(a, b, shape, v)
        out[flat] = owner[seg]
    for flat, seg in _inside_voxels(a, b, ra, rb, shape, v):
        out[flat] = owner[seg]
    return out.reshape(shape)


def fit_to_volume(m: Morphology, voxel_size: Sequence[float], margin: float = 5.0) -> tuple[Morphology, tuple]:
    """Translate a µm morphology so it fits a new volume with `margin` µm around it; returns (morph, shape)."""
    lo, hi = m.bounds()
    shifted = m.translate(margin - lo)
    extent = xyz_to_zyx(hi - lo + 2 * margin)
    shape = tuple(int(np.floor(e / v)) + 1 for e, v in zip(extent, voxel_size))
    return shifted, shape
