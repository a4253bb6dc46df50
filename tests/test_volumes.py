"""The volume I/O layer: formats by suffix, full-stem names, voxel sizes, atomic outputs; the normaliser
and slab resampling."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from neurovit.data.normalise import Normaliser, Preprocessing
from neurovit.data.resample import resample, resampled_shape
from neurovit.data.volumes import (
    check_voxel_size,
    create_output,
    find_format,
    list_volumes,
    open_volume,
    spacing_differs,
    volume_stem,
    write_volume,
)
from neurovit.errors import VolumeError


def ramp(shape=(4, 6, 8), dtype=np.uint16) -> np.ndarray:
    z, y, x = np.indices(shape)
    return (100 * z + 10 * y + x).astype(dtype)


@pytest.mark.parametrize("name, stem, fmt", [
    ("cell.day1.tif", "cell.day1", "tiff"), ("a.ome.tiff", "a", "tiff"), ("A.OME.TIF", "A", "tiff"),
    ("n.v3draw", "n", "v3draw"), ("brain.ome.zarr", "brain", "ome-zarr"), ("x.y.zarr", "x.y", "ome-zarr"),
    ("n.v3dpbd", "n", "v3dpbd"),
])
def test_names_keep_the_full_stem_and_formats_come_from_suffixes(name, stem, fmt):
    assert volume_stem(name) == stem
    assert find_format(name).name == fmt


def test_unknown_suffix_names_the_supported_ones():
    with pytest.raises(VolumeError, match=r"stack\.nrrd: unknown image format; supported: .*\.ome\.zarr"):
        find_format("stack.nrrd")


def test_ome_tiff_and_imagej_voxel_sizes(tmp_path):
    data = ramp()
    ome = tmp_path / "s.ome.tif"
    tifffile.imwrite(ome, data, metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                                          "PhysicalSizeZ": 3.0, "PhysicalSizeZUnit": "nm"})
    v = open_volume(ome)
    assert v.voxel_size == pytest.approx((3e-3, 0.5, 0.5)) and v.name == "s" and v.metadata["format"] == "ome-tiff"
    np.testing.assert_array_equal(v.read(), data)
    no_z = tmp_path / "noz.ome.tif"
    tifffile.imwrite(no_z, data, metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    assert open_volume(no_z).voxel_size is None  # an unknown z spacing is unknown, not 1 µm
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, data, photometric="minisblack")
    assert open_volume(plain).voxel_size is None
    assert open_volume(plain).metadata["voxel_size_from"] == "unknown"
    given = open_volume(plain, voxel_size=(2, 1, 1))
    assert given.voxel_size == (2.0, 1.0, 1.0) and given.metadata["voxel_size_from"] == "argument"


def test_v3draw_reads_as_the_same_stack(tmp_path):
    data = ramp()
    write_volume(tmp_path / "s.v3draw", data)
    v = open_volume(tmp_path / "s.v3draw")
    assert v.voxel_size is None and v.format == "v3draw"
    np.testing.assert_array_equal(v.read(), data)
    (tmp_path / "c.v3dpbd").write_bytes(b"raw_image_stack_by_hpeng")
    with pytest.raises(VolumeError, match="c.v3dpbd.*Vaa3D"):
        open_volume(tmp_path / "c.v3dpbd")


@pytest.mark.parametrize("bad", [(1, 1), (1, 0, 1), (1, float("nan"), 1), "abc", None])
def test_voxel_size_check(bad):
    with pytest.raises(VolumeError, match="three positive numbers"):
        check_voxel_size(bad, "x.tif: voxel size")


def test_spacing_tolerance_is_ten_percent_per_axis():
    assert not spacing_differs((2.0, 1.0, 1.0), (2.19, 0.91, 1.0))
    assert spacing_differs((2.0, 1.0, 1.0), (2.0, 1.0, 1.2))
    assert spacing_differs((1.0, 1.0, 1.0), (2.0, 1.0, 1.0))


def test_missing_and_folder_errors(tmp_path):
    with pytest.raises(VolumeError, match="nope.tif: no such file"):
        open_volume(tmp_path / "nope.tif")
    with pytest.raises(VolumeError, match="levels"):
        write_volume(tmp_path / "a.tif", ramp())
        open_volume(tmp_path / "a.tif", level=1)


def test_list_volumes_skips_hidden_and_other_files(tmp_path):
    for name in ("b.tif", "a.ome.tif", ".hidden.tif", "notes.txt", "c.v3draw"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "d.tif").mkdir()  # a folder with a file suffix is not a volume
    assert [p.name for p in list_volumes(tmp_path)] == ["a.ome.tif", "b.tif", "c.v3draw"]


def test_create_output_is_invisible_until_committed(tmp_path):
    path = tmp_path / "out" / "p.tif"
    out = create_output(path, (3, 5, 7), np.float32, voxel_size=(2.0, 0.5, 0.5))
    out.array[:] = 0.25
    assert not path.exists()
    out.commit()
    v = open_volume(path)
    assert v.voxel_size == pytest.approx((2.0, 0.5, 0.5)) and float(v.read().mean()) == 0.25
    assert [p.name for p in path.parent.iterdir()] == ["p.tif"]
    with pytest.raises(RuntimeError), create_output(tmp_path / "q.tif", (3, 5, 7), np.uint8) as failed:
        failed.array[:] = 1
        raise RuntimeError("boom")
    assert list(tmp_path.glob("*q.tif*")) == []  # aborted: neither the output nor its temporary file


# ------------------------------------------------------------------------------------------- normaliser
def test_normaliser_maps_percentiles_to_0_and_1_and_clips():
    vol = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    n = Normaliser((10.0, 90.0))
    out = n(vol)
    assert np.percentile(out, 10) == pytest.approx(0.0, abs=1e-6) and np.percentile(out, 90) == pytest.approx(1.0)
    clipped = Normaliser((10.0, 90.0), clip=(0.0, 1.0))(vol)
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    assert Normaliser.from_dict(n.to_dict()) == n


def test_normaliser_samples_large_volumes_plane_by_plane():
    class Lazy:  # a lazy array that refuses to be read whole
        shape, dtype, ndim = (200, 64, 64), np.float32, 3

        def __getitem__(self, key):
            if not isinstance(key, tuple) or not isinstance(key[0], int):
                raise AssertionError(f"whole-volume read {key!r}")
            return np.full((64, 64), key[0], dtype=np.float32)[key[1:]]

    lo, scale = Normaliser((0.0, 100.0), sample_voxels=10_000).range(Lazy())
    assert lo == 0.0 and scale == pytest.approx(199.0)


@pytest.mark.parametrize("bad", [(50, 10), (-1, 99), (1, 101)])
def test_normaliser_rejects_bad_percentiles(bad):
    with pytest.raises(Exception, match="percentiles"):
        Normaliser(bad)


def test_preprocessing_round_trips():
    p = Preprocessing((2.0, 1.0, 1.0), Normaliser((0.5, 99.0), clip=(-1, 2)))
    assert Preprocessing.from_dict(p.to_dict()) == p


# ------------------------------------------------------------------------------------------- resampling
def test_resampled_shape_keeps_the_extent():
    assert resampled_shape((32, 100, 100), (1.0, 1.0, 1.0), (2.0, 1.0, 1.0)) == (16, 100, 100)
    assert resampled_shape((10, 50, 51), (2.0, 0.5, 0.5), (1.0, 1.0, 1.0)) == (20, 25, 26)


def test_resample_follows_the_voxel_centre_convention_and_round_trips_a_smooth_volume():
    # voxel i is centred at i · size: halving z keeps slices 0, 2, 4, ... (smoothed by σ = 0.5 slice)
    z = np.arange(8, dtype=np.float32)[:, None, None] * np.ones((1, 4, 4), np.float32)
    half = resample(z, (1.0, 1.0, 1.0), (2.0, 1.0, 1.0), slab=3)
    assert half.shape == (4, 4, 4)
    np.testing.assert_allclose(half[1:3, 0, 0], [2.0, 4.0], atol=1e-5)  # a linear ramp survives smoothing (inside)
    up = resample(z[::2], (2.0, 1.0, 1.0), (1.0, 1.0, 1.0), (7, 4, 4))
    np.testing.assert_allclose(up[:, 0, 0], np.arange(7), atol=1e-5)  # interpolated between the centres
    smooth = np.fromfunction(lambda k, j, i: np.sin(k / 4) + np.cos(j / 6) + i / 20, (12, 30, 30), dtype=np.float32)
    fine = resample(smooth, (2.0, 1.0, 1.0), (1.0, 0.5, 0.5))
    back = resample(fine, (1.0, 0.5, 0.5), (2.0, 1.0, 1.0), smooth.shape)
    assert fine.shape == (24, 60, 60) and np.abs(back - smooth)[1:-2, 1:-2, 1:-2].max() < 0.05


def test_resample_is_the_same_in_any_slab_size():
    rng = np.random.default_rng(0)
    vol = rng.random((17, 20, 24)).astype(np.float32)
    a = resample(vol, (1.0, 0.5, 0.5), (3.0, 1.0, 1.0), slab=1)
    b = resample(vol, (1.0, 0.5, 0.5), (3.0, 1.0, 1.0), slab=64)
    np.testing.assert_allclose(a, b, atol=1e-6)  # the z halo hides slab borders


@pytest.mark.parametrize("suffix", [".tif", ".ome.zarr"])
def test_any_format_takes_a_mask_as_labels(tmp_path, suffix):
    """labels=True (masks: predict's _mask output) is accepted by every writable format; where there is a
    pyramid its coarser levels keep a one-voxel-thin neurite (max), which a mean would halve away."""
    from neurovit.data.volumes import create_output, open_volume, write_volume

    mask = np.zeros((4, 512, 512), np.uint8)
    mask[:, 101, 101] = 1  # a one-voxel-thin neurite along z: 1 of the 4 voxels each coarser voxel covers
    extra = {"n_levels": 2} if suffix == ".ome.zarr" else {}
    a = write_volume(tmp_path / f"a{suffix}", mask, voxel_size=(2.0, 1.0, 1.0), labels=True, **extra)
    with create_output(tmp_path / f"b{suffix}", mask.shape, np.uint8, voxel_size=(2.0, 1.0, 1.0),
                       labels=True) as out:
        out.array[:] = mask
        b = out.commit()
    for path in (a, b):
        assert (open_volume(path).read() == mask).all()
        if suffix == ".ome.zarr":
            coarse = open_volume(path, level=1).read()
            assert coarse.shape == (4, 256, 256) and (coarse[:, 50, 50] == 1).all()  # a mean would give 0
