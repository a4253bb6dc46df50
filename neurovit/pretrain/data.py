"""LightningDataModule of self-supervised pretraining: DINO multi-crop views of images or stack regions.

The views come from lightly's `DINOTransform` (two global crops, `n_local_views` local crops, flips,
colour jitter, blur, solarisation); for stacks the colour parts that mean nothing in grey (saturation, hue,
random grey-scale) are off. Intensities stay in [0, 1] by default (`normalize: null`), the range of the
segmentation model's normalised input, so the first layer sees at fine-tuning what it saw here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from neurovit.errors import DatasetError
from neurovit.pretrain.inputs import INPUTS, ImageFolderInput, StackFolderInput, detect_kind

IMAGENET_NORMALIZE = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


class MultiCropDataset(Dataset):
    """`length` items, each the list of DINO views of one region drawn from `source`.

    The region is drawn with a NumPy generator seeded from torch's RNG and the item's index, so runs are
    reproducible under `seed_everything` and differ between epochs, workers and DDP ranks (which share the
    seed but not the indices).
    """

    def __init__(self, source, transform, length: int):
        self.source, self.transform, self.length = source, transform, int(length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> list[torch.Tensor]:
        # the index is part of the seed: DDP ranks share the global seed but get disjoint indices
        rng = np.random.default_rng([int(torch.randint(0, 2**62, ())), int(index)])
        return self.transform(self.source.sample(rng))


class PretrainDataModule(L.LightningDataModule):
    """Multi-crop views for DINO from a folder of photos or of unlabelled stacks (labels are never read).

    Args:
        data_dir: folder of images (any size; searched recursively) or of 3D stacks (or a dataset folder,
            whose images/ are used).
        kind: "images", "stacks" or "auto" (photos present → images, else stacks).
        splits: with a dataset folder of stacks, read only these splits (e.g. [train]); None = all stacks.
        global_crop_size, local_crop_size: view sides in pixels (the ViT's img_size is the global one).
        n_local_views: local crops per item (DINO: 6–10; fewer on CPU).
        global_crop_scale, local_crop_scale: area fractions of the region each view covers.
        samples_per_epoch: regions drawn per epoch over all devices.
        batch_size: regions per batch per device.
        num_workers: data-loader workers (each opens the files it needs once).
        normalize: None keeps views in [0, 1]; "imagenet" standardises with ImageNet's mean/std (as the
            official DINO weights were trained).
        max_side: images are downscaled to at most this many pixels per side when read.
        region: stacks: side of the region the views are cut from (pixels).
        mip_fraction, max_slab, foreground_bias, tries, percentiles: stacks: see `StackFolderInput`.
    """

    def __init__(self, data_dir: str, kind: Literal["auto", "images", "stacks"] = "auto",
                 splits: list[str] | None = None, global_crop_size: int = 96, local_crop_size: int = 48,
                 n_local_views: int = 4, global_crop_scale: tuple[float, float] = (0.4, 1.0),
                 local_crop_scale: tuple[float, float] = (0.05, 0.4), samples_per_epoch: int = 1024,
                 batch_size: int = 32, num_workers: int = 0, normalize: Literal["imagenet"] | None = None,
                 max_side: int = 512, region: int = 192, mip_fraction: float = 0.5, max_slab: int = 9,
                 foreground_bias: float = 0.8, tries: int = 8, percentiles: tuple[float, float] = (1.0, 99.8)):
        super().__init__()
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        if kind not in ("auto", *INPUTS):
            raise DatasetError(f"data.kind must be auto or one of {', '.join(INPUTS)}, got {kind!r}")
        if global_crop_size < 16 or local_crop_size < 16:
            raise DatasetError("crop sizes must be at least 16 pixels (one ViT patch)")
        if samples_per_epoch < batch_size:
            raise DatasetError(f"data.samples_per_epoch ({samples_per_epoch}) is smaller than data.batch_size "
                               f"({batch_size}): an epoch would have no batch")
        self.source = None
        self.train_ds: MultiCropDataset | None = None

    @property
    def kind(self) -> str:
        k = self.hparams.kind
        return detect_kind(self.data_dir) if k == "auto" else k

    def build_source(self):
        """The input object of `kind` (its files are listed now: a bad folder fails before training)."""
        h = self.hparams
        if self.kind == "images":
            return ImageFolderInput(self.data_dir, max_side=h.max_side)
        return StackFolderInput(self.data_dir, region=h.region, mip_fraction=h.mip_fraction, max_slab=h.max_slab,
                                foreground_bias=h.foreground_bias, tries=h.tries,
                                percentiles=tuple(h.percentiles), splits=list(h.splits) if h.splits else None)

    def transform(self):
        """lightly's DINO multi-crop transform with this module's sizes (grey-safe for stacks)."""
        from lightly.transforms import DINOTransform

        h = self.hparams
        grey = self.kind == "stacks"
        return DINOTransform(
            global_crop_size=h.global_crop_size, global_crop_scale=tuple(h.global_crop_scale),
            local_crop_size=h.local_crop_size, local_crop_scale=tuple(h.local_crop_scale),
            n_local_views=h.n_local_views, vf_prob=0.5 if grey else 0.0, rr_prob=0.5 if grey else 0.0,
            rr_degrees=None, cj_sat=0.0 if grey else 0.4, cj_hue=0.0 if grey else 0.2,
            random_gray_scale=0.0 if grey else 0.2,
            normalize=IMAGENET_NORMALIZE if h.normalize == "imagenet" else None)

    def setup(self, stage: str | None = None) -> None:
        if self.train_ds is None:
            self.source = self.build_source()
            self.train_ds = MultiCropDataset(self.source, self.transform(), self.hparams.samples_per_epoch)

    def describe(self) -> dict:
        """What the backbone was trained on (for its JSON)."""
        if self.source is None:
            self.source = self.build_source()
        return {**self.source.describe(), "global_crop_size": self.hparams.global_crop_size,
                "local_crop_size": self.hparams.local_crop_size, "n_local_views": self.hparams.n_local_views,
                "normalize": self.hparams.normalize}

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        h = self.hparams
        return DataLoader(self.train_ds, batch_size=h.batch_size, shuffle=False, num_workers=h.num_workers,
                          drop_last=True, persistent_workers=h.num_workers > 0)
