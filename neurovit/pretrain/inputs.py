"""What self-supervised pretraining reads: a folder of 2D images, or a folder of unlabelled stacks.

An input kind is one entry of `INPUTS` (name → class with ``detect``/``sample``/``describe``); the data
module, the CLI help and the backbone's JSON read it from there. Each `sample(rng)` returns one RGB PIL
image, the region DINO's multi-crop transform (lightly's) cuts its global and local views from.

- ``images``: natural photographs or any other 2D pictures (PNG, JPEG, WebP, BMP), of any size:
  each is downscaled once to at most `max_side` pixels and kept in memory by each data-loader worker.
- ``stacks``: unlabelled 3D volumes in any format of `neurovit.data.volumes` (a plain folder, or a dataset
  folder whose `images/` are read, optionally only some splits; labels and SWC files are never opened).
  A region is a single slice or the maximum-intensity projection of a slab of slices (lightly has no 3D
  sampler: this is the part written here), normalised with the project's `Normaliser` (the same map the
  segmentation model applies), and picked with a foreground bias: of `tries` random regions, the one with
  the most bright pixels is kept with probability `foreground_bias`, so crops are not all background.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from neurovit.errors import DatasetError

# 2D picture formats (TIFF is left to the stacks: in this project a .tif is a 3D volume)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _digest(names: list[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def _to_pil_rgb(grey01: np.ndarray):
    """A [0, 1] float (H, W) image as an 8-bit RGB PIL image (grey replicated: a ViT with 3 input channels,
    as every timm/DINO checkpoint has, whose kernels the 3D transfer sums over RGB)."""
    from PIL import Image

    u8 = (np.clip(grey01, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(u8).convert("RGB")


@dataclass
class ImageFolderInput:
    """2D pictures under `root` (searched recursively), each read once and downscaled to ≤ max_side px."""

    root: Path
    max_side: int = 512
    name: ClassVar[str] = "images"
    files: list[Path] = field(init=False)
    _cache: dict = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self):
        self.root = Path(self.root)
        self.files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                            and not p.name.startswith("."))
        if not self.files:
            raise DatasetError(f"{self.root}: no images ({', '.join(IMAGE_SUFFIXES)}) found; pass a folder of "
                               "photos, or --data.kind stacks for a folder of 3D stacks")

    @staticmethod
    def detect(root: Path) -> int:
        """How many picture files (PNG/JPEG/WebP/BMP) lie under `root`."""
        return sum(1 for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)

    def _load(self, i: int):
        if i not in self._cache:
            from PIL import Image

            path = self.files[i]
            try:
                with Image.open(path) as im:
                    im.draft("RGB", (self.max_side, self.max_side))  # JPEG: decode at a reduced size
                    img = im.convert("RGB")
            except Exception as exc:  # PIL raises many types for broken files
                raise DatasetError(f"{path}: cannot read this image ({type(exc).__name__}: {exc}); remove it "
                                   "from the folder") from None
            img.thumbnail((self.max_side, self.max_side))
            self._cache[i] = img
        return self._cache[i]

    def sample(self, rng: np.random.Generator):
        return self._load(int(rng.integers(len(self.files))))

    def describe(self) -> dict[str, Any]:
        rel = [str(p.relative_to(self.root)) for p in self.files]
        return {"kind": self.name, "folder": str(self.root.resolve()), "n_files": len(rel),
                "files_sha256_16": _digest(rel), "max_side": self.max_side}


@dataclass
class StackFolderInput:
    """Unlabelled 3D stacks: slices and slab MIPs around bright structures, normalised like the model's input.

    Args:
        root: a folder of volumes, or a dataset folder (its `images/`; with dataset.yaml, `splits` picks
            the volumes, e.g. ["train"] so that validation and test neurons are never seen).
        region: side of the square region handed to the multi-crop transform, in pixels (clipped to the
            stack's y/x size).
        mip_fraction: share of regions that are a MIP over a slab of 2..max_slab slices (else one slice).
        foreground_bias: probability that the brightest of `tries` candidate regions is used (else the first).
        percentiles: the normaliser's percentiles (as the segmentation model's `Normaliser`).
    """

    root: Path
    region: int = 192
    mip_fraction: float = 0.5
    max_slab: int = 9
    foreground_bias: float = 0.8
    tries: int = 8
    percentiles: tuple[float, float] = (1.0, 99.8)
    splits: list[str] | None = None
    name: ClassVar[str] = "stacks"
    files: list[Path] = field(init=False)
    _cache: dict = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self):
        self.root = Path(self.root)
        self.files = self._list()
        if not self.files:
            raise DatasetError(f"{self.root}: no image stacks found (TIFF, OME-Zarr, v3draw; or images/ of a "
                               "dataset folder); pass a folder of stacks, or --data.kind images for photos")
        if not 0.0 <= self.foreground_bias <= 1.0 or not 0.0 <= self.mip_fraction <= 1.0:
            raise DatasetError("foreground_bias and mip_fraction must lie in [0, 1]")

    def _list(self) -> list[Path]:
        from neurovit.data.volumes import list_volumes

        if (self.root / "dataset.yaml").is_file() and self.splits:
            from neurovit.data.folder import open_dataset

            ds = open_dataset(self.root)
            return [r.image for s in self.splits for r in ds.volumes(s)]
        if self.splits:
            raise DatasetError(f"{self.root}: splits {self.splits} given but the folder has no dataset.yaml")
        folder = self.root / "images" if (self.root / "images").is_dir() else self.root
        return list_volumes(folder)

    @staticmethod
    def detect(root: Path) -> int:
        """How many stacks lie in `root` (or its images/)."""
        from neurovit.data.volumes import list_volumes

        root = Path(root)
        return len(list_volumes(root / "images" if (root / "images").is_dir() else root))

    def _open(self, i: int):
        """(lazy array, its fitted normaliser, its bright-pixel threshold in normalised units)."""
        if i not in self._cache:
            from neurovit.data.normalise import Normaliser
            from neurovit.data.volumes import open_volume

            vol = open_volume(self.files[i])
            if min(vol.shape[1:]) < 16:
                raise DatasetError(f"{self.files[i]}: y/x size {vol.shape[1:]} is too small to crop from")
            fitted = Normaliser(tuple(self.percentiles)).fit(vol.array)
            self._cache[i] = (vol.array, fitted)
        return self._cache[i]

    def _region(self, i: int, rng: np.random.Generator) -> np.ndarray:
        array, fitted = self._open(i)
        nz, ny, nx = (int(s) for s in array.shape)
        side = min(self.region, ny, nx)
        slab = 1
        if nz > 1 and rng.random() < self.mip_fraction:
            slab = int(rng.integers(2, max(2, min(self.max_slab, nz)) + 1))
        z = int(rng.integers(nz - slab + 1))
        y, x = int(rng.integers(ny - side + 1)), int(rng.integers(nx - side + 1))
        return fitted(np.asarray(array[z:z + slab, y:y + side, x:x + side])).max(axis=0)

    def regions(self, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """One region (normalised, (side, side)) and its foreground score (share of pixels above 0.5)."""
        i = int(rng.integers(len(self.files)))
        n = self.tries if rng.random() < self.foreground_bias else 1
        best, best_score = None, -1.0
        for _ in range(max(1, n)):
            r = self._region(i, rng)
            score = float((r > 0.5).mean())
            if score > best_score:
                best, best_score = r, score
        return best, best_score

    def sample(self, rng: np.random.Generator):
        return _to_pil_rgb(self.regions(rng)[0])

    def describe(self) -> dict[str, Any]:
        names = [str(p.name) for p in self.files]
        return {"kind": self.name, "folder": str(self.root.resolve()), "n_files": len(names),
                "files_sha256_16": _digest(names), "splits": self.splits, "region": self.region,
                "mip_fraction": self.mip_fraction, "max_slab": self.max_slab,
                "foreground_bias": self.foreground_bias, "tries": self.tries, "percentiles": list(self.percentiles),
                "labels_read": False}


# name → input class: a new kind of pretraining input is one class plus one line here
INPUTS: dict[str, type] = {"images": ImageFolderInput, "stacks": StackFolderInput}


def detect_kind(root: str | Path) -> str:
    """"stacks" for a dataset folder (dataset.yaml or images/ with stacks) or a folder of volumes, "images" for
    a folder of pictures; DatasetError if it is neither. A dataset folder's preview.png does not make it a
    folder of photos."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"pretraining folder {root} does not exist")
    is_dataset = (root / "dataset.yaml").is_file() or (root / "images").is_dir()
    if is_dataset and StackFolderInput.detect(root):
        return "stacks"
    if ImageFolderInput.detect(root):
        return "images"
    if StackFolderInput.detect(root):
        return "stacks"
    raise DatasetError(f"{root}: neither pictures ({', '.join(IMAGE_SUFFIXES)}) nor image stacks found; "
                       "set --data.kind images|stacks")
