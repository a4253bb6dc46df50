"""Dataset folders: volumes, splits and voxel size from `dataset.yaml`, masks rendered from SWC when needed.

A dataset folder (as written by `neurovit synth`) holds `images/NAME.tif`, `labels/NAME.tif` and/or
`swc/NAME.swc`, and `dataset.yaml`. A folder without `dataset.yaml` is accepted too: every
`images/*.tif` is a volume, labels/SWC are matched by name, and the split is drawn from `split_fractions`.
Volumes whose only ground truth is an SWC file get a mask rendered once and cached as a TIFF.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from neurovit.data.volumes import check_voxel_size, list_volumes, open_volume, volume_stem
from neurovit.errors import DatasetError

SPLITS = ("train", "val", "test")


@dataclass
class VolumeRecord:
    """One image stack and its ground truth (label TIFF and/or SWC)."""

    name: str
    image: Path
    label: Path | None
    swc: Path | None
    split: str


@dataclass
class DatasetFolder:
    """An indexed dataset folder; `volumes(split)` lists its records."""

    root: Path
    records: list[VolumeRecord]
    voxel_size: tuple[float, float, float]
    swc_units: str = "voxel"

    def volumes(self, split: str) -> list[VolumeRecord]:
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; expected one of {SPLITS}")
        return [r for r in self.records if r.split == split]


def open_dataset(root: str | Path, *, split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                 seed: int = 0) -> DatasetFolder:
    """Index a dataset folder, checking that every listed file exists (the error names what is missing)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist; create one with `neurovit synth --out {root}`")
    meta_path = root / "dataset.yaml"
    if meta_path.is_file():
        return _from_yaml(root, meta_path)
    return _from_layout(root, split_fractions, seed)


def _from_yaml(root: Path, meta_path: Path) -> DatasetFolder:
    try:
        meta = yaml.safe_load(meta_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DatasetError(f"{meta_path}: not valid YAML: {exc}") from None
    vols = meta.get("volumes")
    if not isinstance(vols, list) or not vols:
        raise DatasetError(f"{meta_path}: needs a non-empty 'volumes' list")
    vs = meta.get("voxel_size_zyx_um")
    records, missing = [], []
    for v in vols:
        name = v.get("name")
        if not name or "image" not in v:
            raise DatasetError(f"{meta_path}: every volume needs 'name' and 'image' (got {v})")
        image = root / v["image"]
        label = root / v["label"] if v.get("label") else None
        swc = root / v["swc"] if v.get("swc") else None
        for p in (image, label, swc):
            if p is not None and not p.exists():
                missing.append(str(p.relative_to(root)))
        if label is None and swc is None:
            raise DatasetError(f"{meta_path}: volume {name!r} has neither 'label' nor 'swc' ground truth")
        split = v.get("split", "train")
        if split not in SPLITS:
            raise DatasetError(f"{meta_path}: volume {name!r} has unknown split {split!r}")
        records.append(VolumeRecord(name, image, label, swc, split))
    if missing:
        raise DatasetError(f"{root}: files listed in dataset.yaml are missing: {', '.join(missing[:10])}")
    if vs is None:
        vs = _voxel_size_of(records[0].image, meta_path)
    return DatasetFolder(root, records, check_voxel_size(vs, f"{meta_path}: voxel_size_zyx_um"),
                         meta.get("swc_units", "voxel"))


def _voxel_size_of(image: Path, where: Path) -> tuple[float, float, float]:
    """The voxel size recorded in an image's metadata; (1, 1, 1) with a warning when there is none."""
    import warnings

    vs = open_volume(image).voxel_size
    if vs is None:
        warnings.warn(f"{where}: no voxel size recorded (dataset.yaml voxel_size_zyx_um or image metadata); "
                      "assuming 1 x 1 x 1 µm. Write it with `neurovit prepare --voxel-size Z Y X`.",
                      UserWarning, stacklevel=3)
        vs = (1.0, 1.0, 1.0)
    return vs


def _from_layout(root: Path, fractions, seed: int) -> DatasetFolder:
    images = list_volumes(root / "images")
    if not images:
        raise DatasetError(f"{root}: no dataset.yaml and no images/NAME.tif (or other image format); expected a "
                           "folder written by `neurovit synth` or `neurovit prepare`, or images/ with labels/ "
                           "or swc/ beside it")

    order = np.random.default_rng(seed).permutation(len(images))
    n_val = max(1, int(round(fractions[1] * len(images)))) if len(images) >= 3 else 0
    n_test = max(1, int(round(fractions[2] * len(images)))) if len(images) >= 3 else 0
    records, unlabeled = [], []
    for rank, k in enumerate(order):
        img = images[k]
        name = volume_stem(img)
        label = next((p for p in list_volumes(root / "labels") if volume_stem(p) == name), None)
        swc = root / "swc" / f"{name}.swc"
        swc = swc if swc.is_file() else None
        if label is None and swc is None:
            unlabeled.append(name)
            continue
        split = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
        records.append(VolumeRecord(name, img, label, swc, split))
    if unlabeled:
        raise DatasetError(f"{root}: no labels/NAME.tif or swc/NAME.swc for: {', '.join(unlabeled[:10])}")
    records.sort(key=lambda r: r.name)
    return DatasetFolder(root, records, _voxel_size_of(images[0], root), "voxel")


def ensure_label(record: VolumeRecord, dataset: DatasetFolder, cache_dir: str | Path | None = None) -> Path:
    """Path of the record's mask TIFF, rendering it from SWC into the cache the first time."""
    if record.label is not None:
        return record.label
    from neurovit.data.render import render_mask
    from neurovit.data.swc import read_swc
    from neurovit.data.tiff import write_stack

    cache = Path(cache_dir) if cache_dir is not None else dataset.root / ".cache" / "labels"
    out = cache / f"{record.name}.tif"
    if out.is_file() and out.stat().st_mtime >= record.swc.stat().st_mtime:
        return out
    shape = open_volume(record.image).shape
    m = read_swc(record.swc, default_units=dataset.swc_units)  # a units: header wins, as in evaluate
    mask = render_mask(m, shape, dataset.voxel_size)
    write_stack(out, mask.astype(np.uint8), voxel_size=dataset.voxel_size)
    return out
