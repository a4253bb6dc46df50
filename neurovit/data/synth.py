"""Synthetic light microscopy: a forward model from morphology to image, and the `synth` dataset writer."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy import ndimage

from neurovit.data.morphogen import GrowthParams, random_morphology
from neurovit.data.render import fit_to_volume, render_segment_ids
from neurovit.data.swc import Morphology, read_swc, write_swc, xyz_to_zyx
from neurovit.data.tiff import write_stack
from neurovit.errors import DatasetError


@dataclass
class MicroscopeParams:
    """Forward model of a fluorescence microscope (photon counts; lengths in µm).

    - Brightness: each unbranched section gets a log-normal factor (σ = `branch_sigma`); along a
      neurite it varies smoothly (AR(1) over ~1 µm nodes, correlation `along_corr`, σ = `along_sigma`).
    - Gaps: with rate `gap_rate` per µm a stretch of `gap_length` µm is dimmed to `gap_level` (labels
      keep it: annotators trace through gaps).
    - PSF: anisotropic Gaussian with σ (z, y, x) = `psf_sigma` µm, σz > σxy.
    - Background: B = `background` photons times a smooth field (relative amplitude `bg_variation`,
      length scale `bg_scale` µm).
    - Signal: peak foreground S chosen so that SNR = (S − B) / √S (as in SWC2IMG) equals a value drawn
      uniformly from `snr`; image = Poisson(B·field + (S − B)·signal) + N(0, `read_noise`) + `offset`,
      clipped to uint16.
    """

    voxel_size: tuple[float, float, float] = (2.0, 1.0, 1.0)
    psf_sigma: tuple[float, float, float] = (1.6, 0.6, 0.6)
    snr: tuple[float, float] = (4.0, 10.0)
    background: float = 60.0
    bg_variation: float = 0.35
    bg_scale: float = 40.0
    branch_sigma: float = 0.35
    along_sigma: float = 0.25
    along_corr: float = 0.9
    gap_rate: float = 0.004
    gap_length: float = 3.0
    gap_level: float = 0.08
    read_noise: float = 3.0
    offset: float = 100.0


def snr_signal_level(snr: float, background: float) -> float:
    """Peak photon count S with (S − B)/√S = snr: S = ((snr + √(snr² + 4B)) / 2)²."""
    root = (snr + np.sqrt(snr * snr + 4.0 * background)) / 2.0
    return float(root * root)


def node_brightness(m: Morphology, p: MicroscopeParams, rng: np.random.Generator) -> np.ndarray:
    """Relative brightness per node: section factor × smooth along-neurite variation × gaps."""
    n = m.n_nodes
    nc = m.n_children
    section_gain = np.exp(rng.normal(0.0, p.branch_sigma, size=n))
    along = rng.normal(0.0, 1.0, size=n)
    gap_start = rng.random(n) < p.gap_rate * _edge_len(m)
    gain = np.empty(n)
    walk = np.empty(n)
    gap_left = np.zeros(n)
    lengths = _edge_len(m)
    a = p.along_corr
    for i in range(n):  # parents come first
        q = m.parent[i]
        if q < 0:
            gain[i], walk[i] = section_gain[i], along[i]
            continue
        new_section = m.parent[q] < 0 or nc[q] >= 2
        gain[i] = section_gain[i] if new_section else gain[q]
        walk[i] = a * walk[q] + np.sqrt(1 - a * a) * along[i]
        gap_left[i] = max(gap_left[q] - lengths[i], p.gap_length if gap_start[i] else 0.0)
    brightness = gain * np.exp(p.along_sigma * walk)
    brightness[gap_left > 0] *= p.gap_level
    return brightness


def _edge_len(m: Morphology) -> np.ndarray:
    out = np.zeros(m.n_nodes)
    has = m.parent >= 0
    out[has] = np.linalg.norm(m.xyz[has] - m.xyz[m.parent[has]], axis=1)
    return out


def smooth_field(shape, voxel_size, scale_um: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-max-ish smooth random field (Gaussian-filtered noise on a coarse grid)."""
    coarse = tuple(max(2, int(np.ceil(s * v / scale_um)) + 2) for s, v in zip(shape, voxel_size))
    noise = ndimage.gaussian_filter(rng.normal(size=coarse), 1.0)
    zoom = [s / c for s, c in zip(shape, coarse)]
    field = ndimage.zoom(noise, zoom, order=1)[: shape[0], : shape[1], : shape[2]]
    field = np.pad(field, [(0, s - f) for s, f in zip(shape, field.shape)], mode="edge")
    return field / max(float(np.abs(field).max()), 1e-12)


def simulate(m: Morphology, shape, p: MicroscopeParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """Image (uint16) and ground-truth mask (uint8) of a µm morphology on a (Z, Y, X) grid; plus facts."""
    if m.units != "um":
        raise DatasetError("simulate() needs a morphology in µm (units='um')")
    m = m.resample(1.0)
    owner = render_segment_ids(m, shape, p.voxel_size)
    mask = owner >= 0
    if not mask.any():
        raise DatasetError("the morphology does not intersect the volume: nothing to image")
    signal = np.where(mask, node_brightness(m, p, rng)[np.maximum(owner, 0)], 0.0).astype(np.float32)
    del owner
    sigma_vox = [s / v for s, v in zip(p.psf_sigma, p.voxel_size)]
    signal = ndimage.gaussian_filter(signal, sigma_vox)
    peak = float(np.percentile(signal[mask], 95))
    signal /= max(peak, 1e-12)
    snr = float(rng.uniform(*p.snr))
    s_level = snr_signal_level(snr, p.background)
    field = 1.0 + p.bg_variation * smooth_field(shape, p.voxel_size, p.bg_scale, rng)
    lam = p.background * field + (s_level - p.background) * signal
    del signal, field
    counts = rng.poisson(np.clip(lam, 0, None)).astype(np.float32)
    counts += rng.normal(0.0, p.read_noise, size=counts.shape).astype(np.float32) + p.offset
    image = np.clip(np.rint(counts), 0, 65535).astype(np.uint16)
    facts = {"snr": round(snr, 3), "signal_photons": round(s_level, 2),
             "foreground_fraction": round(float(mask.mean()), 6)}
    return image, mask.astype(np.uint8), facts


@dataclass
class SynthConfig:
    """What `neurovit synth` writes: procedural neurons (default) or images of an SWC folder."""

    n_volumes: int = 8
    shape: tuple[int, int, int] = (32, 128, 128)
    neurons_per_volume: tuple[int, int] = (1, 2)
    seed: int = 0
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    swc_dir: str | None = None
    max_shape: tuple[int, int, int] | None = (96, 384, 384)
    margin: float = 4.0
    microscope: MicroscopeParams = field(default_factory=MicroscopeParams)
    growth: GrowthParams = field(default_factory=GrowthParams)
    split_names: dict[str, str] | None = None  # SWC name → split, in place of its `split:` header (own splits)


def read_split_file(path: str | Path) -> dict[str, str]:
    """A YAML split file as {name: split}: either `{train: [names], val: [...], test: [...]}` or `{name: split}`."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"split file {path}: cannot read it ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"split file {path}: expected a mapping of train/val/test to names")
    if set(raw) <= {"train", "val", "test"} and all(isinstance(v, list) for v in raw.values()):
        return {str(n): split for split, names in raw.items() for n in names}
    return {str(k): str(v) for k, v in raw.items()}


def _assign_splits(names: list[str], fractions, rng, preset: dict[str, str]) -> dict[str, str]:
    """Split names into train/val/test by `fractions`, honouring `split:` headers where present."""
    free = [n for n in names if n not in preset]
    order = rng.permutation(len(free))
    n = len(free)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    if n >= 3 and fractions[1] > 0:
        n_val = max(n_val, 1)
    if n >= 3 and fractions[2] > 0:
        n_test = max(n_test, 1)
    out = dict(preset)
    for rank, k in enumerate(order):
        out[free[k]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return out


def _crop_to_max_shape(m: Morphology, shape, cfg: SynthConfig):
    """Crop a µm morphology (already fitted to `shape`) to `max_shape` voxels centred on its first root."""
    if cfg.max_shape is None or all(s <= x for s, x in zip(shape, cfg.max_shape)):
        return m, shape
    v = np.asarray(cfg.microscope.voxel_size)
    new_shape = tuple(int(min(s, x)) for s, x in zip(shape, cfg.max_shape))
    centre_zyx = xyz_to_zyx(m.xyz[m.roots[0]]) / v
    lo_zyx = np.clip(np.round(centre_zyx - np.asarray(new_shape) / 2), 0, np.asarray(shape) - new_shape)
    lo_xyz = xyz_to_zyx(lo_zyx * v)
    hi_xyz = xyz_to_zyx((lo_zyx + np.asarray(new_shape) - 1) * v)
    cropped = m.crop(lo_xyz, hi_xyz).translate(-lo_xyz)
    return cropped, new_shape


def _sources(cfg: SynthConfig, rng_for) -> list[tuple[str, Morphology, tuple, str | None]]:
    """(name, µm morphology fitted to its volume, shape, split from header) for each volume to make."""
    out = []
    v = cfg.microscope.voxel_size
    if cfg.swc_dir is not None:
        files = sorted(Path(cfg.swc_dir).glob("*.swc"))
        if not files:
            raise DatasetError(f"no *.swc files in {cfg.swc_dir}")
        for f in files:
            m = read_swc(f)
            split = next((h.split(":", 1)[1].strip() for h in m.header if h.lstrip("# ").startswith("split:")), None)
            fitted, shape = fit_to_volume(m, v, cfg.margin)
            fitted, shape = _crop_to_max_shape(fitted, shape, cfg)
            fitted.source = str(f)
            out.append((f.stem, fitted, shape, split if split in ("train", "val", "test") else None))
        return out
    ext = np.asarray(xyz_to_zyx(np.asarray(cfg.shape) - 1) * xyz_to_zyx(np.asarray(v)), float)
    for i in range(cfg.n_volumes):
        rng = rng_for(i)
        trees = []
        for _ in range(rng.integers(cfg.neurons_per_volume[0], cfg.neurons_per_volume[1] + 1)):
            trees.append(random_morphology(rng, tuple(ext), cfg.growth))
        out.append((f"synth_{i:03d}", _merge(trees), tuple(cfg.shape), None))
    return out


def _merge(trees: list[Morphology]) -> Morphology:
    """One forest from several trees (parent indices shifted)."""
    offs = np.cumsum([0] + [len(t) for t in trees[:-1]])
    parent = np.concatenate([np.where(t.parent >= 0, t.parent + o, -1) for t, o in zip(trees, offs)])
    return Morphology(np.concatenate([t.xyz for t in trees]), np.concatenate([t.radius for t in trees]),
                      np.concatenate([t.types for t in trees]), parent, units="um",
                      source=trees[0].source, header=[])


def synthesize_dataset(out: str | Path, cfg: SynthConfig, *, overwrite: bool = False,
                       progress: bool = True) -> Path:
    """Write images/, labels/, swc/, dataset.yaml and preview.png under `out`; returns `out`.

    Everything is written into a temporary sibling folder first and moved into place at the end, so an
    interrupted run never leaves a half-written dataset. SWC files are in voxel coordinates of their
    image (x = column, y = row, z = slice index; radius in x-voxels).
    """
    from tqdm.auto import tqdm

    from neurovit.viz import save_preview

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DatasetError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    if min(cfg.shape) < 1 or len(cfg.shape) != 3:
        raise DatasetError(f"shape must be three positive sizes (Z, Y, X), got {cfg.shape}")
    if cfg.swc_dir is None and cfg.n_volumes < 1:
        raise DatasetError("n_volumes must be at least 1")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        sources = _sources(cfg, lambda i: np.random.default_rng([cfg.seed, i, 0]))
        preset = {name: s for name, _, _, s in sources if s is not None}
        if cfg.split_names:
            unknown = sorted(set(cfg.split_names) - {name for name, *_ in sources})
            bad = sorted({v for v in cfg.split_names.values()} - {"train", "val", "test"})
            if unknown or bad:
                raise DatasetError(f"split_names: {'unknown volumes ' + str(unknown) if unknown else ''}"
                                   f"{'; splits must be train/val/test, got ' + str(bad) if bad else ''}")
            preset = {**{n: s for n, s in preset.items() if n not in cfg.split_names}, **cfg.split_names}
        splits = _assign_splits([s[0] for s in sources], cfg.split, np.random.default_rng([cfg.seed, 7]), preset)
        volumes, previews = [], []
        v = cfg.microscope.voxel_size
        for i, (name, morph, shape, _) in enumerate(tqdm(sources, desc="synth", unit="vol", disable=not progress)):
            rng = np.random.default_rng([cfg.seed, i, 1])
            try:
                image, mask, facts = simulate(morph, shape, cfg.microscope, rng)
            except DatasetError as exc:
                raise DatasetError(f"{name}: {exc}") from None
            write_stack(tmp / "images" / f"{name}.tif", image, voxel_size=v)
            write_stack(tmp / "labels" / f"{name}.tif", mask, voxel_size=v)
            vox = morph.to_voxels(v)
            vox.source = morph.source
            write_swc(vox, tmp / "swc" / f"{name}.swc", comments=[
                f"coordinates: voxel indices of images/{name}.tif (x = column, y = row, z = slice)",
                "radius: in x-voxels", f"voxel_size_zyx_um: {list(v)}"])
            volumes.append({"name": name, "image": f"images/{name}.tif", "label": f"labels/{name}.tif",
                            "swc": f"swc/{name}.swc", "shape": [int(s) for s in shape], "split": splits[name],
                            "source": morph.source, **facts})
            if len(previews) < 4:
                previews.append((name, image, mask))
        meta = {
            "format": "neurovit-dataset/1",
            "voxel_size_zyx_um": [float(x) for x in v],
            "swc_units": "voxel",
            "split": {k: [vol["name"] for vol in volumes if vol["split"] == k] for k in ("train", "val", "test")},
            "volumes": volumes,
            "generation": {"seed": cfg.seed, "swc_dir": cfg.swc_dir,
                           "microscope": _plain(asdict(cfg.microscope)), "growth": _plain(asdict(cfg.growth)),
                           "shape": list(cfg.shape), "max_shape": None if cfg.max_shape is None else list(cfg.max_shape)},
        }
        (tmp / "dataset.yaml").write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
        save_preview(previews, tmp / "preview.png")
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _plain(d):
    """Tuples → lists so the YAML stays plain."""
    if isinstance(d, dict):
        return {k: _plain(x) for k, x in d.items()}
    if isinstance(d, (list, tuple)):
        return [_plain(x) for x in d]
    return d
