"""Benchmark: trace a 256×512×512 neuron mask into SWC, then score the traced tree against the gold tree.

Builds a synthetic mask by rendering several procedural neurons (`random_morphology` + `render_mask`) at
voxel size (2, 1, 1) µm, dilated by `--dilate` voxels (default 1: 3–5 voxel thick neurites, as predicted
masks are thicker than the rendered labels), times `neurovit.trace.trace` (best of `--repeats`), then times the reconstruction
metrics (ESA/DSA/PDS + node P/R/F1) of the traced tree against the gold tree and prints their values.
Run: `python -m neurovit.benchmarks.trace [--shape Z Y X] [--neurons N] [--dilate K] [--seed S]`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from neurovit.data.morphogen import GrowthParams, random_morphology
from neurovit.data.render import render_mask
from neurovit.data.swc import Morphology, xyz_to_zyx
from neurovit.metrics import neuron_distance, node_scores
from neurovit.trace import trace


def synthetic_mask(shape: tuple[int, int, int], voxel_size: tuple[float, float, float], n_neurons: int,
                   seed: int, dilate: int = 0) -> tuple[np.ndarray, Morphology]:
    """Union of `n_neurons` rendered procedural neurons (dilated `dilate` times) and their merged tree
    in voxel units."""
    rng = np.random.default_rng(seed)
    extent_xyz = tuple(xyz_to_zyx((np.asarray(shape) - 1) * np.asarray(voxel_size)))
    params = GrowthParams(max_nodes=5000, primary_radius=(1.0, 2.0), z_flatten=0.6)
    mask = np.zeros(shape, dtype=bool)
    trees = []
    for _ in range(n_neurons):
        m = random_morphology(rng, extent_xyz, params)
        mask |= render_mask(m, shape, voxel_size)
        trees.append(m.to_voxels(voxel_size))
    if dilate > 0:
        mask = ndimage.binary_dilation(mask, iterations=dilate)
    offs = np.cumsum([0] + [len(t) for t in trees[:-1]])
    parent = np.concatenate([np.where(t.parent >= 0, t.parent + o, -1) for t, o in zip(trees, offs)])
    gold = Morphology(np.concatenate([t.xyz for t in trees]), np.concatenate([t.radius for t in trees]),
                      np.concatenate([t.types for t in trees]), parent, units="voxel")
    return mask, gold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", nargs=3, type=int, default=(256, 512, 512), metavar=("Z", "Y", "X"))
    ap.add_argument("--voxel-size", nargs=3, type=float, default=(2.0, 1.0, 1.0), metavar=("VZ", "VY", "VX"))
    ap.add_argument("--neurons", type=int, default=6)
    ap.add_argument("--dilate", type=int, default=1, help="binary dilation iterations (default %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    shape, vs = tuple(args.shape), tuple(args.voxel_size)

    t0 = time.perf_counter()
    mask, gold = synthetic_mask(shape, vs, args.neurons, args.seed, args.dilate)
    t_build = time.perf_counter() - t0
    print(f"mask: {shape} (z, y, x) = {np.prod(shape) / 1e6:.0f} M voxels at {vs} µm, {args.neurons} neurons, "
          f"dilated {args.dilate}x, {int(mask.sum())} foreground voxels (built in {t_build:.1f} s)")
    print(f"gold: {gold.n_nodes} nodes, {gold.total_length:.0f} voxel units of neurites")

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        traced = trace(mask, voxel_size=vs)
        times.append(time.perf_counter() - t0)
    s = traced.summary()
    print(f"trace: {min(times):.2f} s (best of {args.repeats}; all: {', '.join(f'{t:.2f}' for t in times)}) -> "
          f"{s['nodes']} nodes, {s['roots']} trees, {s['branch_points']} branch points")

    t0 = time.perf_counter()
    dist = neuron_distance(traced, gold)
    t_dist = time.perf_counter() - t0
    t0 = time.perf_counter()
    nodes = node_scores(traced, gold)
    t_nodes = time.perf_counter() - t0
    print(f"ESA/DSA/PDS: {t_dist:.2f} s -> ESA {dist['esa']:.3f}, DSA {dist['dsa']:.3f}, PDS {dist['pds']:.3f} "
          f"(voxels, threshold 2)")
    print(f"node P/R/F1: {t_nodes:.2f} s -> P {nodes['node_precision']:.3f}, R {nodes['node_recall']:.3f}, "
          f"F1 {nodes['node_f1']:.3f} ({nodes['test_nodes']} vs {nodes['gold_nodes']} resampled nodes)")


if __name__ == "__main__":
    main()
