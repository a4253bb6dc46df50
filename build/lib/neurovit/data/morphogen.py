"""Procedural neuron morphologies: branching random growth with tapering radii (no external data needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurovit.data.swc import BASAL, SOMA, Morphology


@dataclass
class GrowthParams:
    """Parameters of the random-growth model (lengths in µm).

    Each primary neurite starts at the soma surface and grows in steps of `step`; its direction is a
    persistent random walk (`persistence` in [0, 1): weight of the previous direction) whose z
    component is damped by `z_flatten` (light-microscopy volumes are thin in z). A tip branches with
    probability `branch_rate` per µm into two children at `branch_angle` degrees apart (radii × 0.8),
    stops with probability `stop_rate` per µm, when the radius tapers (× `taper` per µm) below
    `min_radius`, or when it leaves the volume (so neurites also run out of the image, as in real data).
    """

    n_primary: tuple[int, int] = (2, 5)
    soma_radius: tuple[float, float] = (3.0, 5.0)
    primary_radius: tuple[float, float] = (0.8, 1.5)
    step: float = 1.0
    persistence: float = 0.9
    z_flatten: float = 0.35
    branch_rate: float = 0.015
    branch_angle: tuple[float, float] = (25.0, 70.0)
    stop_rate: float = 0.002
    taper: float = 0.997
    min_radius: float = 0.3
    max_nodes: int = 6000


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _random_direction(rng: np.random.Generator, z_flatten: float) -> np.ndarray:
    d = rng.normal(size=3)
    d[2] *= z_flatten
    return _unit(d)


def _rotate_away(rng: np.random.Generator, d: np.ndarray, angle_deg: float) -> np.ndarray:
    """A unit vector at `angle_deg` from d, in a random plane containing d."""
    perp = _unit(np.cross(d, rng.normal(size=3)))
    a = np.deg2rad(angle_deg)
    return _unit(np.cos(a) * d + np.sin(a) * perp)


def random_morphology(rng: np.random.Generator, extent_xyz: tuple[float, float, float],
                      params: GrowthParams | None = None, soma_xyz: np.ndarray | None = None) -> Morphology:
    """Grow one neuron inside the box [0, extent] (x, y, z µm); the soma is near the box centre by default."""
    p = params or GrowthParams()
    ext = np.asarray(extent_xyz, dtype=np.float64)
    if soma_xyz is None:
        soma_xyz = ext * rng.uniform(0.3, 0.7, size=3)
    soma_r = rng.uniform(*p.soma_radius)
    xyz, rad, typ, par = [np.asarray(soma_xyz, float)], [soma_r], [SOMA], [-1]
    tips = []  # (position, direction, radius, parent index)
    for _ in range(rng.integers(p.n_primary[0], p.n_primary[1] + 1)):
        d = _random_direction(rng, p.z_flatten)
        tips.append((xyz[0] + d * soma_r, d, rng.uniform(*p.primary_radius), 0))
    step_taper = p.taper ** p.step
    while tips and len(xyz) < p.max_nodes:
        pos, d, r, parent = tips.pop()
        while len(xyz) < p.max_nodes:
            noise = _random_direction(rng, p.z_flatten)
            d = _unit(p.persistence * d + (1 - p.persistence) * noise)
            d[2] *= 0.5 + 0.5 * p.z_flatten  # keep drifting back towards the imaging plane
            d = _unit(d)
            pos = pos + p.step * d
            if (pos < 0).any() or (pos > ext).any():
                break  # leaves the volume
            r = r * step_taper
            xyz.append(pos)
            rad.append(r)
            typ.append(BASAL)
            par.append(parent)
            parent = len(xyz) - 1
            if r < p.min_radius or rng.random() < p.stop_rate * p.step:
                break
            if rng.random() < p.branch_rate * p.step:
                half = rng.uniform(*p.branch_angle) / 2
                tips.append((pos, _rotate_away(rng, d, half), r * 0.8, parent))
                d = _rotate_away(rng, d, half)
                r = r * 0.8
    return Morphology(np.array(xyz), np.array(rad), np.array(typ), np.array(par), units="um",
                      source="neurovit procedural growth", header=[])
