"""Reconstruction and segmentation metrics (pure numpy/scipy, vectorised).

Tree metrics (Vaa3D ``neuron_distance``, Peng et al. 2010, ``neuron_sim_scores.cpp``):

- Every edge (child c, parent p) of tree A of length L is sampled at N = int(1 + L + 0.5) points
  c + j/(N-1) (p - c), j = 0..N-1 (both ends included; one point, the child, when N = 1).
- d(q, B) = distance from point q to the nearest *edge segment* of tree B (point-to-segment).
- Directional mean D(A→B) = mean of d over A's points; ESA = (D(A→B) + D(B→A)) / 2.
- DSA: the same means over the points with d >= threshold only; if only one direction has such
  points its mean is used, if neither has any DSA = 0.
- PDS = (fraction of A's points with d >= threshold + the same for B) / 2.

Distances are in the trees' coordinate units (voxels for neurovit SWC files). With ``voxel_size``
(z, y, x) given, voxel-unit trees are first converted to µm (x·vx, y·vy, z·vz), so anisotropy is handled
explicitly and distances, thresholds and the ~1-unit sampling are in µm.

Degenerate comparisons. A tree without edges (fewer than 2 nodes, or nodes without parent links: e.g. a
prediction traced to a single node or to nothing) has no sample points, so the Vaa3D rules above are
undefined. When exactly one of the two trees has no edges, the comparison is *degenerate* and is scored as
the worst value instead of NaN, so that it stays in every mean (``degenerate: True`` in the result):

- PDS = 1.0: a tree without edges reconstructs no structure, so every point of the other tree counts as
  "different" (the largest PDS there is).
- ESA = DSA = W, with W the mean distance from the other tree's sample points to the nearest node of the
  edgeless tree (its single node, usually): the one direction that is defined, counted in full rather
  than averaged with a missing one. DSA equals ESA because PDS = 1 counts every point as apart. When the
  edgeless tree has no node at all, W is the largest extent of the other tree (the diagonal of its
  bounding box), an upper bound of W for any single node placed inside that box: an empty trace never
  scores better than a one-node trace within the neuron's extent.
- The directional parts (``esa_12``, ``esa_21``, ``pds_12``, ``pds_21``) take the same values.

When neither tree has edges ESA/DSA/PDS are 0 (nothing to disagree about; not degenerate).

Node precision / recall / F1: both trees are resampled (edges cut into pieces <= ``spacing``); precision
is the fraction of predicted nodes with a gold node within ``threshold``, recall the fraction of gold
nodes with a predicted node within ``threshold`` (not a one-to-one matching), F1 = 2PR / (P + R).

Voxel metrics on boolean masks: Dice = 2|P∩G| / (|P| + |G|), precision = |P∩G| / |P|,
recall = |P∩G| / |G|, clDice = 2 Tprec Tsens / (Tprec + Tsens) with Tprec = |S(P)∩G| / |S(P)| and
Tsens = |S(G)∩P| / |S(G)| (S = 3D skeleton, skimage; Shit et al. 2021).

Empty inputs, one rule for every ratio above (voxel and node metrics): when both sides are empty the
score is 1.0 (perfect agreement); otherwise a ratio with a zero denominator is 0.0. So an empty prediction
against a non-empty ground truth scores Dice = clDice = precision = recall = 0 (and node P/R/F1 = 0), and a
non-empty prediction against an empty ground truth scores 0 as well.

`METRICS` is the one registry of these metrics (name, voxel or tree, direction, format, units): the
evaluation tables, training logs, ablation tables and figures all read it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from neurovit.data.swc import Morphology
from neurovit.errors import NeurovitError

__all__ = [
    "METRICS",
    "MetricSpec",
    "MetricsError",
    "best",
    "check_metric_names",
    "cldice",
    "dice",
    "degenerate_distance",
    "directional_distances",
    "format_value",
    "get_spec",
    "is_better",
    "metric_names",
    "neuron_distance",
    "node_scores",
    "overlap_scores",
    "point_segment_distance",
    "reconstruction_scores",
    "sample_edges",
    "segment_distance",
    "voxel_scores",
]


class MetricsError(NeurovitError, ValueError):
    """Inputs that cannot be compared (different shapes, mixed units, bad voxel size)."""


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class MetricSpec:
    """What every table, log and figure needs to know about one metric.

    name: key in the score dicts, CSV columns and logs (``val/esa``); label: short display name;
    kind: "voxel" (binary masks) or "tree" (SWC reconstructions); higher_is_better: the direction in which
    a value is better (ablation tables bold the best mean by it); fmt: format spec of a value in tables;
    units: "" for ratios in [0, 1], "distance" for ESA/DSA (in the trees' units: voxels, or µm with
    ``metric_units="um"``); description: one line for the reader; headline: one of the compact set that
    summary tables and figures show by default (ablation ``metrics``).

    Empty and degenerate inputs follow the module's rules: every ratio is 1.0 when both sides are empty and
    0.0 when only its denominator is; a tree comparison where exactly one tree has no edges is scored as the
    worst value (PDS = 1, ESA = DSA = the finite distance W of the module docstring), never NaN.
    """

    name: str
    kind: str
    higher_is_better: bool
    fmt: str
    units: str
    description: str
    label: str = ""
    headline: bool = False

    @property
    def display(self) -> str:
        return self.label or self.name

    def axis_label(self, distance_unit: str = "voxel") -> str:
        """Display name with its unit for distances, e.g. "ESA (voxel)"; ratios have none."""
        return f"{self.display} ({distance_unit})" if self.units == "distance" else self.display

    def format(self, value, *, sign: bool = False, missing: str = "–") -> str:
        """`value` in this metric's format (`missing` for None / NaN / inf)."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            return missing
        if not math.isfinite(v):
            return missing
        return format(v, ("+" if sign else "") + self.fmt)


def _spec(name, kind, higher, fmt, units, label, description, headline=True) -> MetricSpec:
    return MetricSpec(name, kind, higher, fmt, units, description, label, headline)


_RATIO, _DIST = ".3f", ".2f"
METRICS: dict[str, MetricSpec] = {s.name: s for s in (
    _spec("dice", "voxel", True, _RATIO, "", "Dice", "Dice = 2|P∩G| / (|P| + |G|) of the binary masks"),
    _spec("cldice", "voxel", True, _RATIO, "", "clDice",
          "centreline Dice: 2 Tprec Tsens / (Tprec + Tsens) of the masks and their 3D skeletons"),
    _spec("precision", "voxel", True, _RATIO, "", "precision", "voxel precision |P∩G| / |P|",
          False),
    _spec("recall", "voxel", True, _RATIO, "", "recall", "voxel recall |P∩G| / |G|", False),
    _spec("esa", "tree", False, _DIST, "distance", "ESA",
          "entire structure average: mean point-to-tree distance, averaged over both directions (Vaa3D)"),
    _spec("dsa", "tree", False, _DIST, "distance", "DSA",
          "different structure average: mean distance over the points at least the threshold apart"),
    _spec("pds", "tree", False, _RATIO, "", "PDS",
          "percentage of different structure: fraction of sample points at least the threshold apart"),
    _spec("node_precision", "tree", True, _RATIO, "", "node P",
          "fraction of resampled predicted nodes with a gold node within the threshold", False),
    _spec("node_recall", "tree", True, _RATIO, "", "node R",
          "fraction of resampled gold nodes with a predicted node within the threshold", False),
    _spec("node_f1", "tree", True, _RATIO, "", "node F1", "node F1 = 2PR / (P + R)"),
)}


def metric_names(kind: str | None = None, *, headline: bool = False) -> tuple[str, ...]:
    """Names of the registered metrics in registry order; `kind` "voxel" or "tree" keeps that kind only,
    `headline` the compact default set of summary tables."""
    if kind not in (None, "voxel", "tree"):
        raise MetricsError(f"metric kind must be 'voxel' or 'tree', got {kind!r}")
    return tuple(n for n, s in METRICS.items() if (kind is None or s.kind == kind) and (s.headline or not headline))


def get_spec(name: str) -> MetricSpec:
    """The registry entry of `name` (a MetricsError naming the known metrics otherwise)."""
    try:
        return METRICS[name]
    except KeyError:
        raise MetricsError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


def check_metric_names(names: Iterable[str]) -> list[str]:
    """The names that are not in the registry (empty when all are known)."""
    return [n for n in names if n not in METRICS]


def format_value(name: str, value, *, sign: bool = False, missing: str = "–") -> str:
    """`value` in the registry format of metric `name`."""
    return get_spec(name).format(value, sign=sign, missing=missing)


def is_better(name: str, a: float, b: float) -> bool:
    """True when value `a` of metric `name` is strictly better than `b` (NaN is never better)."""
    if not math.isfinite(a):
        return False
    if not math.isfinite(b):
        return True
    return a > b if get_spec(name).higher_is_better else a < b


def best(name: str, values: Iterable[float]) -> float | None:
    """The best finite value of metric `name` among `values` (max or min by its direction); None if none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return None
    return max(finite) if get_spec(name).higher_is_better else min(finite)


# --------------------------------------------------------------------------- geometry
def point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise (broadcasting) distance from points p to segments [a, b]: |p - (a + t (b - a))|,
    t = clip((p - a)·(b - a) / |b - a|², 0, 1); a degenerate segment (a = b) is the point a."""
    d = b - a
    dd = (d * d).sum(-1)
    t = np.clip(((p - a) * d).sum(-1) / np.where(dd > 0, dd, 1.0), 0.0, 1.0)
    t = np.where(dd > 0, t, 0.0)
    return np.linalg.norm(p - (a + t[..., None] * d), axis=-1)


def sample_edges(xyz: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Vaa3D sample points of every edge (child, parent): N = int(1 + L + 0.5) points from the child to the
    parent, both ends included (one point, the child, when N = 1). Returns (sum N, 3)."""
    if len(edges) == 0:
        return np.empty((0, 3))
    c, p = xyz[edges[:, 0]], xyz[edges[:, 1]]
    length = np.linalg.norm(p - c, axis=1)
    n = np.floor(1.0 + length + 0.5).astype(np.int64)
    seg = np.repeat(np.arange(len(edges)), n)
    j = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    t = np.where(n[seg] > 1, j / np.maximum(n[seg] - 1, 1), 0.0)
    return c[seg] + t[:, None] * (p[seg] - c[seg])


def _split_segments(a: np.ndarray, b: np.ndarray, max_len: float) -> tuple[np.ndarray, np.ndarray]:
    """Cut segments into equal pieces no longer than max_len (their union, hence distances, is unchanged)."""
    pieces = np.maximum(1, np.ceil(np.linalg.norm(b - a, axis=1) / max_len - 1e-9)).astype(np.int64)
    seg = np.repeat(np.arange(len(a)), pieces)
    k = np.arange(len(seg)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    t0, t1 = (k / pieces[seg])[:, None], ((k + 1) / pieces[seg])[:, None]
    d = b - a
    return a[seg] + t0 * d[seg], a[seg] + t1 * d[seg]


def segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray, *, piece: float = 1.0, k: int = 8,
                     chunk: int = 200_000) -> np.ndarray:
    """Exact distance from each point to the nearest of the segments [a_i, b_i] (min_i point-to-segment).

    Segments are cut into pieces of length <= `piece` and a KD-tree is built over piece midpoints m.
    A piece of half-length h <= piece/2 is at distance >= |q - m| - h, so after taking the exact minimum
    `best` over the k nearest pieces, pieces not among them can only be closer when the k-th midpoint
    distance is below best + h_max; those (few) points are re-checked against every piece within
    best + h_max. The result is exact, not an approximation.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(a) == 0:
        raise MetricsError("no segments to measure distances to")
    if len(points) == 0:
        return np.empty(0)
    a, b = _split_segments(np.asarray(a, float), np.asarray(b, float), piece)
    half = 0.5 * float(np.linalg.norm(b - a, axis=1).max())
    tree = cKDTree(0.5 * (a + b))
    k = min(k, len(a))
    out = np.empty(len(points))
    for s in range(0, len(points), chunk):
        q = points[s:s + chunk]
        dk, idx = tree.query(q, k=k)
        dk, idx = dk.reshape(len(q), k), idx.reshape(len(q), k)
        best = point_segment_distance(q[:, None, :], a[idx], b[idx]).min(axis=1)
        if k < len(a):
            redo = np.flatnonzero(dk[:, -1] - half < best)
            if len(redo):
                best[redo] = _ball_recheck(tree, q[redo], best[redo] + half + 1e-9, a, b, best[redo])
        out[s:s + chunk] = best
    return out


def _ball_recheck(tree: cKDTree, q: np.ndarray, radius: np.ndarray, a: np.ndarray, b: np.ndarray,
                  best: np.ndarray) -> np.ndarray:
    """Minimum over every piece whose midpoint lies within `radius` of each point (vectorised over pairs)."""
    lists = tree.query_ball_point(q, r=radius)
    counts = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    if counts.sum() == 0:
        return best
    cand = np.fromiter((i for x in lists for i in x), dtype=np.int64, count=int(counts.sum()))
    owner = np.repeat(np.arange(len(q)), counts)
    d = point_segment_distance(q[owner], a[cand], b[cand])
    out = best.copy()
    np.minimum.at(out, owner, d)
    return out


# --------------------------------------------------------------------------- tree metrics
def _in_units(m: Morphology, voxel_size: Sequence[float] | None) -> Morphology:
    if voxel_size is None:
        return m
    from neurovit.data.volumes import check_voxel_size

    v = check_voxel_size(voxel_size)
    return m.to_um(v) if m.units == "voxel" else m


def _pair_in_units(a: Morphology, b: Morphology, voxel_size) -> tuple[Morphology, Morphology]:
    """Both trees in the measuring units: µm when voxel_size is given, else as they are (same units required)."""
    if voxel_size is None and a.units != b.units:
        raise MetricsError(f"trees in different units ({a.units!r} vs {b.units!r}); convert one, or pass "
                           "voxel_size to measure both in µm")
    return _in_units(a, voxel_size), _in_units(b, voxel_size)


def directional_distances(a: Morphology, b: Morphology, *, voxel_size: Sequence[float] | None = None) -> np.ndarray:
    """d(q, B) for every Vaa3D sample point q of tree A's edges (see the module docstring); (n_points,)."""
    a, b = _pair_in_units(a, b, voxel_size)
    pts = sample_edges(a.xyz, a.edges)
    e = b.edges
    if len(pts) and len(e) == 0:
        raise MetricsError("tree B has no edges: distances to it are undefined")
    if len(e) == 0:
        return np.empty(0)
    return segment_distance(pts, b.xyz[e[:, 0]], b.xyz[e[:, 1]])


def _scores_from_distances(d12: np.ndarray, d21: np.ndarray, threshold: float) -> dict[str, float]:
    """ESA, DSA, PDS (and their directional parts) from the two arrays of point distances (Vaa3D rules)."""
    big12, big21 = d12[d12 >= threshold], d21[d21 >= threshold]
    if len(big12) and len(big21):
        dsa = 0.5 * (big12.mean() + big21.mean())
    elif len(big12) or len(big21):
        dsa = (big12 if len(big12) else big21).mean()
    else:
        dsa = 0.0
    return {"esa": float(0.5 * (d12.mean() + d21.mean())), "dsa": float(dsa),
            "pds": float(0.5 * (len(big12) / len(d12) + len(big21) / len(d21))),
            "esa_12": float(d12.mean()), "esa_21": float(d21.mean()),
            "pds_12": float(len(big12) / len(d12)), "pds_21": float(len(big21) / len(d21)),
            "max_dist": float(min(d12.max(), d21.max()))}


def degenerate_distance(tree: Morphology, lone: Morphology) -> tuple[float, float]:
    """(W, largest distance) of a degenerate comparison: `tree` has edges, `lone` has none (module docstring).

    W = mean distance from the Vaa3D sample points of `tree` to the nearest node of `lone`; when `lone` has
    no node, W = the diagonal of `tree`'s bounding box (its largest extent). Both are finite.
    """
    if len(tree.edges) == 0:
        raise MetricsError("degenerate_distance needs a tree with edges as its first argument")
    if len(lone):
        d = cKDTree(lone.xyz).query(sample_edges(tree.xyz, tree.edges))[0]
        return float(d.mean()), float(d.max())
    extent = float(np.linalg.norm(tree.xyz.max(axis=0) - tree.xyz.min(axis=0)))
    return extent, extent


def neuron_distance(test: Morphology, gold: Morphology, *, threshold: float = 2.0,
                    voxel_size: Sequence[float] | None = None) -> dict[str, float | bool]:
    """ESA, DSA, PDS between two trees exactly as Vaa3D neuron_distance (module docstring for the rules).

    Also returns the directional parts (``esa_12`` = mean test→gold distance, ``esa_21`` gold→test,
    ``pds_12``, ``pds_21``), ``max_dist`` (the smaller of the two directional maxima, as Vaa3D) and
    ``degenerate``: True when exactly one tree has no edges (fewer than 2 nodes or no parent links); then
    PDS = 1 and ESA = DSA = the finite worst value W of the module docstring (never NaN). 0 when neither
    tree has edges.
    """
    keys = ("esa", "dsa", "pds", "esa_12", "esa_21", "pds_12", "pds_21", "max_dist")
    test, gold = _pair_in_units(test, gold, voxel_size)
    n_test, n_gold = len(test.edges), len(gold.edges)
    if n_test == 0 and n_gold == 0:
        return {**dict.fromkeys(keys, 0.0), "degenerate": False}
    if n_test == 0 or n_gold == 0:
        worst, far = degenerate_distance(gold, test) if n_test == 0 else degenerate_distance(test, gold)
        return {"esa": worst, "dsa": worst, "pds": 1.0, "esa_12": worst, "esa_21": worst, "pds_12": 1.0,
                "pds_21": 1.0, "max_dist": far, "degenerate": True}
    d12 = directional_distances(test, gold)
    d21 = directional_distances(gold, test)
    return {**_scores_from_distances(d12, d21, float(threshold)), "degenerate": False}


def _ratio(num: float, den: float, both_empty: bool) -> float:
    """The empty rule of every ratio: 1.0 when both sides are empty, else num / den, 0.0 when den = 0."""
    if both_empty:
        return 1.0
    return float(num / den) if den > 0 else 0.0


def _f1(p: float, r: float, both_empty: bool = False) -> float:
    """Harmonic mean 2PR / (P + R) under the same rule (1.0 when both sides are empty, 0.0 when P + R = 0)."""
    if both_empty:
        return 1.0
    return float(2 * p * r / (p + r)) if p + r > 0 else 0.0


def node_scores(test: Morphology, gold: Morphology, *, threshold: float = 2.0, spacing: float = 1.0,
                voxel_size: Sequence[float] | None = None) -> dict[str, float]:
    """Node precision / recall / F1 at distance `threshold` after resampling both trees to `spacing`.

    precision = #{test nodes with a gold node within threshold} / #test nodes,
    recall = #{gold nodes with a test node within threshold} / #gold nodes, F1 = 2PR / (P + R).
    Empty trees: 1.0 when both are empty, else 0.0 for the undefined ratios.
    """
    if not spacing > 0:  # checked whatever the trees (two empty ones would otherwise score 1.0 with any)
        raise MetricsError(f"node_scores spacing must be positive, got {spacing}")
    test, gold = _pair_in_units(test, gold, voxel_size)
    test = test.resample(spacing) if len(test) else test
    gold = gold.resample(spacing) if len(gold) else gold
    both = len(test) == 0 and len(gold) == 0
    hit_t = hit_g = 0
    if len(test) and len(gold):
        hit_t = int((cKDTree(gold.xyz).query(test.xyz, distance_upper_bound=threshold + 1e-9)[0] <= threshold).sum())
        hit_g = int((cKDTree(test.xyz).query(gold.xyz, distance_upper_bound=threshold + 1e-9)[0] <= threshold).sum())
    p = _ratio(hit_t, len(test), both)
    r = _ratio(hit_g, len(gold), both)
    return {"node_precision": p, "node_recall": r, "node_f1": _f1(p, r, both),
            "test_nodes": len(test), "gold_nodes": len(gold)}


def reconstruction_scores(test: Morphology, gold: Morphology, *, threshold: float = 2.0,
                          voxel_size: Sequence[float] | None = None, spacing: float = 1.0) -> dict[str, float | bool]:
    """`neuron_distance` and `node_scores` in one dict (same threshold and units)."""
    out = neuron_distance(test, gold, threshold=threshold, voxel_size=voxel_size)
    out.update(node_scores(test, gold, threshold=threshold, spacing=spacing, voxel_size=voxel_size))
    return out


# --------------------------------------------------------------------------- voxel metrics
def _masks(pred: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gold = np.asarray(pred) != 0, np.asarray(gold) != 0
    if pred.shape != gold.shape:
        raise MetricsError(f"prediction shape {pred.shape} differs from ground-truth shape {gold.shape}")
    return pred, gold


def dice(pred: np.ndarray, gold: np.ndarray) -> float:
    """Dice = 2|P∩G| / (|P| + |G|) of two masks (non-zero = foreground); 1.0 when both are empty."""
    pred, gold = _masks(pred, gold)
    inter = int(np.count_nonzero(pred & gold))
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(gold))
    return _ratio(2 * inter, total, total == 0)


def skeleton(mask: np.ndarray) -> np.ndarray:
    """Boolean topological skeleton (skimage, Lee's 3D thinning for 3D masks)."""
    from skimage.morphology import skeletonize

    mask = np.asarray(mask) != 0
    if not mask.any():
        return mask
    return skeletonize(mask) != 0


def cldice(pred: np.ndarray, gold: np.ndarray, *, pred_skeleton: np.ndarray | None = None,
           gold_skeleton: np.ndarray | None = None) -> float:
    """clDice = 2 Tprec Tsens / (Tprec + Tsens), Tprec = |S(P)∩G| / |S(P)|, Tsens = |S(G)∩P| / |S(G)|.

    Skeletons can be passed in when already computed. The empty rule: 1.0 when both masks are empty, and
    0.0 when one is (a ratio whose skeleton is empty is 0.0 otherwise).
    """
    pred, gold = _masks(pred, gold)
    both = not pred.any() and not gold.any()
    if both:
        return 1.0
    sp = skeleton(pred) if pred_skeleton is None else np.asarray(pred_skeleton) != 0
    sg = skeleton(gold) if gold_skeleton is None else np.asarray(gold_skeleton) != 0
    t_prec = _ratio(int(np.count_nonzero(sp & gold)), int(np.count_nonzero(sp)), False)
    t_sens = _ratio(int(np.count_nonzero(sg & pred)), int(np.count_nonzero(sg)), False)
    return _f1(t_prec, t_sens)


def overlap_scores(inter: int, n_pred: int, n_gold: int) -> dict[str, float]:
    """Dice, precision and recall from voxel counts (|P∩G|, |P|, |G|) under the empty rule: all 1.0 when
    both masks are empty, and a ratio with a zero denominator is 0.0. For callers that count on their own
    (e.g. torch tensors on a GPU) so that they score exactly as `voxel_scores`."""
    inter, n_pred, n_gold = int(inter), int(n_pred), int(n_gold)
    if not 0 <= inter <= min(n_pred, n_gold):
        raise MetricsError(f"inconsistent voxel counts: |P∩G| = {inter}, |P| = {n_pred}, |G| = {n_gold}")
    both = n_pred == 0 and n_gold == 0
    return {"dice": _ratio(2 * inter, n_pred + n_gold, both), "precision": _ratio(inter, n_pred, both),
            "recall": _ratio(inter, n_gold, both)}


def voxel_scores(pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Dice, clDice, precision and recall of two (Z, Y, X) masks (non-zero = foreground), in registry order;
    the empty rule of the module docstring for each."""
    pred, gold = _masks(pred, gold)
    s = overlap_scores(np.count_nonzero(pred & gold), np.count_nonzero(pred), np.count_nonzero(gold))
    return {"dice": s["dice"], "cldice": cldice(pred, gold), "precision": s["precision"], "recall": s["recall"]}
