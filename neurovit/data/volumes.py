"""The one volume I/O layer: every image stack neurovit reads or writes goes through `open_volume`,
`write_volume` or `create_output`, whatever its format.

A volume is a lazily readable (Z, Y, X) grey-scale array, its voxel size (z, y, x) in µm (None when the
file does not record it) and the source metadata. Formats are a registry (`FORMATS`): one entry per
format with its suffixes and functions, so adding a format is one module plus one line here. Names are
the full file name minus the format suffix (`cell.day1.ome.tif` → `cell.day1`), so nothing collides.

| format   | suffixes                      | voxel size from                    | lazy                  | write |
|----------|-------------------------------|------------------------------------|-----------------------|-------|
| TIFF     | .tif .tiff .ome.tif .ome.tiff | OME-XML PhysicalSize*, else ImageJ | memory-mapped if raw  | yes   |
| Vaa3D    | .v3draw                       | not recorded (None)                | memory-mapped         | yes   |
| Vaa3D PBD| .v3dpbd                       | — (clear "convert" error)          | —                     | no    |
| OME-Zarr | .ome.zarr .zarr (folders)     | multiscales scale (any level)      | chunk by chunk (zarr) | yes   |

TIFF and OME-TIFF are read with tifffile (it parses both ImageJ and OME-XML metadata and memory-maps
uncompressed data; bioio would add a plugin stack for the same two formats). OME-Zarr goes through
zarr/ome-zarr (`neurovit.data.omezarr`), Vaa3D raw through a small reader (`neurovit.data.v3draw`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from neurovit.errors import VolumeError

__all__ = [
    "FORMATS",
    "ImageVolume",
    "VolumeFormat",
    "check_voxel_size",
    "create_output",
    "find_format",
    "is_volume_path",
    "list_volumes",
    "open_volume",
    "spacing_differs",
    "volume_stem",
    "write_volume",
]

PathLike = str | os.PathLike[str]
VoxelSize = tuple[float, float, float]
SPACING_TOLERANCE = 0.10  # relative difference per axis above which a stack is resampled to the model's grid


@dataclass(frozen=True)
class VolumeFormat:
    """One input/output format: `read(path, level) -> (lazy ZYX array, voxel size | None, metadata)`,
    `write(path, array, voxel_size)` (atomic) and `create(path, shape, dtype, voxel_size)` (an output
    filled chunk by chunk, see `create_output`), given as "module:function" so imports stay lazy."""

    name: str
    suffixes: tuple[str, ...]
    read: str | None = None
    write: str | None = None
    create: str | None = None
    folder: bool = False  # stored as a directory (OME-Zarr)
    note: str = ""

    def function(self, which: str) -> Callable:
        spec = getattr(self, which)
        if spec is None:
            raise VolumeError(f"{self.name}: cannot {which} this format. {self.note}".strip())
        module, name = spec.split(":")
        return getattr(import_module(module), name)


FORMATS: dict[str, VolumeFormat] = {
    "tiff": VolumeFormat("tiff", (".ome.tiff", ".ome.tif", ".tiff", ".tif"), "neurovit.data.volumes:_read_tiff",
                         "neurovit.data.volumes:_write_tiff", "neurovit.data.volumes:_create_tiff"),
    "v3draw": VolumeFormat("v3draw", (".v3draw",), "neurovit.data.volumes:_read_v3draw",
                           "neurovit.data.volumes:_write_v3draw"),
    "v3dpbd": VolumeFormat("v3dpbd", (".v3dpbd",), "neurovit.data.volumes:_read_v3dpbd",
                           note="Convert it with Vaa3D (File > Save as .v3draw) or Fiji first."),
    "ome-zarr": VolumeFormat("ome-zarr", (".ome.zarr", ".zarr"), "neurovit.data.volumes:_read_omezarr",
                             "neurovit.data.volumes:_write_omezarr", "neurovit.data.volumes:_create_omezarr",
                             folder=True),
}


def _all_suffixes() -> list[tuple[str, VolumeFormat]]:
    """(suffix, format) pairs, longest suffix first (so .ome.tif wins over .tif)."""
    pairs = [(s, f) for f in FORMATS.values() for s in f.suffixes]
    return sorted(pairs, key=lambda p: -len(p[0]))


def supported_suffixes() -> str:
    return ", ".join(sorted({s for f in FORMATS.values() for s in f.suffixes}))


def _match(path: Path) -> tuple[str, VolumeFormat] | None:
    name = path.name.lower()
    for suffix, fmt in _all_suffixes():
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix, fmt
    return None


def find_format(path: PathLike) -> VolumeFormat:
    """The format of `path` by its suffix; VolumeError listing the supported suffixes otherwise."""
    found = _match(Path(path))
    if found is None:
        raise VolumeError(f"{path}: unknown image format; supported: {supported_suffixes()} "
                          "(convert other formats to OME-TIFF, e.g. with Fiji or bioformats2raw)")
    return found[1]


def volume_stem(path: PathLike) -> str:
    """The file name without its format suffix: `cell.day1.ome.tif` → `cell.day1` (any other name: minus
    its last suffix)."""
    path = Path(path)
    found = _match(path)
    return path.name[: -len(found[0])] if found else path.stem


def is_volume_path(path: PathLike) -> bool:
    """True for a non-hidden file (or OME-Zarr folder) whose name has a supported image suffix."""
    path = Path(path)
    found = _match(path)
    if found is None or path.name.startswith("."):
        return False
    return path.is_dir() if found[1].folder else path.is_file()


def list_volumes(folder: PathLike) -> list[Path]:
    """Every image volume directly in `folder` (files and OME-Zarr folders), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if is_volume_path(p))


# ----------------------------------------------------------------------------------------------- volumes
@dataclass
class ImageVolume:
    """A (Z, Y, X) image opened lazily: `array[z0:z1]` reads only those slices (as np.ndarray)."""

    path: Path
    format: str
    array: Any
    voxel_size: VoxelSize | None
    metadata: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return volume_stem(self.path)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    def read(self) -> np.ndarray:
        """The whole volume in memory."""
        return np.asarray(self.array[:])


def open_volume(path: PathLike, *, level: int = 0, voxel_size: Iterable[float] | None = None) -> ImageVolume:
    """Open an image volume of any supported format lazily; `voxel_size` (z, y, x µm) overrides the file's.

    `level` picks a resolution level of a multiscale OME-Zarr (0 = full resolution; other formats have 0).
    Raises VolumeError (one line naming the file and what to do) for anything that is not a 3D grey stack.
    """
    path = Path(path)
    fmt = find_format(path)
    if not path.exists():
        raise VolumeError(f"{path}: no such {'folder' if fmt.folder else 'file'}")
    if level != 0 and fmt.name != "ome-zarr":
        raise VolumeError(f"{path}: only OME-Zarr has resolution levels; got level={level}")
    array, vs, meta = fmt.function("read")(path, level)
    if array.ndim != 3:
        raise VolumeError(f"{path}: expected a 3D (Z, Y, X) grey-scale stack, got shape {tuple(array.shape)}")
    if 0 in tuple(array.shape):
        raise VolumeError(f"{path}: empty stack (shape {tuple(array.shape)})")
    if voxel_size is not None:
        vs = check_voxel_size(voxel_size, f"{path}: voxel size")
        meta = {**meta, "voxel_size_from": "argument"}
    else:
        meta = {**meta, "voxel_size_from": "file" if vs is not None else "unknown"}
    return ImageVolume(path, fmt.name, array, vs, meta)


def existing_file(path: PathLike, expected: str, error: type[VolumeError] = VolumeError,
                  missing: type[VolumeError] | None = None) -> Path:
    """`path` as a Path when it is an existing file; else `missing` (or `error`) for a missing path and
    `error` for a folder, each naming the path and what was `expected` (the format readers' one check)."""
    path = Path(path)
    if not path.exists():
        raise (missing or error)(f"{path}: no such file; {expected}")
    if path.is_dir():
        raise error(f"{path}: is a folder, not a file; {expected}")
    return path


def check_voxel_size(value: Any, what: str = "voxel_size") -> VoxelSize:
    """Three finite positive numbers (z, y, x) in µm, or VolumeError naming `what` (the one voxel-size
    check: readers, writers, tracing, rendering and metrics all call it)."""
    try:
        sizes = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        sizes = ()
    if len(sizes) != 3 or not all(math.isfinite(v) and v > 0 for v in sizes):
        raise VolumeError(f"{what} must be three positive numbers (z, y, x) in µm, got {value!r}")
    return sizes  # type: ignore[return-value]


def spacing_differs(a: Iterable[float], b: Iterable[float], tolerance: float = SPACING_TOLERANCE) -> bool:
    """True when voxel sizes a and b differ by more than `tolerance` (relative) on any axis."""
    return any(abs(x / y - 1.0) > tolerance for x, y in zip(a, b, strict=True))


def write_volume(path: PathLike, array: np.ndarray, *, voxel_size: Iterable[float] | None = (1.0, 1.0, 1.0),
                 labels: bool = False, **kwargs) -> Path:
    """Atomically write a (Z, Y, X) array in the format of `path`'s suffix (temporary name, then rename).

    labels=True: the array is a mask or label image, so formats with a resolution pyramid (OME-Zarr) make
    its coarser levels by maximum, not mean, and one-voxel-thin neurites stay visible in a viewer;
    single-resolution formats (TIFF) write the same file either way."""
    path = Path(path)
    fmt = find_format(path)
    vs = check_voxel_size(voxel_size if voxel_size is not None else (1.0, 1.0, 1.0), f"{path}: voxel size")
    fmt.function("write")(path, np.asarray(array) if not hasattr(array, "shape") else array, vs,
                          **({"labels": True} if labels else {}), **kwargs)
    return path


class VolumeOutput:
    """An output volume filled chunk by chunk (`array[z0:z1] = ...`), then `commit()`ed into place
    atomically or `abort()`ed (temporary files removed). A context manager aborts on an exception."""

    def __init__(self, path: Path, array: Any, commit: Callable[[], None], abort: Callable[[], None]):
        self.path, self.array = path, array
        self._commit, self._abort, self.state = commit, abort, "open"

    @property
    def done(self) -> bool:
        return self.state != "open"

    def commit(self) -> Path:
        """Move the finished volume into place (again: a no-op). After `abort()` there is nothing to
        commit: an error, never a path to a file that does not exist."""
        if self.state == "aborted":
            raise VolumeError(f"{self.path}: this output was aborted and its partial data removed; "
                               "nothing to commit")
        if self.state == "open":
            self._commit()
            self.state = "committed"
        return self.path

    def abort(self) -> None:
        """Remove the partial output (after `commit()`: a no-op, the committed volume stays)."""
        if self.state == "open":
            self._abort()
            self.state = "aborted"

    def __enter__(self) -> VolumeOutput:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def create_output(path: PathLike, shape: tuple[int, int, int], dtype, *,
                  voxel_size: Iterable[float] = (1.0, 1.0, 1.0), labels: bool = False, **kwargs) -> VolumeOutput:
    """A new (Z, Y, X) output of `path`'s format under a temporary name (memory-mapped TIFF, chunked
    OME-Zarr), to fill slab by slab and `commit()`: nothing appears under `path` before that.
    labels=True for masks and label images: see `write_volume`."""
    path = Path(path)
    fmt = find_format(path)
    vs = check_voxel_size(voxel_size, f"{path}: voxel size")
    return fmt.function("create")(path, tuple(int(s) for s in shape), np.dtype(dtype), vs,
                                  **({"labels": True} if labels else {}), **kwargs)


# ----------------------------------------------------------------------------------------------- formats
def _read_tiff(path: Path, level: int):
    from neurovit.data.tiff import read_stack, read_voxel_size

    with_ome = path.name.lower().endswith((".ome.tif", ".ome.tiff"))
    return read_stack(path), read_voxel_size(path), {"format": "ome-tiff" if with_ome else "tiff"}


def _write_tiff(path: Path, array, voxel_size: VoxelSize, *, labels: bool = False, **kwargs) -> None:
    from neurovit.data.tiff import write_stack  # one resolution: a mask is written as any other volume

    write_stack(path, np.asarray(array), voxel_size=voxel_size, **kwargs)


def _create_tiff(path: Path, shape, dtype: np.dtype, voxel_size: VoxelSize, *, labels: bool = False) -> VolumeOutput:
    import secrets  # labels: one resolution, a mask is written as any other volume

    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    z, y, x = voxel_size
    try:
        array = tifffile.memmap(tmp, shape=shape, dtype=dtype, imagej=True, resolution=(1.0 / x, 1.0 / y),
                                metadata={"axes": "ZYX", "spacing": z, "unit": "um"})
        reserve_file(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

    def commit() -> None:
        array.flush()
        os.replace(tmp, path)

    def abort() -> None:
        tmp.unlink(missing_ok=True)

    return VolumeOutput(path, array, commit, abort)


def reserve_file(path: Path) -> None:
    """Allocate a (sparse) file's blocks now, so a full disk is an OSError (ENOSPC) here and not a SIGBUS
    when a memory-mapped page is written later."""
    if not hasattr(os, "posix_fallocate"):  # pragma: no cover - not on Linux
        return
    with open(path, "r+b") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size:
            os.posix_fallocate(fh.fileno(), 0, size)


def _read_v3draw(path: Path, level: int):
    from neurovit.data.v3draw import read_v3draw

    array, meta = read_v3draw(path)
    return array, None, meta


def _write_v3draw(path: Path, array, voxel_size: VoxelSize) -> None:
    from neurovit.data.v3draw import write_v3draw

    write_v3draw(path, np.asarray(array))  # the format records no voxel size


def _read_v3dpbd(path: Path, level: int):
    from neurovit.data.v3draw import read_v3dpbd

    read_v3dpbd(path)  # raises: compressed PBD is not supported
    raise AssertionError("unreachable")  # pragma: no cover


def _read_omezarr(path: Path, level: int):
    from neurovit.data.omezarr import read_omezarr

    return read_omezarr(path, level)


def _write_omezarr(path: Path, array, voxel_size: VoxelSize, **kwargs) -> None:
    from neurovit.data.omezarr import write_omezarr

    write_omezarr(path, array, voxel_size, **kwargs)


def _create_omezarr(path: Path, shape, dtype: np.dtype, voxel_size: VoxelSize, *, labels: bool = False,
                    **kwargs) -> VolumeOutput:
    from neurovit.data.omezarr import create_omezarr

    out = create_omezarr(path, shape, dtype, voxel_size, **kwargs)
    return VolumeOutput(path, out.array, lambda: out.commit(labels=labels), out.abort)
