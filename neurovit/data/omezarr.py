"""Read and write 3D (Z, Y, X) grey-scale volumes as OME-Zarr (NGFF) with voxel sizes in micrometres.

Both directions work chunk by chunk, so memory never holds a whole large volume:

* `read_omezarr` returns a lazy array (the zarr array itself, or a thin `OmeZarrView` that drops singleton
  t / c axes and orders the axes z, y, x); slicing it reads only the chunks it touches.
* `write_omezarr` copies any sliceable (Z, Y, X) array (numpy, np.memmap, zarr, h5py, ...) one z-slab of
  `chunks[0]` slices at a time, then builds each pyramid level slab by slab from the previous level.
* `create_omezarr` gives a writable level-0 zarr array to fill piece by piece (e.g. from a sliding-window
  prediction); `commit()` builds the pyramid, writes the metadata and moves the result into place.

Outputs are NGFF 0.4 on zarr format 2 (axes z, y, x of type space, unit micrometer, one `scale` and one
`translation` per level; levels "s0", "s1", ... with nested "/" chunk keys, Blosc-zstd compression): the
version read by the widest range of tools (napari-ome-zarr, Fiji/MoBIE, neuroglancer, webKnossos) and
writable by both zarr-python 2 and 3. Reading accepts NGFF 0.1-0.5 on zarr v2 or v3, including the NGFF 0.5
/ zarr v3 stores `ome_zarr` writes by default.

Why the arrays are not written by `ome_zarr.writer.write_image` / `write_multiscale`: those take the image
(or every pyramid level) as numpy/dask arrays and compute the pyramid with their own down-samplers (resize,
nearest, local mean, zoom; no maximum, which label masks need so thin neurites survive), and they cannot
take level arrays that are already filled. So the level arrays are created and filled here with zarr, slab
by slab, and only the NGFF metadata is written by `ome_zarr.writer.write_multiscales_metadata` (which also
validates it). Reading parses the group attributes (`.zattrs` or `zarr.json`) and opens the level with zarr,
which is lazy by construction; `ome_zarr.reader` would wrap everything in dask arrays and nodes we do not need.

Every write goes to a temporary folder `.NAME.<random>.tmp` beside the output and is renamed into place when
complete; an existing output is replaced only then (moved aside, new one renamed in, old one deleted), and
only when it is itself an OME-Zarr, so a mistyped path never deletes an unrelated folder.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from neurovit.errors import VolumeError

__all__ = [
    "OMEZARR_SUFFIXES",
    "OmeZarrOutput",
    "OmeZarrView",
    "create_omezarr",
    "downsample_yx",
    "is_omezarr",
    "read_omezarr",
    "write_omezarr",
]

PathLike = str | os.PathLike[str]
VoxelSize = tuple[float, float, float]

OMEZARR_SUFFIXES = (".ome.zarr", ".zarr")
EXPECTED = "expected an OME-Zarr (NGFF) image folder holding a 3D (Z, Y, X) grey-scale volume"
NGFF_VERSION = "0.4"  # written version (zarr format 2); see the module docstring
SPATIAL = ("z", "y", "x")
MAX_COARSEST_SIDE = 256  # automatic pyramids stop once the largest in-plane side is at most this
WRITABLE_KINDS = "biuf"  # bool, signed / unsigned integers, floats
UNIT_TO_UM = {
    "angstrom": 1e-4, "picometer": 1e-6, "nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3,
    "centimeter": 1e4, "decimeter": 1e5, "meter": 1e6,
    # common non-NGFF spellings found in the wild
    "nm": 1e-3, "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0, "micrometre": 1.0,
    "mm": 1e3, "millimetre": 1e3, "nanometre": 1e-3,
}  # fmt: skip

_ZARR_MAJOR = int(zarr.__version__.split(".")[0])


# ----------------------------------------------------------------------------------------------- reading


def is_omezarr(path: PathLike) -> bool:
    """True when path is a folder whose zarr group attributes (v2 .zattrs or v3 zarr.json) hold NGFF
    multiscales metadata (also through a bioformats2raw layout, whose first image is series "0")."""
    try:
        return _image_group(Path(path)) is not None
    except OSError:
        return False


def read_omezarr(path: PathLike, level: int = 0) -> tuple[Any, VoxelSize | None, dict]:
    """Open one pyramid level of an OME-Zarr image lazily as a (Z, Y, X) array.

    Returns (array, voxel size (z, y, x) in µm or None when the axes carry no length unit, metadata).
    The array is the zarr array itself when the level is stored as 3D z, y, x, otherwise an `OmeZarrView`;
    both support basic slicing (returning np.ndarray), .shape, .dtype, .ndim and np.asarray(array).
    `level` may be negative (-1 = coarsest). metadata: {"format": "ome-zarr", "version", "path",
    "levels", "level", "dataset" (the level's path in the group), "axes" (stored axis names), "units"
    ({"z", "y", "x"} -> unit as recorded, None when missing), "shapes" and "voxel_sizes" (per level, ZYX),
    "chunks" (of the level, ZYX)}.
    """
    path = Path(path)
    folder, attrs = _require_image(path)
    multiscale = _first_multiscale(path, attrs)
    datasets = multiscale["datasets"]
    n_levels = len(datasets)
    if (
        isinstance(level, bool)
        or not isinstance(level, int | np.integer)
        or not -n_levels <= level < n_levels
    ):
        raise VolumeError(
            f"{path}: no pyramid level {level!r}; this image has {n_levels} level(s), "
            f"use level= one of {list(range(n_levels))} (0 = full resolution, -1 = coarsest)"
        )
    level = int(level) % n_levels
    axes = _axes(path, multiscale, attrs)
    units = {name: _axis_unit(axes[name]) if name in axes else None for name in SPATIAL}

    shapes: list[tuple[int, int, int]] = []
    voxel_sizes: list[VoxelSize | None] = []
    target = None
    for index, dataset in enumerate(datasets):
        array = _open_level(path, folder, dataset)
        zyx, pick, order = _layout(path, array.shape, list(axes))
        shapes.append(zyx)
        voxel_sizes.append(_voxel_size(multiscale, dataset, list(axes), units, order))
        if index == level:
            target = array if pick is None else OmeZarrView(array, pick, order)
    chunks = tuple(int(c) for c in target.chunks)

    metadata = {
        "format": "ome-zarr",
        "version": _version(attrs, multiscale),
        "path": str(path),
        "levels": n_levels,
        "level": level,
        "dataset": str(datasets[level]["path"]),
        "axes": list(axes),
        "units": units,
        "shapes": shapes,
        "voxel_sizes": voxel_sizes,
        "chunks": chunks,
    }
    return target, voxel_sizes[level], metadata


class OmeZarrView:
    """A lazy (Z, Y, X) view of a zarr array stored with extra singleton axes (t, c, ...) and/or another
    spatial order: basic slicing (ints, slices, Ellipsis) reads only the chunks it touches."""

    def __init__(self, array: Any, pick: tuple[int | None, ...], order: tuple[int, int, int]):
        self._array = array
        self._pick = pick  # per stored axis: 0 (a dropped singleton axis) or None (a spatial axis)
        self._order = order  # stored axis index of z, y and x
        self.shape = tuple(int(array.shape[i]) for i in order)
        self.dtype = np.dtype(array.dtype)
        self.chunks = tuple(int(array.chunks[i]) for i in order)

    ndim = 3

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"OmeZarrView(shape={self.shape}, dtype={self.dtype}, chunks={self.chunks})"

    def __getitem__(self, key: Any) -> np.ndarray:
        key = _expand_key(key)
        stored: list[Any] = list(self._pick)
        for axis, position in enumerate(self._order):
            stored[position] = key[axis]
        data = np.asarray(self._array[tuple(stored)])
        kept = [self._order[axis] for axis in range(3) if isinstance(key[axis], slice)]
        ranked = sorted(kept)
        perm = [ranked.index(position) for position in kept]
        return data if perm == sorted(perm) else np.ascontiguousarray(data.transpose(perm))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        data = self[...]
        return data if dtype is None else data.astype(dtype, copy=False)


def _expand_key(key: Any) -> tuple:
    """Return a basic-slicing key as three entries (int or slice), raising IndexError / TypeError."""
    key = key if isinstance(key, tuple) else (key,)
    if sum(k is Ellipsis for k in key) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis in key:
        at = key.index(Ellipsis)
        key = key[:at] + (slice(None),) * (3 - len(key) + 1) + key[at + 1 :]
    if len(key) > 3:
        raise IndexError(f"too many indices for a 3D (Z, Y, X) volume: {len(key)}")
    key = key + (slice(None),) * (3 - len(key))
    for k in key:
        if not isinstance(k, slice | int | np.integer) or isinstance(k, bool):
            raise TypeError(f"only basic slicing (ints, slices, ...) is supported, got {k!r}")
    return tuple(int(k) if isinstance(k, np.integer) else k for k in key)


def _require_image(path: Path) -> tuple[Path, dict]:
    """Return (image group folder, its attributes) or raise VolumeError saying what is wrong."""
    if not path.exists():
        raise VolumeError(f"{path}: no such folder; {EXPECTED} (a .ome.zarr folder)")
    if not path.is_dir():
        raise VolumeError(f"{path}: is a file, not a folder; {EXPECTED} (a .ome.zarr folder)")
    found = _image_group(path)
    if found is None:
        if (path / ".zgroup").is_file() or (path / "zarr.json").is_file() or (path / ".zarray").is_file():
            what = "a plain zarr store without NGFF 'multiscales' metadata"
        else:
            what = "not a zarr store (no .zattrs / zarr.json)"
        raise VolumeError(
            f"{path}: {what}; {EXPECTED}. Convert it with neurovit.data.omezarr.write_omezarr "
            "(or bioformats2raw / ome-zarr) first"
        )
    return found


def _image_group(path: Path) -> tuple[Path, dict] | None:
    """Return (folder, attributes) of the NGFF image at path, following a bioformats2raw layout; else None."""
    if not path.is_dir():
        return None
    attrs = _group_attrs(path)
    if isinstance(attrs.get("multiscales"), list) and attrs["multiscales"]:
        return path, attrs
    if "bioformats2raw.layout" in attrs and (path / "0").is_dir():
        series = _group_attrs(path / "0")
        if isinstance(series.get("multiscales"), list) and series["multiscales"]:
            return path / "0", series
    return None


def _group_attrs(folder: Path) -> dict:
    """Attributes of a zarr v3 (zarr.json) or v2 (.zattrs) group, with NGFF 0.5's "ome" key merged in."""
    attrs: Any = {}
    v3 = _load_json(folder / "zarr.json")
    if isinstance(v3, dict) and v3.get("node_type") == "group":
        attrs = v3.get("attributes") or {}
    elif v3 is None:
        attrs = _load_json(folder / ".zattrs") or {}
    if not isinstance(attrs, dict):
        return {}
    ome = attrs.get("ome")
    return {**attrs, **ome} if isinstance(ome, dict) else attrs


def _load_json(file: Path) -> Any:
    """Parsed JSON of file, or None when it is missing or unreadable."""
    try:
        with open(file, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _first_multiscale(path: Path, attrs: dict) -> dict:
    """Return the first multiscales entry, checked to list at least one dataset with a path."""
    multiscale = attrs["multiscales"][0]
    datasets = multiscale.get("datasets") if isinstance(multiscale, dict) else None
    if (
        not isinstance(datasets, list)
        or not datasets
        or not all(isinstance(d, dict) and isinstance(d.get("path"), str) for d in datasets)
    ):
        raise VolumeError(
            f"{path}: malformed NGFF metadata (multiscales[0] lists no datasets with a 'path'); "
            "re-export the image as OME-Zarr"
        )
    return multiscale


def _version(attrs: dict, multiscale: dict) -> str | None:
    version = multiscale.get("version", attrs.get("version"))
    return None if version is None else str(version)


def _axes(path: Path, multiscale: dict, attrs: dict) -> dict[str, dict]:
    """Return the axes as an ordered {name: axis dict}; NGFF 0.1/0.2 (no axes) are t, c, z, y, x."""
    raw = multiscale.get("axes")
    if raw is None:
        raw = ["t", "c", "z", "y", "x"]
    axes: dict[str, dict] = {}
    for axis in raw if isinstance(raw, list) else []:
        entry = {"name": axis} if isinstance(axis, str) else axis
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or entry["name"] in axes:
            axes = {}
            break
        axes[entry["name"]] = entry
    if not axes:
        raise VolumeError(f"{path}: malformed NGFF 'axes' metadata {raw!r}; re-export the image as OME-Zarr")
    return axes


def _axis_type(axis: dict) -> str | None:
    kind = axis.get("type")
    if kind is None:
        kind = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}.get(axis["name"])
    return kind


def _axis_unit(axis: dict) -> str | None:
    unit = axis.get("unit")
    return unit if isinstance(unit, str) and unit.strip() else None


def _open_level(path: Path, folder: Path, dataset: dict) -> Any:
    """Open the zarr array of one dataset read-only (metadata only; no chunk is read)."""
    location = folder / dataset["path"]
    if not location.is_dir():
        raise VolumeError(
            f"{path}: pyramid level '{dataset['path']}' listed in the metadata is missing; "
            "the store is incomplete, re-export it"
        )
    if _ZARR_MAJOR < 3 and (location / "zarr.json").is_file():
        raise VolumeError(f"{path}: a zarr format 3 store (NGFF 0.5); install zarr>=3 to read it")
    try:
        return zarr.open_array(str(location), mode="r")
    except Exception as err:  # zarr raises assorted types for damaged metadata
        raise VolumeError(
            f"{path}: cannot open pyramid level '{dataset['path']}' ({type(err).__name__}: {err}); "
            "the store is damaged, re-export it"
        ) from err


def _layout(
    path: Path, shape: tuple[int, ...], names: list[str]
) -> tuple[tuple[int, int, int], tuple[int | None, ...] | None, tuple[int, int, int]]:
    """Return (ZYX shape, per-axis pick for a view or None when stored as z, y, x, stored index of z, y, x)."""
    found = f"shape {tuple(shape)}, axes {names}"
    if len(shape) != len(names):
        raise VolumeError(
            f"{path}: metadata lists {len(names)} axes but the array is {len(shape)}D ({found}); "
            "the store is damaged, re-export it"
        )
    sizes = dict(zip(names, shape))
    for name in SPATIAL:
        if name not in sizes:
            raise VolumeError(
                f"{path}: no '{name}' axis ({found}); {EXPECTED}. A 2D image must be saved as a stack"
            )
    for name in names:
        if name in SPATIAL or sizes[name] == 1:
            continue
        if name == "c" or _axis_type({"name": name}) == "channel":
            raise VolumeError(
                f"{path}: multi-channel data with {sizes[name]} channels ({found}); {EXPECTED}. "
                "Extract one channel (e.g. zarr.open_array(level)[0, channel]) and save it with write_omezarr"
            )
        if name == "t":
            raise VolumeError(
                f"{path}: a time series with {sizes[name]} time points ({found}); {EXPECTED}. "
                "Extract one time point and save it with write_omezarr"
            )
        raise VolumeError(
            f"{path}: extra axis '{name}' of size {sizes[name]} ({found}); {EXPECTED}. "
            "Extract one 3D volume and save it with write_omezarr"
        )
    order = tuple(names.index(name) for name in SPATIAL)
    zyx = tuple(int(shape[i]) for i in order)
    if 0 in zyx:
        raise VolumeError(f"{path}: empty volume ({found}); {EXPECTED} with at least one voxel")
    if names == list(SPATIAL):
        return zyx, None, order  # type: ignore[return-value]
    pick = tuple(None if name in SPATIAL else 0 for name in names)
    return zyx, pick, order  # type: ignore[return-value]


def _voxel_size(
    multiscale: dict, dataset: dict, names: list[str], units: dict[str, str | None], order: tuple[int, ...]
) -> VoxelSize | None:
    """Voxel size (z, y, x) in µm from the dataset's scale times any multiscale-wide scale, or None."""
    factors = [UNIT_TO_UM.get(units[name].strip().lower()) if units[name] else None for name in SPATIAL]
    if None in factors:
        return None
    scale = _scale(dataset, len(names))
    top = (
        _scale(multiscale, len(names)) if multiscale.get("coordinateTransformations") else [1.0] * len(names)
    )
    if scale is None or top is None:
        return None
    sizes = tuple(scale[i] * top[i] * f for i, f in zip(order, factors))
    if not all(math.isfinite(s) and s > 0 for s in sizes):
        return None
    return sizes  # type: ignore[return-value]


def _scale(node: dict, ndim: int) -> list[float] | None:
    """The 'scale' vector of node's coordinateTransformations (ones when it has none), or None if malformed."""
    transforms = node.get("coordinateTransformations")
    if transforms is None:
        return None  # NGFF < 0.4: no physical scale recorded
    for transform in transforms if isinstance(transforms, list) else []:
        if isinstance(transform, dict) and transform.get("type") == "scale":
            scale = transform.get("scale")
            if isinstance(scale, list) and len(scale) == ndim:
                try:
                    return [float(v) for v in scale]
                except (TypeError, ValueError):
                    return None
            return None
    return [1.0] * ndim


# ----------------------------------------------------------------------------------------------- writing


def write_omezarr(
    path: PathLike,
    array: Any,
    voxel_size: VoxelSize,
    *,
    chunks: tuple[int, int, int] = (32, 256, 256),
    n_levels: int | None = None,
    labels: bool = False,
    progress: bool = False,
) -> None:
    """Atomically write a (Z, Y, X) array (numpy, np.memmap or anything sliceable) as OME-Zarr.

    Axes z, y, x (type space, unit micrometer), scale = voxel_size (µm) at level 0. The pyramid halves y and
    x (never z) per level: automatically until the largest in-plane side is <= 256, or exactly `n_levels`
    levels (fewer only when y and x are already 1). Level 0 is copied chunks[0] z-slices at a time; each
    further level is computed slab by slab from the previous one, as the mean of 2x2 blocks (rounded for
    integer dtypes) or, with labels=True, their maximum so one-voxel-thin neurites stay visible; every
    level keeps the input dtype. Odd sides round up (the last row / column is averaged with itself).
    """
    path = Path(path)
    shape = _source_shape(path, array)
    dtype = _source_dtype(array)
    with create_omezarr(path, shape, dtype, voxel_size, chunks=chunks) as out:
        target = out.array
        step = out.chunks[0]
        slabs = range(0, shape[0], step)
        for z0 in _progress(slabs, progress, f"{path.name} level 0"):
            slab = np.asarray(array[z0 : z0 + step])
            if slab.shape != (min(step, shape[0] - z0),) + shape[1:]:
                raise VolumeError(
                    f"{path}: the source returned a slab of shape {slab.shape} for z {z0}:{z0 + step} of a "
                    f"{shape} array; pass an array that supports basic slicing"
                )
            target[z0 : z0 + step] = slab
        out.commit(n_levels=n_levels, labels=labels, progress=progress)


def create_omezarr(
    path: PathLike,
    shape: tuple[int, int, int],
    dtype: Any,
    voxel_size: VoxelSize,
    *,
    chunks: tuple[int, int, int] = (32, 256, 256),
    resumable: bool = False,
) -> OmeZarrOutput:
    """Create an OME-Zarr output to fill chunk by chunk: `.array` is a writable level-0 (Z, Y, X) zarr
    array in a temporary folder beside `path`; `.commit()` builds the pyramid, writes the metadata and
    renames it into place; `.abort()` (or an exception inside `with`) removes the temporary folder.

    resumable: the temporary folder is `.NAME.partial` (not random) and is reopened when it exists with
    the same shape, dtype and chunks, so an interrupted fill can go on (`.resumed` says so); several
    processes may open it at once (each writing its own chunks); `abort(keep=True)` leaves it in place."""
    return OmeZarrOutput(path, shape, dtype, voxel_size, chunks=chunks, resumable=resumable)


def partial_path(path: PathLike) -> Path:
    """Where a resumable output of `path` is filled before it is renamed into place: `.NAME.partial`."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


class OmeZarrOutput:
    """An OME-Zarr image being written; see `create_omezarr`.

    Regions are written with `out.array[z0:z1, y0:y1, x0:x1] = block` (write whole chunks where you can:
    a partial chunk write reads the chunk back first). Used as a context manager, leaving the block with
    an exception, or without calling commit(), removes the temporary folder (the latter with a warning).
    After commit(), `.array` is the level-0 array of the final output, opened read-only.
    """

    def __init__(
        self,
        path: PathLike,
        shape: tuple[int, int, int],
        dtype: Any,
        voxel_size: VoxelSize,
        *,
        chunks: tuple[int, int, int] = (32, 256, 256),
        resumable: bool = False,
    ):
        self.path = Path(path)
        self.shape = _check_shape(self.path, shape)
        self.dtype = _check_dtype(self.path, dtype)
        self.voxel_size = _check_voxel_size(self.path, voxel_size)
        self.chunks = _check_chunks(self.path, chunks, self.shape)
        _check_destination(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_path = (partial_path(self.path) if resumable
                         else self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp"))
        self.state = "open"
        self.resumed = resumable and self.tmp_path.exists()
        if self.resumed:
            self._group = zarr.open_group(str(self.tmp_path), mode="r+")
            self.array = self._group["s0"]
            found = (tuple(self.array.shape), np.dtype(self.array.dtype),
                     tuple(self.array.chunks))
            wanted = (self.shape, self.dtype, tuple(min(c, n) for c, n in zip(self.chunks, self.shape)))
            if found != wanted:
                raise VolumeError(f"{self.tmp_path}: an interrupted output with shape/dtype/chunks {found}, not "
                                  f"{wanted}; delete it to start again")
            return
        try:
            self._group = _new_group(self.tmp_path)
            self.array = _new_level(self._group, "s0", self.shape, self.chunks, self.dtype)
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> OmeZarrOutput:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.state == "open":
            self.abort()
            if exc_type is None:
                warnings.warn(
                    f"{self.path}: OME-Zarr output closed without commit(); nothing was written",
                    stacklevel=2,
                )

    def commit(self, n_levels: int | None = None, labels: bool = False, *, progress: bool = False) -> None:
        """Build the pyramid from the filled level 0, write the NGFF metadata and move the result into place
        (replacing an existing OME-Zarr at path only now). On any error the temporary folder is removed."""
        if self.state != "open":
            raise VolumeError(f"{self.path}: this OME-Zarr output was already {self.state}; create a new one")
        try:
            shapes = _level_shapes(self.path, self.shape, n_levels)
            levels = [self.array]
            for index, level_shape in enumerate(shapes[1:], start=1):
                target = _new_level(self._group, f"s{index}", level_shape, self.chunks, self.dtype)
                _downsample_level(
                    levels[-1], target, self.chunks[0], labels, progress, f"{self.path.name} level {index}"
                )
                levels.append(target)
            _write_metadata(self._group, self.path, len(shapes), self.voxel_size, labels)
            _move_into_place(self.tmp_path, self.path)
        except BaseException:
            self.abort()
            raise
        self.state = "committed"
        self.array = zarr.open_array(str(self.path / "s0"), mode="r")

    def abort(self, keep: bool = False) -> None:
        """Remove the temporary folder (no-op after commit or a previous abort); `keep` leaves a resumable
        output's folder in place for the next run."""
        if self.state == "open":
            self.state = "aborted"
            if not keep:
                shutil.rmtree(self.tmp_path, ignore_errors=True)


def _source_shape(path: Path, array: Any) -> tuple[int, int, int]:
    shape = getattr(array, "shape", None)
    if shape is None:
        raise VolumeError(
            f"{path}: cannot write a {type(array).__name__}; pass a (Z, Y, X) array with .shape"
        )
    return _check_shape(path, tuple(shape))


def _source_dtype(array: Any) -> np.dtype:
    dtype = getattr(array, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.asarray(array[0:1]).dtype


def _check_shape(path: Path, shape: Any) -> tuple[int, int, int]:
    try:
        dims = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise VolumeError(
            f"{path}: cannot write shape {shape!r}; expected a 3D (Z, Y, X) grey-scale volume with no empty axis"
        )
    return dims  # type: ignore[return-value]


def _check_dtype(path: Path, dtype: Any) -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError as err:
        raise VolumeError(
            f"{path}: {dtype!r} is not a numpy dtype; use e.g. np.uint16 or np.float32"
        ) from err
    if dtype.kind not in WRITABLE_KINDS:
        raise VolumeError(f"{path}: cannot write dtype {dtype}; use a bool, integer or float dtype")
    return dtype


def _check_voxel_size(path: Path, voxel_size: Any) -> VoxelSize:
    from neurovit.data.volumes import check_voxel_size

    return check_voxel_size(voxel_size, f"{path}: voxel_size")


def _check_chunks(path: Path, chunks: Any, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    try:
        sizes = tuple(int(c) for c in chunks)
    except (TypeError, ValueError):
        sizes = ()
    if len(sizes) != 3 or min(sizes) < 1:
        raise VolumeError(f"{path}: chunks must be three positive integers (z, y, x), got {chunks!r}")
    return tuple(min(c, n) for c, n in zip(sizes, shape))  # type: ignore[return-value]


def _check_destination(path: Path) -> None:
    """Refuse to write over a file or a folder that is not an OME-Zarr image."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise VolumeError(f"{path}: exists and is not a folder; remove it or choose another output path")
    if path.exists() and not is_omezarr(path):
        raise VolumeError(
            f"{path}: exists and is not an OME-Zarr image, refusing to replace it; "
            "remove it or choose another output path"
        )


def _level_shapes(
    path: Path, shape: tuple[int, int, int], n_levels: int | None
) -> list[tuple[int, int, int]]:
    """Level shapes: y and x halved (rounded up) per level, z kept."""
    if n_levels is not None and (isinstance(n_levels, bool) or not isinstance(n_levels, int) or n_levels < 1):
        raise VolumeError(
            f"{path}: n_levels must be a positive integer or None (automatic), got {n_levels!r}"
        )
    shapes = [shape]
    while True:
        z, y, x = shapes[-1]
        if n_levels is None and max(y, x) <= MAX_COARSEST_SIDE:
            break
        if (n_levels is not None and len(shapes) >= n_levels) or (y == 1 and x == 1):
            break
        shapes.append((z, -(-y // 2), -(-x // 2)))
    return shapes


def _downsample_level(source: Any, target: Any, step: int, labels: bool, progress: bool, desc: str) -> None:
    """Fill target from source, step z-slices at a time (each slab is one row of chunks)."""
    for z0 in _progress(range(0, source.shape[0], step), progress, desc):
        target[z0 : z0 + step] = downsample_yx(np.asarray(source[z0 : z0 + step]), labels=labels)


def downsample_yx(slab: np.ndarray, *, labels: bool = False) -> np.ndarray:
    """Halve y and x of a (Z, Y, X) slab: mean of 2x2 blocks (max when labels=True), same dtype; odd sides
    round up by repeating the last row / column."""
    z, y, x = slab.shape
    if y % 2 or x % 2:
        slab = np.pad(slab, ((0, 0), (0, y % 2), (0, x % 2)), mode="edge")
    blocks = slab.reshape(z, slab.shape[1] // 2, 2, slab.shape[2] // 2, 2)
    if labels:
        return blocks.max(axis=(2, 4))
    mean = blocks.mean(axis=(2, 4), dtype=np.float64)
    if slab.dtype.kind == "b":
        return mean >= 0.5
    if slab.dtype.kind in "iu":
        mean += 0.5  # round half up, in place: memory stays one slab plus a quarter slab of float64
        np.floor(mean, out=mean)
        return mean.astype(slab.dtype)  # a mean of in-range integers is in range
    return mean.astype(slab.dtype)


def _write_metadata(group: Any, path: Path, n_levels: int, voxel_size: VoxelSize, labels: bool) -> None:
    """Write NGFF 0.4 multiscales metadata (validated by ome_zarr) for levels s0..s{n-1}."""
    from ome_zarr.format import FormatV04

    with warnings.catch_warnings():  # ome-zarr >= 0.14 warns about its own deprecated Scaler at import
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_multiscales_metadata

    vz, vy, vx = voxel_size
    datasets = []
    for index in range(n_levels):
        factor = 2**index
        datasets.append(
            {
                "path": f"s{index}",
                "coordinateTransformations": [
                    {"type": "scale", "scale": [vz, vy * factor, vx * factor]},
                    # a level-k voxel covers 2^k level-0 voxels: its centre sits (2^k - 1) / 2 of them further
                    {
                        "type": "translation",
                        "translation": [0.0, vy * (factor - 1) / 2, vx * (factor - 1) / 2],
                    },
                ],
            }
        )
    axes = [{"name": name, "type": "space", "unit": "micrometer"} for name in SPATIAL]
    name = path.name
    for suffix in OMEZARR_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    method = "2x2 max in (y, x)" if labels else "2x2 mean in (y, x)"
    write_multiscales_metadata(
        group,
        datasets,
        fmt=FormatV04(),
        axes=axes,
        name=name,
        metadata={"method": f"neurovit.data.omezarr: {method}", "labels": bool(labels)},
    )


def _move_into_place(tmp: Path, path: Path) -> None:
    """Rename the finished tmp folder to path; an existing OME-Zarr there is moved aside first and deleted
    only after the rename succeeded (restored if it failed)."""
    _check_destination(path)
    backup = None
    if path.exists():
        backup = path.with_name(f".{path.name}.{secrets.token_hex(4)}.old")
        os.replace(path, backup)
    try:
        os.replace(tmp, path)
    except BaseException:
        if backup is not None:
            os.replace(backup, path)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _new_group(folder: Path) -> Any:
    """Create an empty zarr format 2 group at folder (which must not exist)."""
    if _ZARR_MAJOR >= 3:
        return zarr.open_group(str(folder), mode="w-", zarr_format=2)
    return zarr.open_group(str(folder), mode="w-")


def _new_level(group: Any, name: str, shape: tuple, chunks: tuple, dtype: np.dtype) -> Any:
    """Create one zarr format 2 level array: chunks clipped to shape, nested '/' keys, Blosc zstd."""
    from numcodecs import Blosc

    chunks = tuple(min(c, n) for c, n in zip(chunks, shape))
    compressor = Blosc(
        cname="zstd", clevel=5, shuffle=Blosc.BITSHUFFLE if dtype.itemsize == 1 else Blosc.SHUFFLE
    )
    fill = False if dtype.kind == "b" else 0
    if _ZARR_MAJOR >= 3:
        return group.create_array(
            name,
            shape=shape,
            chunks=chunks,
            dtype=dtype,
            compressors=compressor,
            chunk_key_encoding={"name": "v2", "separator": "/"},
            fill_value=fill,
        )
    return group.create_dataset(
        name,
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        compressor=compressor,
        dimension_separator="/",
        fill_value=fill,
    )


def _progress(items: Any, enabled: bool, desc: str) -> Any:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="slab", leave=False)
