"""Benchmark: SWC → ground-truth mask for the largest real morphology, on one core.

Prints the render time of `render_mask` and, as the baseline in the same run, of a straightforward
per-edge loop (bounding box + point-to-capsule distance per edge). Run: `make bench` or
`python -m neurovit.benchmarks.render [--swc FILE] [--voxel-size VZ VY VX]`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from neurovit.data.morphogen import GrowthParams, random_morphology  # noqa: E402
from neurovit.data.render import _prepare, cone_sphere_excess, fit_to_volume, render_mask  # noqa: E402
from neurovit.data.swc import read_swc  # noqa: E402

SHARED = Path(os.environ.get("NEUROVIT_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "morphologies"


def per_edge_loop(m, shape, voxel_size) -> np.ndarray:
    """Baseline: the same geometry, one numpy call chain per edge (no batching across edges)."""
    v, a, b, ra, rb, _ = _prepare(m, voxel_size, None)
    mask = np.zeros(shape, dtype=bool)
    vv = np.asarray(v)
    for i in range(len(a)):
        r = max(ra[i], rb[i])
        lo = np.maximum(np.ceil((np.minimum(a[i], b[i]) - r) / vv).astype(int), 0)
        hi = np.minimum(np.floor((np.maximum(a[i], b[i]) + r) / vv).astype(int), np.asarray(shape) - 1)
        if (hi < lo).any():
            continue
        zz, yy, xx = np.meshgrid(*[np.arange(lo[k], hi[k] + 1) for k in range(3)], indexing="ij")
        p = np.stack([zz.ravel() * vv[0], yy.ravel() * vv[1], xx.ravel() * vv[2]], axis=1)
        n = len(p)
        inside = cone_sphere_excess(p, np.tile(a[i], (n, 1)), np.tile(b[i], (n, 1)), np.full(n, ra[i]),
                                    np.full(n, rb[i])) <= 1e-9
        mask[zz.ravel()[inside], yy.ravel()[inside], xx.ravel()[inside]] = True
    return mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--swc", type=Path, default=None, help="default: the largest file in ../shared/morphologies")
    ap.add_argument("--voxel-size", nargs=3, type=float, default=(2.0, 1.0, 1.0), metavar=("VZ", "VY", "VX"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    vs = tuple(args.voxel_size)
    if args.swc is None and SHARED.is_dir():
        args.swc = max(SHARED.glob("*.swc"), key=lambda f: f.stat().st_size)
    if args.swc is not None:
        m, name = read_swc(args.swc), args.swc.name
    else:
        gp = GrowthParams(max_nodes=20000, stop_rate=0.0005)
        m, name = random_morphology(np.random.default_rng(0), (1000, 1000, 300), gp), "procedural (no shared/)"
    m, shape = fit_to_volume(m, vs, margin=2.0)
    print(f"morphology: {name}: {m.n_nodes} nodes, {m.total_length:.0f} µm of neurites")
    print(f"grid: {shape} (z, y, x) at voxel size {vs} µm (z, y, x) = {np.prod(shape) / 1e6:.0f} M voxels")
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        mask = render_mask(m, shape, vs, connect=False)
        times.append(time.perf_counter() - t0)
    t_fast = min(times)
    t0 = time.perf_counter()
    base = per_edge_loop(m, shape, vs)
    t_base = time.perf_counter() - t0
    same = bool(np.array_equal(base, mask))
    print(f"render_mask (batched, 1 core): {t_fast:.2f} s  ({int(mask.sum())} foreground voxels)")
    print(f"per-edge loop baseline:        {t_base:.2f} s  (identical mask: {same})")
    print(f"speed-up vs baseline:          {t_base / t_fast:.1f}x")


if __name__ == "__main__":
    main()
