"""The one intensity normaliser, and the preprocessing record every checkpoint carries.

Training blocks, validation, `neurovit predict`, the Python API and the benchmarks all normalise with a
`Normaliser`; its settings are saved in the checkpoint (`Preprocessing`), so predicting with a model uses
exactly what it was trained with. The map is per volume:

    x ↦ (x − p_lo) / (p_hi − p_lo),   p_lo, p_hi = percentiles `percentiles` of the volume's voxels,

optionally clipped to [clip_lo, clip_hi] afterwards. NaN and ±inf voxels are left out of the
percentiles and mapped to 0 (the background level) instead of spreading through the network; the
callers (prediction, training volumes) count them and warn. Percentiles are exact for volumes of at most
`sample_voxels` voxels; larger (possibly lazy, chunked) volumes are sampled on up to 64 evenly spaced
slices with an in-plane stride, so a whole-brain OME-Zarr is never read whole to normalise it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from neurovit.errors import NeurovitError

MAX_SAMPLE_SLICES = 64


def count_nonfinite(volume: Any, slab: int = 16) -> int:
    """Number of NaN/±inf voxels of a (lazy) volume, read slab by slab; 0 at once for integer types."""
    if np.dtype(volume.dtype).kind not in "fc":
        return 0
    return sum(int(np.count_nonzero(~np.isfinite(np.asarray(volume[z:z + slab]))))
               for z in range(0, int(volume.shape[0]), slab))


def _sample(volume: Any, sample_voxels: int) -> np.ndarray:
    """Finite voxels of `volume` to take percentiles of: all when few enough, else planes × stride."""
    values = _raw_sample(volume, sample_voxels)
    if values.dtype.kind in "fc":
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise NeurovitError("the stack has no finite voxels (all NaN or infinite): nothing to normalise")
    return values


def _raw_sample(volume: Any, sample_voxels: int) -> np.ndarray:
    shape = tuple(int(s) for s in volume.shape)
    n = math.prod(shape)
    if n <= sample_voxels:
        return np.asarray(volume[:]).reshape(-1)
    if len(shape) != 3:
        flat = np.asarray(volume).reshape(-1)
        return flat[:: max(1, n // sample_voxels)]
    zs = np.unique(np.linspace(0, shape[0] - 1, min(shape[0], MAX_SAMPLE_SLICES)).round().astype(int))
    per_plane = max(1, sample_voxels // len(zs))
    stride = max(1, math.ceil(math.sqrt(shape[1] * shape[2] / per_plane)))
    return np.concatenate([np.asarray(volume[int(z), ::stride, ::stride]).reshape(-1) for z in zs])


@dataclass(frozen=True)
class Normaliser:
    """Robust per-volume intensity normalisation (see the module docstring).

    Args:
        percentiles: (low, high) percentiles mapped to 0 and 1.
        clip: optional (lo, hi) range the normalised values are clipped to; None = no clipping.
        sample_voxels: volumes larger than this are sampled (planes × stride) for the percentiles.
    """

    percentiles: tuple[float, float] = (1.0, 99.8)
    clip: tuple[float, float] | None = None
    sample_voxels: int = 2_000_000

    def __post_init__(self):
        lo, hi = (float(p) for p in self.percentiles)
        if not 0.0 <= lo < hi <= 100.0:
            raise NeurovitError(f"normalisation percentiles must satisfy 0 <= low < high <= 100, got "
                                f"{tuple(self.percentiles)}")
        object.__setattr__(self, "percentiles", (lo, hi))
        if self.clip is not None:
            object.__setattr__(self, "clip", (float(self.clip[0]), float(self.clip[1])))

    def range(self, volume: Any) -> tuple[float, float]:
        """(p_lo, p_hi − p_lo) of the volume (scale at least 1e-6)."""
        lo, hi = np.percentile(_sample(volume, self.sample_voxels), self.percentiles)
        return float(lo), float(max(hi - lo, 1e-6))

    def fit(self, volume: Any) -> FittedNormaliser:
        """The map of this volume, to apply to any of its chunks."""
        lo, scale = self.range(volume)
        return FittedNormaliser(lo, scale, self.clip)

    def __call__(self, volume: Any) -> np.ndarray:
        """A whole volume (or image) normalised in memory as float32."""
        return self.fit(volume)(volume)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["percentiles"] = list(self.percentiles)
        d["clip"] = None if self.clip is None else list(self.clip)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Normaliser:
        clip = d.get("clip")
        return cls(tuple(d.get("percentiles", (1.0, 99.8))), None if clip is None else tuple(clip),
                   int(d.get("sample_voxels", 2_000_000)))


@dataclass(frozen=True)
class FittedNormaliser:
    """x ↦ clip((x − offset) / scale) for one volume; applied chunk by chunk."""

    offset: float
    scale: float
    clip: tuple[float, float] | None = None

    def __call__(self, raw: Any) -> np.ndarray:
        out = (np.asarray(raw, dtype=np.float32) - np.float32(self.offset)) / np.float32(self.scale)
        bad = ~np.isfinite(out)
        if bad.any():  # NaN/inf voxels (or overflow) → the low percentile: background (see NONFINITE_RULE)
            out[bad] = 0.0
        if self.clip is not None:
            np.clip(out, self.clip[0], self.clip[1], out=out)
        return out


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects of its input: the voxel size it was trained at (z, y, x µm; None if unknown)
    and its normaliser. Saved in every checkpoint under `CHECKPOINT_KEY`."""

    voxel_size: tuple[float, float, float] | None = None
    normaliser: Normaliser = field(default_factory=Normaliser)

    def to_dict(self) -> dict:
        return {"voxel_size_zyx_um": None if self.voxel_size is None else list(self.voxel_size),
                "normalisation": self.normaliser.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        vs = d.get("voxel_size_zyx_um")
        return cls(None if vs is None else tuple(float(v) for v in vs),
                   Normaliser.from_dict(d.get("normalisation") or {}))


CHECKPOINT_KEY = "neurovit_preprocessing"
NONFINITE_RULE = ("NaN or infinite voxels are left out of the percentiles and set to the low percentile "
                  "(0 after normalisation: background)")
