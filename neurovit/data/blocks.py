"""Training blocks: memory-mapped volumes, positive/negative block sampling, augmentation; whole volumes.

A block is D consecutive slices × H × W pixels (D odd); its target is the mask of the centre slice.
Randomness comes from a key (epoch · length + index) rather than from process-global state, so every
DDP rank and data-loader worker draws different, reproducible blocks without extra seeding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from neurovit.data.normalise import NONFINITE_RULE, Normaliser, count_nonfinite
from neurovit.data.volumes import open_volume
from neurovit.errors import DatasetError


class Volume:
    """An image/label pair opened lazily (memory-mapped) with the volume I/O layer, normalised by the
    model's `Normaliser` (fitted to this volume); memory maps are reopened in each process instead of
    being pickled (a pickled memmap is a copy).
    """

    def __init__(self, name: str, image: str | Path, label: str | Path, normaliser: Normaliser | None = None):
        self.name, self.image_path, self.label_path = name, Path(image), Path(label)
        img, lab = open_volume(self.image_path).array, open_volume(self.label_path).array
        if img.shape != lab.shape:
            raise DatasetError(f"{name}: image {self.image_path.name} has shape {img.shape} but its label "
                               f"{self.label_path.name} has shape {lab.shape}")
        self.shape = tuple(int(s) for s in img.shape)
        self.normalise = (normaliser or Normaliser()).fit(img)
        bad = count_nonfinite(img)
        if bad:
            import warnings

            warnings.warn(f"{self.image_path}: {bad} voxel(s) are NaN or infinite: {NONFINITE_RULE}", UserWarning,
                          stacklevel=2)
        self.foreground = np.flatnonzero(np.asarray(lab[:]).reshape(-1) > 0)
        self._img = self._lab = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_img"] = state["_lab"] = None
        return state

    @property
    def image(self):
        if self._img is None:
            self._img = open_volume(self.image_path).array
        return self._img

    @property
    def label(self):
        if self._lab is None:
            self._lab = open_volume(self.label_path).array
        return self._lab

    def block(self, z: int, y0: int, x0: int, depth: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(image block (D, H, W), labels of its slices (D, H, W)); edge slices are repeated, the plane
        padded with 0. The target of a slice-segmentation model is the centre slice, labels[D // 2]."""
        zs = np.clip(np.arange(z - depth // 2, z + depth // 2 + 1), 0, self.shape[0] - 1)
        y1, x1 = y0 + height, x0 + width
        ys, xs = slice(max(y0, 0), min(y1, self.shape[1])), slice(max(x0, 0), min(x1, self.shape[2]))
        img = np.zeros((depth, height, width), dtype=np.float32)
        lab = np.zeros((depth, height, width), dtype=np.float32)
        dy, dx = ys.start - y0, xs.start - x0
        ny, nx = ys.stop - ys.start, xs.stop - xs.start
        if ny > 0 and nx > 0:
            img[:, dy:dy + ny, dx:dx + nx] = self.normalise(self.image[zs, ys, xs])
            lab[:, dy:dy + ny, dx:dx + nx] = self.label[zs, ys, xs] > 0
        return img, lab


def is_positive(index: int, fraction: float) -> bool:
    """Exactly `fraction` of every run of consecutive indices is positive (floor((i+1)f) > floor(i f))."""
    return int(np.floor((index + 1) * fraction)) > int(np.floor(index * fraction))


def augmentations(square: bool):
    """MONAI transforms on {"image": (1, D, H, W), "label": (1, D, H, W)}: flips, 90° turns, intensity, noise."""
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandFlipd,
        RandGaussianNoised,
        RandRotate90d,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    both = ["image", "label"]
    ts = [RandFlipd(both, prob=0.5, spatial_axis=1), RandFlipd(both, prob=0.5, spatial_axis=2),
          RandFlipd(both, prob=0.5, spatial_axis=0)]  # reversing depth keeps the centre slice
    if square:
        ts.append(RandRotate90d(both, prob=0.75, max_k=3, spatial_axes=(1, 2)))
    ts += [RandScaleIntensityd(["image"], factors=0.2, prob=0.5),
           RandShiftIntensityd(["image"], offsets=0.1, prob=0.5),
           RandAdjustContrastd(["image"], gamma=(0.7, 1.5), prob=0.3),
           RandGaussianNoised(["image"], std=0.05, prob=0.3)]
    return Compose(ts)


class BlockDataset(Dataset):
    """Random training blocks; item `key` = epoch · length + index (see `EpochSampler`).

    Items: image (1, D, H, W), label (1, H, W) of the centre slice, label_all (1, D, H, W) of every slice
    (for models that predict all D slices), positive (bool).
    """

    def __init__(self, volumes: Sequence[Volume], length: int, block_depth: int = 5,
                 block_size: tuple[int, int] = (100, 100), pos_fraction: float = 0.5, augment: bool = True,
                 seed: int = 0):
        if block_depth < 1 or block_depth % 2 == 0:
            raise DatasetError(f"block_depth must be a positive odd number, got {block_depth}")
        if not 0.0 <= pos_fraction <= 1.0:
            raise DatasetError(f"pos_fraction must be within [0, 1], got {pos_fraction}")
        if not volumes:
            raise DatasetError("no training volumes")
        self.volumes, self.length = list(volumes), int(length)
        self.depth, self.size = int(block_depth), (int(block_size[0]), int(block_size[1]))
        self.pos_fraction, self.seed = float(pos_fraction), int(seed)
        self.with_fg = [i for i, v in enumerate(self.volumes) if len(v.foreground)]
        self.transform = augmentations(self.size[0] == self.size[1]) if augment else None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int) -> dict:
        key = int(key)
        rng = np.random.default_rng([self.seed, key])
        positive = is_positive(key % self.length, self.pos_fraction) and bool(self.with_fg)
        h, w = self.size
        if positive:
            v = self.volumes[self.with_fg[rng.integers(len(self.with_fg))]]
            z, y, x = np.unravel_index(v.foreground[rng.integers(len(v.foreground))], v.shape)
            y0 = int(y) - int(rng.integers(h // 4, h - h // 4))
            x0 = int(x) - int(rng.integers(w // 4, w - w // 4))
        else:
            v = self.volumes[rng.integers(len(self.volumes))]
            z = int(rng.integers(v.shape[0]))
            y0 = int(rng.integers(max(v.shape[1] - h, 0) + 1))
            x0 = int(rng.integers(max(v.shape[2] - w, 0) + 1))
        img, lab = v.block(int(z), y0, x0, self.depth, h, w)
        item = {"image": torch.from_numpy(img)[None], "label": torch.from_numpy(lab)[None]}
        if self.transform is not None:
            self.transform.set_random_state(seed=int(rng.integers(2**31 - 1)))
            item = self.transform(item)
        labels = _plain_tensor(item["label"])  # (1, D, H, W)
        return {"image": _plain_tensor(item["image"]), "label": labels[:, self.depth // 2],
                "label_all": labels, "positive": positive}


def _plain_tensor(x) -> torch.Tensor:
    """MONAI MetaTensor (or array) → contiguous float32 torch.Tensor without metadata."""
    x = x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)
    return x.float().contiguous()


class EpochSampler(Sampler[int]):
    """Yields epoch · length + i for i < length, so each epoch draws new blocks; DDP shards it evenly.

    The epoch comes from `set_epoch` (called each epoch by the LightningModule) or, failing that, from
    the number of passes made so far.
    """

    def __init__(self, length: int):
        self.length, self.epoch, self._passes = int(length), None, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        epoch = self.epoch if self.epoch is not None else self._passes
        self._passes += 1
        return iter(range(epoch * self.length, (epoch + 1) * self.length))


class WholeVolumeDataset(Dataset):
    """Whole raw volumes for validation/test (the model normalises them with its own normaliser):
    image (1, Z, Y, X) float32, label (1, Z, Y, X), name, voxel_size (z, y, x µm; NaN when unknown)."""

    def __init__(self, volumes: Sequence[Volume], voxel_size: Sequence[float] | None = None):
        self.volumes = list(volumes)
        self.voxel_size = voxel_size

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, i: int) -> dict:
        v = self.volumes[i]
        vs = [float("nan")] * 3 if self.voxel_size is None else [float(x) for x in self.voxel_size]
        return {"image": torch.from_numpy(np.asarray(v.image[:], dtype=np.float32))[None],
                "label": torch.from_numpy(np.asarray(v.label[:]) > 0).float()[None], "name": v.name,
                "voxel_size": torch.tensor(vs, dtype=torch.float64)}
