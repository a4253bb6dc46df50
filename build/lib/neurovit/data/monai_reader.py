"""MONAI reader for 3D TIFF stacks (MONAI has none of its own).

MONAI has no 3D TIFF reader: ``LoadImage()`` finds no reader for ``.tif`` files, ``PILReader`` returns only
the first page of a multi-page TIFF, and ``LoadImage(reader=...)`` silently falls back to its other readers
(PIL included) when the given reader raises in ``read``. ``TiffStackReader`` therefore reads lazily: its
``read`` only returns the paths and all checks run in ``get_data``, outside MONAI's fallback, so a bad file
raises ``TiffError`` instead of silently becoming a 2D image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.data import ImageReader
from monai.transforms import LoadImage, LoadImaged
from monai.utils import MetaKeys, SpaceKeys

from neurovit.data.tiff import TIFF_SUFFIXES, PathLike, VoxelSize, read_stack, read_voxel_size
from neurovit.errors import TiffError

__all__ = ["TiffStackReader", "load_stack_transform"]


class TiffStackReader(ImageReader):
    """MONAI reader for 3D TIFF stacks: always yields (Z, Y, X) data with its spacing and affine, or TiffError."""

    def __init__(self, mmap: bool = False) -> None:
        """Create the reader; mmap=True memory-maps uncompressed files (copy-on-write)."""
        super().__init__()
        self.mmap = mmap

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """Return whether every file name ends in .tif or .tiff."""
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        return bool(names) and all(Path(n).suffix.lower() in TIFF_SUFFIXES for n in names)

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> Path | list[Path]:
        """Return the path(s) to read; loading and every check happen in get_data (never in MONAI's fallback)."""
        if isinstance(data, (str, os.PathLike)):
            return Path(data)
        paths = [Path(p) for p in data]
        return paths[0] if len(paths) == 1 else paths

    def get_data(self, img: Path | Sequence[Path]) -> tuple[np.ndarray, dict]:
        """Return (array, meta): (Z, Y, X), or (N, Z, Y, X) channel-first for several files."""
        paths = [Path(img)] if isinstance(img, (str, os.PathLike)) else [Path(p) for p in img]
        if not paths:
            raise TiffError("TiffStackReader.get_data: no file given; expected one or more 3D TIFF stacks")
        arrays = [read_stack(p, mmap=self.mmap) for p in paths]
        meta = _stack_meta(paths[0], arrays[0].shape, read_voxel_size(paths[0]))
        if len(arrays) == 1:
            return arrays[0], meta
        for path, array in zip(paths[1:], arrays[1:], strict=True):
            if array.shape != arrays[0].shape:
                raise TiffError(
                    f"{path}: shape {array.shape} differs from {arrays[0].shape} of {paths[0]}; "
                    "files loaded together as channels must have the same (Z, Y, X) shape"
                )
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
        return np.stack(arrays, axis=0), meta


def _stack_meta(path: Path, shape: tuple[int, ...], voxel_size: VoxelSize | None) -> dict:
    """Return MONAI metadata for a channel-less (Z, Y, X) stack; spacing is 1 um when unknown."""
    spacing = np.asarray(voxel_size or (1.0, 1.0, 1.0), dtype=np.float64)
    affine = np.diag([*spacing, 1.0])
    return {
        MetaKeys.SPATIAL_SHAPE: np.asarray(shape),
        MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan"),  # MONAI's "no_channel"
        MetaKeys.AFFINE: affine,
        MetaKeys.ORIGINAL_AFFINE: affine.copy(),
        MetaKeys.SPACE: SpaceKeys.RAS,
        "spacing": spacing,
        "filename_or_obj": str(path),
    }


def load_stack_transform(keys: KeysCollection | None = None, **kwargs: Any) -> LoadImage | LoadImaged:
    """Return LoadImage (or LoadImaged for keys) with TiffStackReader, giving (Z, Y, X) or (1, Z, Y, X) images.

    kwargs go to LoadImage/LoadImaged (e.g. ensure_channel_first=True, dtype, image_only=False), except
    mmap, which goes to TiffStackReader.
    """
    reader = TiffStackReader(mmap=kwargs.pop("mmap", False))
    kwargs.setdefault("image_only", True)
    if keys is None:
        return LoadImage(reader=reader, **kwargs)
    return LoadImaged(keys, reader=reader, **kwargs)
