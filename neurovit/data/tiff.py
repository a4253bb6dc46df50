"""Read and write 3D (Z, Y, X) grey-scale TIFF stacks with voxel sizes in micrometres (tifffile only).

The MONAI reader built on these functions lives in `neurovit.data.monai_reader`, so plain TIFF I/O does
not import torch/MONAI.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from neurovit.errors import TiffError

__all__ = [
    "TiffNotFoundError",
    "read_stack",
    "read_voxel_size",
    "write_stack",
]

PathLike = str | os.PathLike[str]
VoxelSize = tuple[float, float, float]

EXPECTED = "expected a 3D (Z, Y, X) grey-scale stack"
WRITABLE_DTYPES = (np.uint8, np.uint16, np.float32)
CHANNEL_AXES = "CS"  # tifffile axis codes: C = channel, S = sample (RGB components)
TIFF_SUFFIXES = (".tif", ".tiff")
UNIT_TO_UM = {
    "um": 1.0, "µm": 1.0, "μm": 1.0, "\\u00b5m": 1.0, "micron": 1.0, "microns": 1.0,
    "micrometer": 1.0, "micrometre": 1.0, "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3,
}  # fmt: skip


class TiffNotFoundError(TiffError, FileNotFoundError):
    """A TIFF path that does not exist (catchable as TiffError and as FileNotFoundError)."""


# ----------------------------------------------------------------------------------------------- reading


def read_stack(path: PathLike, *, mmap: bool = True) -> np.ndarray:
    """Read a 3D (Z, Y, X) grey-scale stack, memory-mapped (copy-on-write) when the file allows it."""
    path = _existing_file(path)
    with _open_tiff(path) as tif:
        series = _first_series(path, tif)
        pick, perm = _stack_layout(path, series, _pages_hint(tif))
        data = _memmap_or_none(path) if mmap else None
        if data is None:
            data = _read_series(path, series)
    return _to_zyx(data, series.get_shape(False), pick, perm)


def read_voxel_size(path: PathLike) -> VoxelSize | None:
    """Return the (z, y, x) voxel size in micrometres from OME-XML or ImageJ metadata, or None when it is
    not recorded (an OME-TIFF without PhysicalSizeZ, or a plain TIFF, counts as unknown)."""
    path = _existing_file(path)
    with _open_tiff(path) as tif:
        if tif.is_ome and tif.ome_metadata:
            return _ome_voxel_size(tif.ome_metadata)
        meta = tif.imagej_metadata
        if not meta:
            return None
        scale = UNIT_TO_UM.get(str(meta.get("unit", "")).strip().lower())
        tags = tif.pages[0].tags
        x, y = _pixel_size(tags.get("XResolution")), _pixel_size(tags.get("YResolution"))
    z = _positive_float(meta.get("spacing", 1.0))  # ImageJ leaves out spacing when it is 1.0
    if scale is None or x is None or y is None or z is None:
        return None
    return (z * scale, y * scale, x * scale)


def _ome_voxel_size(xml: str) -> VoxelSize | None:
    """(z, y, x) µm from the first Image's Pixels PhysicalSize* attributes (OME default unit: µm)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    sizes = []
    for axis in "ZYX":
        value = _positive_float(pixels.get(f"PhysicalSize{axis}"))
        scale = UNIT_TO_UM.get(pixels.get(f"PhysicalSize{axis}Unit", "µm").strip().lower())
        if value is None or scale is None:
            return None
        sizes.append(value * scale)
    return tuple(sizes)  # type: ignore[return-value]


def _existing_file(path: PathLike) -> Path:
    """Return path as a Path, raising TiffError when it is missing or a folder."""
    from neurovit.data.volumes import existing_file

    return existing_file(path, f"{EXPECTED} saved as a multi-page .tif file", TiffError, TiffNotFoundError)


def _open_tiff(path: Path) -> tifffile.TiffFile:
    """Open path with tifffile, raising TiffError when it is not a TIFF file."""
    try:
        return tifffile.TiffFile(path)
    except tifffile.TiffFileError as err:
        raise TiffError(
            f"{path}: not a TIFF file ({err}); {EXPECTED} saved as a multi-page .tif file"
        ) from err
    except Exception as err:  # tifffile raises struct.error, TypeError, KeyError, ... on corrupt headers
        raise _corrupt(path, err) from err


def _corrupt(path: Path, err: Exception) -> TiffError:
    """The one error for a TIFF whose structure tifffile cannot parse (corrupt or truncated file)."""
    return TiffError(f"{path}: corrupt or truncated TIFF ({type(err).__name__}: {str(err)[:100]}); re-export the stack")


def _first_series(path: Path, tif: tifffile.TiffFile) -> tifffile.TiffPageSeries:
    """Return the first image series of an open TIFF, raising TiffError when there is none."""
    try:
        series = tif.series
    except Exception as err:  # corrupt IFDs surface only when tifffile walks the pages
        raise _corrupt(path, err) from err
    if not series:
        raise TiffError(f"{path}: the TIFF holds no image data; {EXPECTED}")
    return series[0]


def _stack_layout(path: Path, series: tifffile.TiffPageSeries, pages_hint: str) -> tuple[tuple, list[int]]:
    """Return (index picking the Z, Y, X axes, their transpose order) or raise TiffError naming the problem."""
    shape, axes = series.get_shape(False), series.get_axes(False)
    found = f"shape {series.shape}, axes '{series.axes}'"
    if 0 in shape:
        raise TiffError(f"{path}: empty stack ({found}); {EXPECTED} with at least one voxel")
    if sum(n > 1 for n in shape) >= 5:
        raise TiffError(
            f"{path}: {len(series.shape)}D data ({found}); {EXPECTED}. "
            "Save each time point, position or channel as its own 3D stack."
        )
    channels = math.prod(n for n, a in zip(shape, axes, strict=True) if a in CHANNEL_AXES)
    if channels > 1:
        kind = "an RGB image" if "S" in axes and channels in (3, 4) else "multi-channel data"
        raise TiffError(
            f"{path}: {kind} with {channels} channels ({found}); {EXPECTED}. "
            "Extract one channel (e.g. with tifffile.imread and indexing) and save it with write_stack."
        )
    try:
        y, x = _yx_axes(axes)
    except TiffError as err:
        raise TiffError(f"{path}: {err} ({found}); {EXPECTED}") from None
    stack = [i for i, a in enumerate(axes) if i not in (y, x) and a not in CHANNEL_AXES and shape[i] > 1]
    if not stack:
        raise TiffError(
            f"{path}: a single 2D image, not a stack ({found}); {EXPECTED}.{pages_hint} "
            "Save the slices as one multi-page TIFF."
        )
    if len(stack) > 1:
        extra = ", ".join(f"{axes[i]}={shape[i]}" for i in stack)
        raise TiffError(
            f"{path}: 4D data with more than one stack axis ({extra}; {found}); {EXPECTED}. "
            "Save each time point or position as its own 3D stack."
        )
    keep = sorted((stack[0], y, x))
    pick = tuple(slice(None) if i in keep else 0 for i in range(len(shape)))
    return pick, [keep.index(i) for i in (stack[0], y, x)]


def _pages_hint(tif: tifffile.TiffFile) -> str:
    """Return a sentence explaining why a multi-page file still reads as one 2D image, or ''."""
    n_pages = len(tif.pages)
    announced = (tif.imagej_metadata or {}).get("images", 1)
    if isinstance(announced, int) and announced > n_pages:
        return (
            f" Its ImageJ metadata announces {announced} images but only {n_pages} page(s) could be read:"
            " the file looks truncated or corrupt."
        )
    return f" The file has {n_pages} pages of differing shape or type." if n_pages > 1 else ""


def _yx_axes(axes: str) -> tuple[int, int]:
    """Return the indices of the Y and X axes (the last two non-channel axes when unlabelled)."""
    if "Y" in axes and "X" in axes:
        return axes.index("Y"), axes.index("X")
    plane = [i for i, a in enumerate(axes) if a not in CHANNEL_AXES]
    if len(plane) < 2:
        raise TiffError(f"no image plane in axes {axes!r}")
    return plane[-2], plane[-1]


def _memmap_or_none(path: Path) -> np.memmap | None:
    """Memory-map the first series copy-on-write, or return None when it is compressed or not contiguous."""
    try:
        return tifffile.memmap(path, series=0, mode="c")
    except Exception:  # compressed, tiled, non-contiguous, truncated or corrupt: decode it instead
        return None


def _read_series(path: Path, series: tifffile.TiffPageSeries) -> np.ndarray:
    """Decode a whole series into memory, raising TiffError for corrupt or truncated data."""
    try:
        return series.asarray()
    except (ValueError, tifffile.TiffFileError) as err:
        raise TiffError(f"{path}: corrupt or truncated TIFF data ({err}); re-export the stack") from err
    except Exception as err:  # AssertionError, KeyError, ... from tifffile on corrupt data
        raise _corrupt(path, err) from err


def _to_zyx(data: np.ndarray, shape: tuple[int, ...], pick: tuple, perm: list[int]) -> np.ndarray:
    """Drop singleton axes and order the rest (Z, Y, X); a view, so a memmap stays a memmap."""
    stack = data.reshape(shape)[pick]
    return stack if perm == [0, 1, 2] else stack.transpose(perm)


def _pixel_size(tag: tifffile.TiffTag | None) -> float | None:
    """Return the pixel size (units per pixel) of an XResolution/YResolution tag, or None."""
    if tag is None or not isinstance(tag.value, tuple) or len(tag.value) != 2 or not tag.value[0]:
        return None
    return _positive_float(tag.value[1] / tag.value[0])


def _positive_float(value: Any) -> float | None:
    """Return value as a finite positive float, or None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


# ----------------------------------------------------------------------------------------------- writing


def write_stack(
    path: PathLike,
    array: np.ndarray,
    *,
    voxel_size: VoxelSize = (1.0, 1.0, 1.0),
    compression: str | None = None,
) -> None:
    """Atomically write a (Z, Y, X) uint8/uint16/float32 stack as an ImageJ hyperstack with its voxel size."""
    path = Path(path)
    data = _check_writable(path, array)
    z, y, x = _check_voxel_size(path, voxel_size)
    if path.is_dir():
        raise TiffError(f"{path}: is a folder; give a file name such as {path / 'stack.tif'}")
    from neurovit.atomic import atomic_open

    with atomic_open(path) as fh:
        _imwrite(path, fh, data, (z, y, x), compression)


def _check_writable(path: Path, array: np.ndarray) -> np.ndarray:
    """Return array as an ndarray, raising TiffError unless it is a non-empty 3D uint8/uint16/float32 stack."""
    data = np.asarray(array)
    if data.dtype.type not in WRITABLE_DTYPES:
        hint = "cast it first, e.g. array.astype(np.float32)" if data.dtype.kind == "f" else "cast it first"
        raise TiffError(f"{path}: cannot write dtype {data.dtype}; use uint8, uint16 or float32 ({hint})")
    if data.ndim != 3:
        raise TiffError(f"{path}: cannot write an array of shape {data.shape}; {EXPECTED}")
    if data.shape[0] < 2 or 0 in data.shape:
        raise TiffError(
            f"{path}: cannot write an array of shape {data.shape}; {EXPECTED} with at least 2 slices "
            "and no empty axis (one slice would read back as a 2D image)"
        )
    if data.shape[2] == 1:
        raise TiffError(
            f"{path}: cannot write an array of shape {data.shape} as an ImageJ TIFF (one pixel wide: it would "
            "read back as a 2D image); write it as .ome.zarr or .v3draw instead"
        )
    return data


def _check_voxel_size(path: Path, voxel_size: Any) -> VoxelSize:
    from neurovit.data.volumes import check_voxel_size

    return check_voxel_size(voxel_size, f"{path}: voxel_size")


def _imwrite(path: Path, fh: Any, data: np.ndarray, voxel_size: VoxelSize, compression: str | None) -> None:
    """Write data to the open file fh as an ImageJ 'ZYX' hyperstack with resolution, spacing and unit um."""
    z, y, x = voxel_size
    metadata = {"axes": "ZYX", "spacing": z, "unit": "um"}
    try:
        tifffile.imwrite(
            fh, data, imagej=True, resolution=(1.0 / x, 1.0 / y), metadata=metadata, compression=compression
        )
    except (ValueError, KeyError, ImportError) as err:
        if compression is None:
            raise
        raise TiffError(
            f"{path}: cannot write with compression={compression!r} ({err}); use None or 'zlib'"
        ) from err
