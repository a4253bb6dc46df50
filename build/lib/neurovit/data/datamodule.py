"""LightningDataModule: a dataset folder → streams of training blocks; whole volumes for val/test/predict."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from neurovit.data.blocks import BlockDataset, EpochSampler, Volume, WholeVolumeDataset
from neurovit.data.folder import DatasetFolder, ensure_label, open_dataset
from neurovit.data.normalise import Normaliser, Preprocessing
from neurovit.errors import DatasetError


class NeuronDataModule(L.LightningDataModule):
    """Blocks of `block_depth` slices × `block_size` pixels from a `neurovit synth`-style folder.

    Args:
        data_dir: dataset folder (images/, labels/ or swc/, dataset.yaml).
        block_depth: slices per block D (odd; the target is the centre slice).
        block_size: in-plane block side H = W in pixels.
        batch_size: training blocks per batch (per device).
        blocks_per_epoch: training blocks drawn per epoch, over all devices.
        pos_fraction: fraction of blocks centred on a foreground voxel (the rest uniform).
        augment: flips, in-plane 90° turns, intensity/gamma jitter and noise on training blocks.
        num_workers: data-loader worker processes.
        train_fraction: use this fraction of the training volumes (nested: a smaller fraction is a subset
            of a larger one for the same `subset_seed`).
        subset_seed: seed of the volume order used for `train_fraction`.
        percentiles: robust intensity normalisation percentiles per volume (`Normaliser`; saved in every
            checkpoint, so prediction normalises the same way).
        clip: clip normalised intensities to this (lo, hi) range; None = no clipping (saved likewise).
        label_cache: where masks rendered from SWC are cached (default: DATA_DIR/.cache/labels).
        seed: seed of block sampling.
    """

    def __init__(self, data_dir: str, block_depth: int = 5,
                 block_size: int = 100, batch_size: int = 8, blocks_per_epoch: int = 512,
                 pos_fraction: float = 0.5, augment: bool = True, num_workers: int = 0,
                 train_fraction: float = 1.0, subset_seed: int = 0,
                 percentiles: tuple[float, float] = (1.0, 99.8), clip: tuple[float, float] | None = None,
                 label_cache: str | None = None, seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        if not 0.0 < train_fraction <= 1.0:
            raise DatasetError(f"train_fraction must be in (0, 1], got {train_fraction}")
        self.data_dir = Path(data_dir)
        self.normaliser = Normaliser(tuple(percentiles), None if clip is None else tuple(clip))
        self.dataset: DatasetFolder | None = None
        self.train_ds = self.val_ds = self.test_ds = None
        self.sampler: EpochSampler | None = None

    # ------------------------------------------------------------------ setup
    def prepare_data(self) -> None:
        """Render masks from SWC once (rank 0 only), cached on disk."""
        ds = open_dataset(self.data_dir)
        for r in ds.records:
            ensure_label(r, ds, self.hparams.label_cache)

    def _volumes(self, split: str) -> list[Volume]:
        assert self.dataset is not None
        recs = self.dataset.volumes(split)
        if split == "train" and recs:
            order = np.random.default_rng(self.hparams.subset_seed).permutation(len(recs))
            keep = max(1, math.ceil(self.hparams.train_fraction * len(recs)))
            recs = [recs[i] for i in sorted(order[:keep])]
        return [Volume(r.name, r.image, ensure_label(r, self.dataset, self.hparams.label_cache), self.normaliser)
                for r in recs]

    @property
    def preprocessing(self) -> Preprocessing:
        """What the model trained on this data expects: the dataset's voxel size and the normaliser."""
        if self.dataset is None:
            self.dataset = open_dataset(self.data_dir)
        return Preprocessing(self.dataset.voxel_size, self.normaliser)

    @property
    def train_names(self) -> list[str]:
        return [v.name for v in self.train_ds.volumes] if self.train_ds is not None else []

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = open_dataset(self.data_dir)
        h = self.hparams
        if stage in (None, "fit") and self.train_ds is None:
            vols = self._volumes("train")
            if not vols:
                raise DatasetError(f"{self.data_dir}: the dataset has no training volumes")
            self.train_ds = BlockDataset(vols, h.blocks_per_epoch, h.block_depth, (h.block_size, h.block_size),
                                         h.pos_fraction, h.augment, h.seed)
            self.sampler = EpochSampler(h.blocks_per_epoch)
        if stage in (None, "fit", "validate") and self.val_ds is None:
            self.val_ds = WholeVolumeDataset(self._volumes("val"), self.dataset.voxel_size)
        if stage in (None, "test") and self.test_ds is None:
            self.test_ds = WholeVolumeDataset(self._volumes("test"), self.dataset.voxel_size)

    def set_epoch(self, epoch: int) -> None:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(self.train_ds, batch_size=h.batch_size, sampler=self.sampler, drop_last=True,
                          num_workers=h.num_workers, persistent_workers=h.num_workers > 0,
                          pin_memory=False)

    def _whole(self, ds: WholeVolumeDataset | None, split: str) -> DataLoader:
        if ds is None or len(ds) == 0:
            raise DatasetError(f"{self.data_dir}: the dataset has no {split} volumes")
        return DataLoader(ds, batch_size=1, shuffle=False, num_workers=min(self.hparams.num_workers, 2))

    def val_dataloader(self) -> DataLoader:
        return self._whole(self.val_ds, "val")

    def test_dataloader(self) -> DataLoader:
        return self._whole(self.test_ds, "test")

