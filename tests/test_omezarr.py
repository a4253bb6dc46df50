"""OME-Zarr (NGFF) reading and writing: round trips, pyramids, lazy reads, foreign layouts, atomic writes."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

from neurovit.data import omezarr
from neurovit.data.omezarr import (
    OmeZarrView,
    create_omezarr,
    is_omezarr,
    read_omezarr,
    write_omezarr,
)
from neurovit.errors import VolumeError

SHAPE = (6, 40, 50)
CHUNKS = (4, 16, 16)
VOXEL = (2.0, 0.5, 0.5)


@pytest.fixture
def volume() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 60000, SHAPE, dtype=np.uint16)


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary / backup folders the writer may leave beside its output."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def mean_2x2(a: np.ndarray) -> np.ndarray:
    """Reference 2x2 (y, x) mean for even sides, rounded half up for integers."""
    z, y, x = a.shape
    mean = a.reshape(z, y // 2, 2, x // 2, 2).astype(np.float64).mean(axis=(2, 4))
    return np.floor(mean + 0.5).astype(a.dtype) if a.dtype.kind in "iu" else mean.astype(a.dtype)


def ome_writer():
    """ome_zarr.writer, imported without its import-time DeprecationWarning (its own Scaler default)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr import writer
    return writer


def write_foreign(path: Path, data: np.ndarray, axes: str, scale: dict, units: str | None = "micrometer"):
    """Write an image with ome_zarr's own writer and defaults (NGFF 0.5 on zarr v3 with ome-zarr >= 0.15)."""
    spatial = [a for a in axes if a in "zyx"]
    axes_units = None if units is None else dict.fromkeys(spatial, units)
    scale = {**dict.fromkeys(axes, 1.0), **scale}
    ome_writer().write_image(
        data, str(path), axes=axes, scale=scale, axes_units=axes_units, scale_factors=(2,)
    )


# ----------------------------------------------------------------------------------------------- round trips


def test_round_trip_values_voxel_size_and_metadata(tmp_path, volume):
    path = tmp_path / "vol.ome.zarr"
    write_omezarr(path, volume, VOXEL, chunks=CHUNKS)

    assert is_omezarr(path)
    arr, voxel, meta = read_omezarr(path)
    assert arr.shape == SHAPE and arr.dtype == np.uint16 and arr.ndim == 3
    np.testing.assert_array_equal(np.asarray(arr), volume)
    assert voxel == pytest.approx(VOXEL)
    assert meta["format"] == "ome-zarr" and meta["version"] == "0.4"
    assert meta["levels"] == 1 and meta["level"] == 0  # 50 px wide: already <= 256
    assert meta["axes"] == ["z", "y", "x"]
    assert meta["units"] == {"z": "micrometer", "y": "micrometer", "x": "micrometer"}
    assert meta["chunks"] == CHUNKS
    # several chunks really were written (2 z-slabs x 3 x 4 tiles), nested "/" keys as NGFF requires
    chunk_files = [p for p in (path / "s0").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(chunk_files) == 2 * 3 * 4
    assert leftovers(tmp_path) == []


def test_round_trip_from_memmap_float32(tmp_path):
    data = np.random.default_rng(1).random(SHAPE, dtype=np.float32)
    mm = np.lib.format.open_memmap(tmp_path / "src.npy", mode="w+", dtype=np.float32, shape=SHAPE)
    mm[:] = data
    mm.flush()
    write_omezarr(
        tmp_path / "mm.zarr", np.load(tmp_path / "src.npy", mmap_mode="r"), (1.0, 0.25, 0.25), chunks=CHUNKS
    )
    arr, voxel, _ = read_omezarr(tmp_path / "mm.zarr")
    assert arr.dtype == np.float32
    np.testing.assert_array_equal(arr[:], data)
    assert voxel == pytest.approx((1.0, 0.25, 0.25))


def test_pyramid_level_shapes_voxel_sizes_and_mean_values(tmp_path, volume):
    path = tmp_path / "pyr.ome.zarr"
    write_omezarr(path, volume, VOXEL, chunks=CHUNKS, n_levels=3)

    _, _, meta = read_omezarr(path)
    assert meta["levels"] == 3
    assert meta["shapes"] == [(6, 40, 50), (6, 20, 25), (6, 10, 13)]  # odd sides round up
    expected_voxels = [(2.0, 0.5, 0.5), (2.0, 1.0, 1.0), (2.0, 2.0, 2.0)]  # z kept, y and x doubled
    for level, expected in enumerate(expected_voxels):
        arr, voxel, level_meta = read_omezarr(path, level=level)
        assert level_meta["level"] == level and arr.shape == meta["shapes"][level]
        assert voxel == pytest.approx(expected)
        assert level_meta["voxel_sizes"][level] == pytest.approx(expected)
        assert arr.dtype == volume.dtype

    level1 = np.asarray(read_omezarr(path, level=1)[0])
    np.testing.assert_array_equal(level1, mean_2x2(volume))
    # level 2 from level 1 (25 wide, odd): the last column is averaged with itself
    padded = np.pad(level1, ((0, 0), (0, 0), (0, 1)), mode="edge")
    np.testing.assert_array_equal(np.asarray(read_omezarr(path, level=-1)[0]), mean_2x2(padded))


def test_integer_mean_rounds_half_up_and_keeps_dtype():
    slab = np.array([[[1, 2], [3, 4]]], dtype=np.uint8)  # mean 2.5
    out = omezarr.downsample_yx(slab)
    assert out.dtype == np.uint8 and out.tolist() == [[[3]]]
    assert omezarr.downsample_yx(slab, labels=True).tolist() == [[[4]]]


def test_automatic_levels_stop_when_largest_side_at_most_256(tmp_path):
    path = tmp_path / "big.ome.zarr"
    write_omezarr(path, np.zeros((2, 600, 300), np.uint8), (1.0, 1.0, 1.0), chunks=(2, 256, 256))
    _, _, meta = read_omezarr(path)
    assert meta["shapes"] == [(2, 600, 300), (2, 300, 150), (2, 150, 75)]


def test_labels_pyramid_uses_max_so_a_thin_line_survives(tmp_path):
    mask = np.zeros(SHAPE, np.uint8)
    mask[:, 7, 9] = 1  # a one-voxel neurite running along z
    write_omezarr(tmp_path / "lab.zarr", mask, VOXEL, chunks=CHUNKS, n_levels=3, labels=True)
    write_omezarr(tmp_path / "img.zarr", mask, VOXEL, chunks=CHUNKS, n_levels=2, labels=False)

    level1 = read_omezarr(tmp_path / "lab.zarr", level=1)[0][:]
    assert level1.dtype == np.uint8 and level1.sum() == SHAPE[0]
    assert (level1[:, 3, 4] == 1).all()
    assert (read_omezarr(tmp_path / "lab.zarr", level=2)[0][:, 1, 2] == 1).all()
    assert read_omezarr(tmp_path / "img.zarr", level=1)[0][:].max() == 0  # a mean would lose it


# ----------------------------------------------------------------------------------------------- lazy reads


def test_read_is_lazy_and_slices_read_only_their_chunks(tmp_path, volume, monkeypatch):
    path = tmp_path / "lazy.ome.zarr"
    write_omezarr(path, volume, VOXEL, chunks=CHUNKS)

    if not hasattr(zarr.storage, "LocalStore"):  # pragma: no cover - zarr 2
        pytest.skip("chunk-read spy needs zarr >= 3")
    requested: list[str] = []
    original = zarr.storage.LocalStore.get

    async def spy(self, key, *args, **kwargs):
        requested.append(key)
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", spy)

    def chunk_keys() -> list[str]:
        return [k for k in requested if not k.rsplit("/", 1)[-1].startswith((".z", "zarr.json"))]

    arr, _, _ = read_omezarr(path)
    assert not isinstance(arr, np.ndarray)
    assert chunk_keys() == []  # opening reads metadata only

    block = arr[0:4, 0:16, 0:16]
    assert isinstance(block, np.ndarray)
    np.testing.assert_array_equal(block, volume[0:4, 0:16, 0:16])
    assert chunk_keys() == ["0/0/0"]

    requested.clear()
    np.testing.assert_array_equal(arr[5], volume[5])
    np.testing.assert_array_equal(arr[:, 20:30, 40:50], volume[:, 20:30, 40:50])
    # arr[5]: the 3 x 4 tiles of z-chunk 1; then y 20:30 (y-chunk 1) x 40:50 (x-chunks 2, 3) in both z-chunks
    assert len(chunk_keys()) == 3 * 4 + 2 * 1 * 2


# ----------------------------------------------------------------------------------------------- foreign layouts


def test_5d_store_with_singleton_t_c_written_by_ome_zarr_reads_as_zyx(tmp_path, volume):
    path = tmp_path / "five.ome.zarr"
    write_foreign(path, volume[None, None], "tczyx", {"z": 2.0, "y": 0.5, "x": 0.5})

    assert is_omezarr(path)
    arr, voxel, meta = read_omezarr(path)
    assert isinstance(arr, OmeZarrView)
    assert arr.shape == SHAPE and arr.ndim == 3 and arr.dtype == np.uint16 and len(arr) == SHAPE[0]
    assert meta["axes"] == ["t", "c", "z", "y", "x"] and meta["levels"] == 2
    assert voxel == pytest.approx(VOXEL)
    assert meta["voxel_sizes"][1] == pytest.approx((2.0, 1.0, 1.0))
    np.testing.assert_array_equal(np.asarray(arr), volume)
    np.testing.assert_array_equal(arr[:, 3:9, 5:20], volume[:, 3:9, 5:20])
    np.testing.assert_array_equal(arr[2], volume[2])
    np.testing.assert_array_equal(arr[..., 7], volume[..., 7])
    assert arr[1, 2, 3] == volume[1, 2, 3]
    assert np.asarray(arr, dtype=np.float32).dtype == np.float32
    assert read_omezarr(path, level=1)[0].shape == (6, 20, 25)


def test_reordered_spatial_axes_are_returned_as_zyx(tmp_path, volume):
    """A zarr v2 / NGFF 0.4 store with axes c, x, y, z (singleton c): the view transposes."""
    from ome_zarr.format import FormatV04

    path = tmp_path / "xyz.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    stored = volume.transpose(2, 1, 0)[None]  # (c, x, y, z)
    group.create_array("0", shape=stored.shape, chunks=(1, 16, 16, 4), dtype=stored.dtype)[:] = stored
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": n, "type": "space", "unit": "micrometer"} for n in "xyz"
    ]
    ome_writer().write_multiscales_metadata(
        group,
        [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 0.5, 0.5, 2.0]}]}],
        fmt=FormatV04(),
        axes=axes,
    )
    arr, voxel, _ = read_omezarr(path)
    assert arr.shape == SHAPE and arr.chunks == (4, 16, 16)
    assert voxel == pytest.approx(VOXEL)
    np.testing.assert_array_equal(arr[1:5, 10:30, 3:33], volume[1:5, 10:30, 3:33])
    np.testing.assert_array_equal(arr[:, 4], volume[:, 4])
    assert arr[1:5, 10:30, 3:33].flags.c_contiguous


def test_multichannel_and_time_series_are_rejected(tmp_path):
    data = np.zeros((1, 2, 4, 16, 16), np.uint8)
    write_foreign(tmp_path / "c2.zarr", data, "tczyx", {"z": 1.0, "y": 1.0, "x": 1.0})
    with pytest.raises(VolumeError, match=r"c2\.zarr.*multi-channel.*2 channels.*[Ee]xtract one channel"):
        read_omezarr(tmp_path / "c2.zarr")
    write_foreign(
        tmp_path / "t3.zarr", np.zeros((3, 1, 4, 16, 16), np.uint8), "tczyx", {"z": 1.0, "y": 1.0, "x": 1.0}
    )
    with pytest.raises(VolumeError, match=r"t3\.zarr.*time series with 3 time points"):
        read_omezarr(tmp_path / "t3.zarr")


@pytest.mark.parametrize(
    ("unit", "scale", "expected"),
    [
        ("nanometer", {"z": 2000.0, "y": 500.0, "x": 500.0}, VOXEL),
        ("millimeter", {"z": 0.002, "y": 0.0005, "x": 0.0005}, VOXEL),
        ("micrometer", {"z": 2.0, "y": 0.5, "x": 0.5}, VOXEL),
    ],
)
def test_units_are_converted_to_micrometres(tmp_path, unit, scale, expected):
    path = tmp_path / f"{unit}.zarr"
    write_foreign(path, np.zeros((4, 16, 16), np.uint8), "zyx", scale, units=unit)
    _, voxel, meta = read_omezarr(path)
    assert voxel == pytest.approx(expected)
    assert meta["units"] == dict.fromkeys("zyx", unit)


def test_no_unit_gives_no_voxel_size(tmp_path):
    path = tmp_path / "nounit.zarr"
    write_foreign(path, np.zeros((4, 16, 16), np.uint8), "zyx", {"z": 2.0, "y": 0.5, "x": 0.5}, units=None)
    arr, voxel, meta = read_omezarr(path)
    assert arr.shape == (4, 16, 16)
    assert voxel is None and meta["voxel_sizes"] == [None, None]
    assert meta["units"] == {"z": None, "y": None, "x": None}


def test_multiscale_wide_scale_multiplies_the_level_scale(tmp_path, volume):
    path = tmp_path / "top.zarr"
    write_omezarr(path, volume, VOXEL, chunks=CHUNKS)
    attrs = json.loads((path / ".zattrs").read_text())
    attrs["multiscales"][0]["coordinateTransformations"] = [{"type": "scale", "scale": [1.0, 2.0, 3.0]}]
    (path / ".zattrs").write_text(json.dumps(attrs))
    assert read_omezarr(path)[1] == pytest.approx((2.0, 1.0, 1.5))


# ----------------------------------------------------------------------------------------------- read errors


def test_not_omezarr_inputs_raise_volume_error_naming_the_path(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("hi")
    bare = tmp_path / "bare.zarr"
    zarr.open_group(str(bare), mode="w").create_array("x", shape=(4, 4, 4), dtype="u1")
    a_file = tmp_path / "file.zarr"
    a_file.write_text("")

    for path, what in [
        (plain, "not a zarr store"),
        (bare, "plain zarr store without NGFF"),
        (tmp_path / "missing.ome.zarr", "no such folder"),
        (a_file, "is a file"),
    ]:
        assert not is_omezarr(path)
        with pytest.raises(VolumeError, match=what) as info:
            read_omezarr(path)
        message = str(info.value)
        assert str(path) in message and "OME-Zarr" in message and "\n" not in message


def test_bad_level_lists_available_levels(tmp_path, volume):
    path = tmp_path / "lv.zarr"
    write_omezarr(path, volume, VOXEL, chunks=CHUNKS, n_levels=2)
    with pytest.raises(VolumeError, match=r"lv\.zarr: no pyramid level 5.*2 level\(s\).*\[0, 1\]"):
        read_omezarr(path, level=5)
    assert read_omezarr(path, level=-1)[2]["level"] == 1


# ----------------------------------------------------------------------------------------------- writing


def test_create_fill_chunk_by_chunk_then_commit_equals_the_array(tmp_path, volume):
    path = tmp_path / "out" / "pred.ome.zarr"
    with create_omezarr(path, SHAPE, np.uint16, VOXEL, chunks=CHUNKS) as out:
        assert not path.exists() and out.tmp_path.is_dir()
        assert out.tmp_path.name.startswith(".pred.ome.zarr.") and out.tmp_path.name.endswith(".tmp")
        for z0 in range(0, SHAPE[0], 4):
            for y0 in range(0, SHAPE[1], 16):
                for x0 in range(0, SHAPE[2], 16):
                    out.array[z0 : z0 + 4, y0 : y0 + 16, x0 : x0 + 16] = volume[
                        z0 : z0 + 4, y0 : y0 + 16, x0 : x0 + 16
                    ]
        out.commit(n_levels=2)
    arr, voxel, meta = read_omezarr(path)
    np.testing.assert_array_equal(arr[:], volume)
    np.testing.assert_array_equal(out.array[:], volume)  # reopened read-only at the final path
    assert voxel == pytest.approx(VOXEL) and meta["levels"] == 2
    np.testing.assert_array_equal(read_omezarr(path, level=1)[0][:], mean_2x2(volume))
    assert leftovers(path.parent) == []
    with pytest.raises(VolumeError, match="already committed"):
        out.commit()


def test_abort_exception_and_missing_commit_leave_nothing(tmp_path):
    path = tmp_path / "gone.ome.zarr"
    out = create_omezarr(path, SHAPE, np.uint8, VOXEL, chunks=CHUNKS)
    out.array[0:4] = 1
    out.abort()
    assert not path.exists() and leftovers(tmp_path) == []

    with pytest.raises(RuntimeError, match="boom"):
        with create_omezarr(path, SHAPE, np.uint8, VOXEL, chunks=CHUNKS) as out:
            out.array[0:4] = 1
            raise RuntimeError("boom")
    assert not path.exists() and leftovers(tmp_path) == []

    with pytest.warns(UserWarning, match="without commit"):
        with create_omezarr(path, SHAPE, np.uint8, VOXEL, chunks=CHUNKS) as out:
            out.array[0:4] = 1
    assert not path.exists() and leftovers(tmp_path) == []


def test_existing_output_is_replaced_on_success(tmp_path, volume):
    path = tmp_path / "rep.ome.zarr"
    write_omezarr(path, np.zeros(SHAPE, np.uint8), VOXEL, chunks=CHUNKS, n_levels=3)
    write_omezarr(path, volume, (1.0, 1.0, 1.0), chunks=CHUNKS)
    arr, voxel, meta = read_omezarr(path)
    np.testing.assert_array_equal(arr[:], volume)
    assert voxel == pytest.approx((1.0, 1.0, 1.0)) and meta["levels"] == 1
    assert not (path / "s1").exists()  # nothing of the old pyramid is mixed in
    assert leftovers(tmp_path) == []


class FailingSource:
    """A sliceable (Z, Y, X) source whose second z-slab raises."""

    def __init__(self, data: np.ndarray):
        self.data, self.shape, self.dtype = data, data.shape, data.dtype

    def __getitem__(self, key):
        if isinstance(key, slice) and (key.start or 0) > 0:
            raise OSError("disk went away")
        return self.data[key]


def assert_old_output_intact(path: Path, old: np.ndarray) -> None:
    arr, voxel, meta = read_omezarr(path)
    np.testing.assert_array_equal(arr[:], old)
    assert voxel == pytest.approx(VOXEL) and meta["levels"] == 2
    assert leftovers(path.parent) == []


def test_failure_reading_the_source_keeps_the_old_output(tmp_path, volume):
    path = tmp_path / "keep.ome.zarr"
    old = np.full(SHAPE, 7, np.uint16)
    write_omezarr(path, old, VOXEL, chunks=CHUNKS, n_levels=2)
    with pytest.raises(OSError, match="disk went away"):
        write_omezarr(path, FailingSource(volume), VOXEL, chunks=CHUNKS)
    assert_old_output_intact(path, old)


def test_failure_building_the_pyramid_keeps_the_old_output(tmp_path, volume, monkeypatch):
    path = tmp_path / "keep.ome.zarr"
    old = np.full(SHAPE, 7, np.uint16)
    write_omezarr(path, old, VOXEL, chunks=CHUNKS, n_levels=2)

    def broken(*args, **kwargs):
        raise MemoryError("no room")

    monkeypatch.setattr(omezarr, "downsample_yx", broken)
    with pytest.raises(MemoryError):
        write_omezarr(path, volume, VOXEL, chunks=CHUNKS, n_levels=3)
    assert_old_output_intact(path, old)


def test_failure_renaming_into_place_restores_the_old_output(tmp_path, volume, monkeypatch):
    path = tmp_path / "keep.ome.zarr"
    old = np.full(SHAPE, 7, np.uint16)
    write_omezarr(path, old, VOXEL, chunks=CHUNKS, n_levels=2)

    real_replace = os.replace

    def replace(src, dst):
        if str(src).endswith(".tmp"):  # moving the new output in fails after the old one was moved aside
            raise PermissionError("rename refused")
        return real_replace(src, dst)

    monkeypatch.setattr(omezarr.os, "replace", replace)
    with pytest.raises(PermissionError):
        write_omezarr(path, volume, VOXEL, chunks=CHUNKS)
    monkeypatch.undo()
    assert_old_output_intact(path, old)


def test_refuses_to_replace_a_folder_that_is_not_omezarr(tmp_path, volume):
    path = tmp_path / "results"
    path.mkdir()
    (path / "precious.txt").write_text("keep me")
    with pytest.raises(VolumeError, match=r"results: exists and is not an OME-Zarr image"):
        write_omezarr(path, volume, VOXEL, chunks=CHUNKS)
    assert (path / "precious.txt").read_text() == "keep me"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("array", "voxel", "match"),
    [
        (np.zeros((40, 50), np.uint8), VOXEL, "cannot write shape"),
        (np.zeros((0, 40, 50), np.uint8), VOXEL, "cannot write shape"),
        (np.zeros(SHAPE, np.complex64), VOXEL, "cannot write dtype complex64"),
        (np.zeros(SHAPE, np.uint8), (2.0, -0.5, 0.5), "voxel_size must be three positive numbers"),
        (np.zeros(SHAPE, np.uint8), (2.0, 0.5), "voxel_size must be three positive numbers"),
    ],
)
def test_bad_inputs_raise_before_writing_anything(tmp_path, array, voxel, match):
    path = tmp_path / "bad.ome.zarr"
    with pytest.raises(VolumeError, match=match):
        write_omezarr(path, array, voxel, chunks=CHUNKS)
    assert list(tmp_path.iterdir()) == []


def test_bad_n_levels_raises_and_cleans_up(tmp_path, volume):
    with pytest.raises(VolumeError, match="n_levels must be a positive integer"):
        write_omezarr(tmp_path / "n.zarr", volume, VOXEL, chunks=CHUNKS, n_levels=0)
    assert list(tmp_path.iterdir()) == []
