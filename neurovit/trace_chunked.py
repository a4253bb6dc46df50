"""Out-of-core tracing: a mask / probability volume too large for memory → one SWC forest, chunk by chunk.

`trace_chunked` gives what whole-volume `neurovit.trace.trace` gives, with memory bounded by the chunk size:

1. The volume is tiled into *cores* of shape `chunk` (z, y, x). Each core is read together with `overlap`
   voxels of context on every side (clipped at the volume border) – one read per chunk, nothing else is
   ever read – thresholded with `trace.binarize` and skeletonised with `trace._skeletonize` (kimimaro
   TEASAR, same `TeasarParams`, anisotropy and ``fix_borders`` as `trace`).
2. Dust (`min_size`): a component that lies wholly inside the read block has its exact size there and
   is dropped when smaller than `min_size`, as in `trace`; a component touching an interior face of the
   block (one cut by the chunking) is kept. With ``overlap >= min_size`` this is exact: a component of
   fewer than `min_size` voxels that reaches the core is wholly inside that chunk's read block.
3. Crop: only skeleton vertices whose voxel lies in the chunk's core are kept (cores tile the volume,
   so each place is traced by exactly one chunk, with `overlap` voxels of context around it so the
   centrelines near a core face are those of the whole volume, not artefacts of the block border where
   kimimaro's ``fix_borders`` pulls paths to the face centres). A chunk's skeleton (all of it, overlap
   included) is kept in memory until the end: it is needed for the seams.
4. Seams (`_stitch`): an edge that leaves a core (core vertex ``a``, outside vertex ``b``) is a seam end.
   A 26-connected path crossing a face has a voxel on the neighbour's first plane, so the chunk owning
   ``b`` normally has a vertex at or next to ``b``: ``a`` is joined to the nearest kept vertex of another
   chunk within `seam_tolerance` voxels (index space; default 2) of ``b``. Where there is none (the two
   chunks chose centrelines more than that apart, e.g. for a neurite lying on a seam, whose centre is
   ambiguous between the two chunks' voxels, or at a corner where the neighbour did not trace that
   piece) the chunk's own skeleton is followed from ``b`` to the first vertex that is near another
   chunk's kept skeleton (or kept itself), and that path is kept. Last, a repair pass: kept vertices
   that a chunk's skeleton connects (through its overlap) but the stitched graph does not are joined
   along that skeleton. So the trees are the 26-connected components of the mask whatever
   `join_distance` (as in `trace`). Seam edges count as skeleton edges: the same seam seen from both
   sides is kept once and a small cycle they form is cut at its longest edge by the spanning forest.
5. One graph: all kept vertices, skeleton and seam edges go through `trace.skeleton_to_morphology`
   unchanged – fragments closer than `join_distance` are joined by the same single-linkage spanning
   forest as `trace`, each tree is rooted at its largest radius, soma typing as `trace` – and vertices
   are converted to voxel indices (x = column, y = row, z = slice; radius in x-voxels), with `trace`'s
   header plus a line on the chunking and the seams.

Agreement with `trace` (tests/test_trace_chunked.py, 64×200×200, chunks 32×96×96, a soma on the corner
of 8 chunks): same trees, ESA 0.02–0.41 voxel, total length within ±2.5 %. TEASAR is global per
component, so the chunks can choose different (equally good) centrelines and spurs near a seam; for
neurites and somata thinner than `overlap` the differences stay sub-voxel on average, but a broad sheet
or slab lying on a seam can come out with a different set of spurs.

With one chunk covering the volume (``chunk >= shape``) steps 2–4 do nothing and the result is `trace`'s
(same nodes, order, parents, radii; bit-identical for isotropic voxels).

Why hand-written rather than igneous (the Seung lab's chunked kimimaro pipeline, PyPI
``igneous-pipeline`` 4.37.0): it runs here (tried in a throwaway venv on a file:// precomputed layer with
`LocalTaskQueue`), but installing it into this environment pulls ~60 packages (cloud-volume 12.15,
cloud-files, google-cloud-*, grpcio, boto3, gevent, opencv 5, ...) and upgrades botocore past the pin of
the installed aiobotocore; it needs the volume copied into a Neuroglancer precomputed *segmentation*
layer; it skeletonises per label id, so a binary mask (one label) comes back as one skeleton object for
all neurons, and its merge step (``kimimaro.postprocess``: loop and tick removal, joining pieces closer
than twice the label's largest radius) is not `trace`'s `join_distance` joining and rooting; its output
is in physical units, per label. Its stitching (tasks overlapping by one voxel plane, ``fix_borders``
making both sides put a vertex on the shared plane, merge of coincident vertices) is kept in spirit
here with a wider overlap, so that the kept centrelines do not depend on the block border.

Memory: one read block, (chunk + 2·overlap) voxels, as bool plus kimimaro's work arrays on it (tens of
bytes per voxel: the default 128×512×512 chunk with overlap 16 needs ~1–2 GB), plus the skeletons (a
few numbers per vertex). Chunks are processed one after the other (no process pool). Speed: with chunks
of 128×256×256 a 256×512×512 mask traced in 0.9 s against 1.0 s whole (measured once); small chunks
cost more, as the overlap is read and skeletonised again.
"""

from __future__ import annotations

import inspect
import itertools
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from neurovit.data.swc import Morphology, zyx_to_xyz
from neurovit.trace import (
    DEFAULT_TEASAR,
    TraceError,
    _check_voxel_size,
    _foreground_box,
    _header,
    _skeletonize,
    binarize,
    skeleton_to_morphology,
    trace,
)

__all__ = ["trace_chunked"]

_TRACE_OPTIONS = ("min_size", "join_distance", "soma_radius", "teasar", "source", "notes")


def _triple(value: int | Sequence[int], what: str, minimum: int) -> tuple[int, int, int]:
    vals = (value,) * 3 if np.isscalar(value) else tuple(value)
    if len(vals) != 3 or any(int(v) != v or int(v) < minimum for v in vals):
        raise TraceError(f"{what} must be an integer or three integers (z, y, x) >= {minimum}, got {value!r}")
    return tuple(int(v) for v in vals)  # type: ignore[return-value]


def _trace_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`trace`'s defaults for the options passed on, overridden by `kwargs` (unknown ones refused)."""
    unknown = sorted(set(kwargs) - set(_TRACE_OPTIONS))
    if unknown:
        raise TypeError(f"trace_chunked() got unexpected keyword argument(s) {unknown}; "
                        f"trace options are {list(_TRACE_OPTIONS)}")
    sig = inspect.signature(trace).parameters
    return {name: kwargs.get(name, sig[name].default) for name in _TRACE_OPTIONS}


def _drop_cut_free_dust(mask: np.ndarray, min_size: int, interior: Sequence[tuple[bool, bool]]) -> np.ndarray:
    """Remove 26-connected components with fewer than `min_size` voxels that touch no interior face."""
    import cc3d

    labels, n = cc3d.connected_components(mask, connectivity=26, return_N=True)
    if n == 0:
        return mask
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    keep = counts >= min_size
    for axis, (low, high) in enumerate(interior):
        for side, is_interior in ((0, low), (-1, high)):
            if is_interior:
                keep[np.take(labels, side, axis=axis)] = True  # cut by the chunking: true size unknown
    keep[0] = False
    return keep[labels]


def trace_chunked(mask_or_prob: Any, *, threshold: float = 0.5, voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
                  chunk: int | Sequence[int] = (128, 512, 512), overlap: int | Sequence[int] = 16,
                  progress: bool = False, seam_tolerance: float = 2.0, **trace_kwargs: Any) -> Morphology:
    """Trace a (Z, Y, X) volume chunk by chunk into one voxel-unit SWC forest (see the module docstring).

    mask_or_prob: any lazily sliceable 3D array with ``.shape`` (numpy array, memmap, zarr array,
        ``open_volume(path).array`` or the ImageVolume itself); only ``[z0:z1, y0:y1, x0:x1]`` blocks
        of at most ``chunk + 2 * overlap`` voxels are read, one per chunk.
    threshold, voxel_size: as `trace` (foreground ``>= threshold``; anisotropy = voxel_size / vx).
    chunk: core size (z, y, x) in voxels (an int: the same on every axis).
    overlap: context voxels read around each core (int or (z, y, x)); should be at least `min_size`,
        the thickest neurite radius and a few TEASAR invalidation lengths (the default 16 suits 1–5
        voxel thick neurites; use more around large somata).
    progress: a tqdm bar over the chunks.
    seam_tolerance: a path leaving a core is joined to the neighbouring chunk's vertex nearest to its
        next voxel when that vertex is at most this many voxels (index space) away.
    trace_kwargs: `trace`'s min_size, join_distance, soma_radius, teasar, source, notes (same defaults).
    Returns the forest in voxel units like `trace`; empty (0 nodes) when nothing is above threshold.
    """
    t0 = time.perf_counter()
    opts = _trace_options(trace_kwargs)
    params = opts["teasar"] or DEFAULT_TEASAR
    min_size, join_distance = opts["min_size"], opts["join_distance"]
    if min_size < 0 or join_distance < 0:
        raise TraceError(f"min_size and join_distance must be >= 0, got {min_size} and {join_distance}")
    if not seam_tolerance > 0:
        raise TraceError(f"seam_tolerance must be > 0 voxels, got {seam_tolerance}")
    if hasattr(mask_or_prob, "array") and hasattr(mask_or_prob, "read"):  # an ImageVolume from open_volume
        mask_or_prob = mask_or_prob.array
    if not hasattr(mask_or_prob, "shape"):  # nested lists and the like
        mask_or_prob = np.asarray(mask_or_prob)
    shape = tuple(int(s) for s in mask_or_prob.shape)
    if len(shape) != 3:
        raise TraceError(f"expected a 3D (Z, Y, X) volume, got an array of shape {shape}")
    v = _check_voxel_size(voxel_size)
    anisotropy = np.array([v[0] / v[2], v[1] / v[2], 1.0])
    chunk_zyx = _triple(chunk, "chunk", 1)
    overlap_zyx = _triple(overlap, "overlap", 0)
    grid = [range(0, n, c) for n, c in zip(shape, chunk_zyx)]
    n_grid = np.array([len(g) for g in grid])
    n_chunks = int(np.prod(n_grid))

    parts: list[_ChunkSkeleton] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_chunks, desc="trace chunks", unit="chunk")
    for core_lo in itertools.product(*grid):
        core_lo = np.array(core_lo)
        core_hi = np.minimum(core_lo + chunk_zyx, shape)
        read_lo = np.maximum(core_lo - overlap_zyx, 0)
        read_hi = np.minimum(core_hi + overlap_zyx, shape)
        block = mask_or_prob[tuple(slice(int(a), int(b)) for a, b in zip(read_lo, read_hi))]
        mask = binarize(np.asarray(block), threshold)
        del block
        interior = [(bool(lo > 0), bool(hi < n)) for lo, hi, n in zip(read_lo, read_hi, shape)]
        if any(any(f) for f in interior):
            if min_size > 1:
                mask = _drop_cut_free_dust(mask, min_size, interior)
            chunk_min_size = 0
        else:  # one block is the whole volume: kimimaro's dust removal exactly as in `trace`
            chunk_min_size = min_size
        box = _foreground_box(mask)
        if bar is not None:
            bar.update()
        if box is None:
            continue
        verts, edges, radii = _skeletonize(np.ascontiguousarray(mask[box]), tuple(anisotropy), chunk_min_size,
                                           params)
        del mask
        if len(verts) == 0:
            continue
        voxel = np.rint(verts / anisotropy).astype(np.int64) + read_lo + np.array([b.start for b in box])
        core = np.all((voxel >= core_lo) & (voxel < core_hi), axis=1)
        parts.append(_ChunkSkeleton(voxel, radii, edges[edges[:, 0] != edges[:, 1]], core))
    if bar is not None:
        bar.close()

    voxels, edges, radii, stats = _stitch(parts, float(seam_tolerance))
    # positions in anisotropy units (those of TEASAR, join_distance and radii); `trace` uses the kimimaro
    # vertices relative to its crop: the same distances (bit for bit with isotropic voxels)
    pos = voxels * anisotropy
    m = skeleton_to_morphology(pos, edges, radii, join_distance=join_distance,
                               soma_radius=opts["soma_radius"])
    if len(m):
        m.xyz = m.xyz / zyx_to_xyz(anisotropy)  # anisotropy units → voxel indices
    m.source = opts["source"]
    notes = [f"chunked: {n_chunks} chunks of (z, y, x) {list(chunk_zyx)} voxels, "
             f"overlap {list(overlap_zyx)}, "
             f"seam tolerance {seam_tolerance:g} voxels; {stats}"] + list(opts["notes"])
    m.header = _header(shape, threshold, v, min_size, join_distance, opts["soma_radius"], params, m,
                       time.perf_counter() - t0, notes)
    return m


@dataclass
class _ChunkSkeleton:
    """One chunk's kimimaro skeleton: global (z, y, x) voxel of every vertex, radii, edges, in-core flags."""

    voxel: np.ndarray
    radii: np.ndarray
    edges: np.ndarray
    core: np.ndarray
    gid: np.ndarray = field(init=False)  # id in the stitched graph, -1 while not kept
    _nb: list[list[int]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.gid = np.full(len(self.voxel), -1, dtype=np.int64)

    @property
    def neighbours(self) -> list[list[int]]:
        if self._nb is None:
            self._nb = [[] for _ in range(len(self.voxel))]
            for i, j in self.edges.tolist():
                self._nb[i].append(j)
                self._nb[j].append(i)
        return self._nb

    def path(self, pred: dict[int, int], node: int, stop: int) -> list[int]:
        """Vertices from `node` back to (not including) `stop` along `pred`, listed from the `stop` side."""
        out = []
        while node != stop:
            out.append(node)
            node = pred[node]
        return out[::-1]


class _Stitcher:
    """The stitched graph being built: kept vertices (voxel, radius, chunk) and edges; see `_stitch`."""

    def __init__(self, parts: list[_ChunkSkeleton], tolerance: float):
        self.parts, self.tolerance = parts, tolerance
        self.voxel, self.radii, self.chunk, self.edges = [], [], [], []
        self.n = 0
        self.core_tree: cKDTree | None = None
        for k, part in enumerate(parts):
            self.keep(k, np.flatnonzero(part.core))
        self.own_edges = np.concatenate(
            [p.gid[p.edges[p.core[p.edges[:, 0]] & p.core[p.edges[:, 1]]]].reshape(-1, 2) for p in parts])
        self.core_tree = cKDTree(np.concatenate(self.voxel)) if self.n else None
        self.core_chunk = np.concatenate(self.chunk)
        self.added: list[tuple[np.ndarray, int, int]] = []  # (voxel, chunk, id) kept beyond a core
        self.n_seam = self.n_walked = self.n_unmatched = self.n_repaired = 0

    def keep(self, k: int, local: Sequence[int] | np.ndarray) -> None:
        part, local = self.parts[k], np.asarray(local, dtype=np.int64)
        part.gid[local] = self.n + np.arange(len(local))
        self.voxel.append(part.voxel[local].reshape(-1, 3))
        self.radii.append(part.radii[local])
        self.chunk.append(np.full(len(local), k, dtype=np.int64))
        self.n += len(local)
        if len(local) and self.core_tree is not None:  # built: these are kept beyond a core
            self.added += [(part.voxel[i], k, int(part.gid[i])) for i in local]

    def link(self, chain: Sequence[int]) -> None:
        chain = np.asarray(chain, dtype=np.int64)
        self.edges.append(np.stack([chain[:-1], chain[1:]], axis=1))

    def nearest_other(self, points: np.ndarray, k: int) -> np.ndarray:
        """Id of the nearest kept vertex of a chunk other than `k` within tolerance of each point, else -1."""
        hit = _nearest_other(self.core_tree, self.core_chunk, points, k, self.tolerance)
        if self.added and (hit < 0).any():
            vox = np.stack([a[0] for a in self.added])
            extra = _nearest_other(cKDTree(vox), np.array([a[1] for a in self.added]), points, k,
                                   self.tolerance)
            ids = np.array([a[2] for a in self.added])
            hit = np.where(hit >= 0, hit, np.where(extra >= 0, ids[np.maximum(extra, 0)], -1))
        return hit

    def seams(self) -> None:
        """Join each edge leaving a core to the other chunks' skeleton (directly, or along its own path)."""
        ends = []  # (chunk, core vertex, outside vertex), local indices
        for k, p in enumerate(self.parts):
            ci, cj = p.core[p.edges[:, 0]], p.core[p.edges[:, 1]]
            leaving = np.concatenate([p.edges[ci & ~cj], p.edges[~ci & cj][:, ::-1]])
            ends += [(k, int(a), int(b)) for a, b in leaving]
        if not ends:
            return
        pending = []
        own = np.array([k for k, _, _ in ends])
        outside = np.stack([self.parts[k].voxel[b] for k, _, b in ends])
        first = _nearest_other(self.core_tree, self.core_chunk, outside, own, self.tolerance)
        for (k, a, b), hit in zip(ends, first.tolist()):
            if hit >= 0:
                self.link([self.parts[k].gid[a], hit])
                self.n_seam += 1
            else:
                pending.append((k, a, b))
        for k, a, b in pending:
            part = self.parts[k]
            order, pred = _bfs(part.neighbours, b, a, part.gid)
            hit = np.where(part.gid[order] >= 0, part.gid[order], self.nearest_other(part.voxel[order], k))
            found = np.flatnonzero(hit >= 0)
            if len(found) == 0:
                self.n_unmatched += 1
                continue
            u = int(order[found[0]])
            path = part.path(pred, u if part.gid[u] < 0 else pred[u], a)
            self.keep(k, path)
            self.link([part.gid[a], *part.gid[path], hit[found[0]]])
            self.n_walked += len(path)
            self.n_seam += 1

    def repair(self) -> None:
        """Keep each chunk's connections: kept vertices of one chunk joined in its skeleton but not (yet) in
        the stitched graph are joined along that skeleton (through the part of it that was not kept)."""
        from scipy import sparse
        from scipy.sparse import csgraph

        edges = np.concatenate([self.own_edges, *self.edges]) if self.edges else self.own_edges
        graph = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(self.n, self.n))
        label = list(csgraph.connected_components(graph, directed=False)[1])
        parent = list(range(max(label, default=-1) + 1))

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for k, part in enumerate(self.parts):
            kept = part.gid >= 0
            e = part.edges
            ki, kj = kept[e[:, 0]], kept[e[:, 1]]
            attach = np.concatenate([e[ki & ~kj], e[~ki & kj][:, ::-1]])  # (kept, not kept)
            if len(attach) < 2:
                continue
            rest = e[~ki & ~kj]
            n = len(part.voxel)
            rest_graph = sparse.coo_matrix((np.ones(len(rest)), (rest[:, 0], rest[:, 1])), shape=(n, n))
            piece = csgraph.connected_components(rest_graph, directed=False)[1]
            for pc in np.unique(piece[attach[:, 1]]):
                att = attach[piece[attach[:, 1]] == pc]
                roots = {find(label[part.gid[a]]) for a in att[:, 0]}
                if len(roots) < 2:
                    continue
                # join the attachments one by one along the unkept piece, from the first one
                a0, b0 = (int(x) for x in att[0])
                order, pred = _bfs(part.neighbours, b0, a0, part.gid)
                for a, b in att[1:].tolist():
                    if find(label[part.gid[a]]) == find(label[part.gid[a0]]) or b not in pred:
                        continue
                    path = [x for x in part.path(pred, b, a0) if part.gid[x] < 0]
                    self.keep(k, path)
                    label += [label[part.gid[a0]]] * len(path)
                    chain = [part.gid[a0]] + [part.gid[x] for x in part.path(pred, b, a0)] + [part.gid[a]]
                    self.link(chain)
                    parent[find(label[part.gid[a]])] = find(label[part.gid[a0]])
                    self.n_repaired += 1


def _stitch(parts: list[_ChunkSkeleton], tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """One skeleton graph from the chunks' skeletons: (voxels (V, 3), edges, radii, a summary line).

    1. Core vertices are kept, with the chunk's edges between them (in kimimaro's order).
    2. Every chunk edge from a core vertex ``a`` to a vertex ``b`` outside the core is a seam end: ``a`` is
       joined to the kept vertex of another chunk nearest to ``b`` within `tolerance` voxels. When there is
       none (the neighbour's centreline runs farther away, e.g. along the seam, or it did not trace that
       piece), the chunk's own skeleton is followed from ``b`` (breadth first, away from ``a``) to the first
       vertex within `tolerance` of a kept vertex of another chunk, or kept itself; that path is kept too.
       Seam ends are handled one after the other, so later ones also meet paths kept by earlier ones.
    3. Repair: kept vertices that one chunk's skeleton connects (through its overlap) but the graph so far
       does not (each side matched a neighbour that is not connected onwards) are joined along that
       chunk's skeleton.
    """
    empty = np.empty((0, 3), np.int64), np.empty((0, 2), np.int64), np.empty(0), "no skeleton"
    if not parts or not any(p.core.any() for p in parts):
        return empty
    st = _Stitcher(parts, tolerance)
    st.seams()
    st.repair()
    seams = np.concatenate(st.edges).astype(np.int64) if st.edges else np.empty((0, 2), np.int64)
    seams = np.unique(np.sort(seams[seams[:, 0] != seams[:, 1]], axis=1), axis=0)  # once per seam
    edges = np.concatenate([st.own_edges, seams]).astype(np.int64)  # the chunks' own edges first
    stats = (f"{st.n_seam} seam joins, {st.n_repaired} repairs, {st.n_walked} vertices kept beyond a core; "
             f"{st.n_unmatched} seam ends left to join_distance")
    return np.concatenate(st.voxel), edges, np.concatenate(st.radii), stats


def _nearest_other(tree: cKDTree, chunk: np.ndarray, points: np.ndarray, own: int | np.ndarray,
                   tolerance: float) -> np.ndarray:
    """Index (into the tree) of the nearest point of a chunk other than `own` (per point or one for all)
    within `tolerance` of each point, else -1."""
    n = tree.n
    k = min(16, n)
    idx = tree.query(points, k=k, distance_upper_bound=tolerance)[1].reshape(len(points), k)
    ok = idx < n
    ok &= chunk[np.where(ok, idx, 0)] != np.reshape(own, (-1, 1))
    first = np.argmax(ok, axis=1)  # query results are sorted by distance
    rows = np.arange(len(points))
    return np.where(ok[rows, first], idx[rows, first], -1)


def _bfs(neighbours: list[list[int]], start: int, came_from: int, gid: np.ndarray) -> tuple[np.ndarray, dict]:
    """Breadth-first order from `start`, not back through `came_from` and not beyond kept vertices."""
    pred = {start: came_from}
    order, queue = [], deque([start])
    while queue:
        node = queue.popleft()
        order.append(node)
        if gid[node] >= 0:
            continue  # a kept vertex ends the walk along this branch
        for nxt in neighbours[node]:
            if nxt not in pred:
                pred[nxt] = node
                queue.append(nxt)
    return np.array(order, dtype=np.int64), pred
