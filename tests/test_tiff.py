"""Tests of neurovit.data.tiff: reading, writing and MONAI loading of 3D (Z, Y, X) TIFF stacks."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from monai.data import PILReader
from monai.transforms import LoadImage
from monai.utils import OptionalImportError

from neurovit.data import tiff
from neurovit.data.monai_reader import TiffStackReader, load_stack_transform
from neurovit.data.tiff import (
    TiffNotFoundError,
    read_stack,
    read_voxel_size,
    write_stack,
)
from neurovit.errors import TiffError, VolumeError

SHAPE = (5, 16, 12)  # distinct sizes, so any axis mix-up changes the shape
VOXEL = (2.5, 0.25, 0.3)  # (z, y, x) um


def stack(dtype: type = np.uint16) -> np.ndarray:
    """Return a (5, 16, 12) stack whose voxels all differ."""
    return np.arange(np.prod(SHAPE)).reshape(SHAPE).astype(dtype)


def raises_naming(path: Path, *patterns: str):
    """Return pytest.raises(TiffError) requiring the path and every pattern in the message."""
    return pytest.raises(
        TiffError, match="(?s)" + "".join(f"(?=.*{p})" for p in (re.escape(str(path)), *patterns))
    )


# ----------------------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_write_read_round_trip_keeps_values_dtype_and_voxel_size(tmp_path, dtype):
    path = tmp_path / "stack.tif"
    data = stack(dtype) if dtype != np.uint8 else (stack() % 251).astype(np.uint8)
    write_stack(path, data, voxel_size=VOXEL)
    out = read_stack(path)
    assert out.dtype == dtype and out.shape == SHAPE
    np.testing.assert_array_equal(out, data)
    assert read_voxel_size(path) == pytest.approx(VOXEL)


def test_written_file_is_an_imagej_zyx_hyperstack_in_um(tmp_path):
    path = tmp_path / "stack.tif"
    write_stack(path, stack(), voxel_size=VOXEL)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZYX"
        assert tif.imagej_metadata["unit"] == "um" and tif.imagej_metadata["spacing"] == pytest.approx(2.5)


def test_write_creates_parent_folders_overwrites_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "a" / "b" / "stack.tif"
    write_stack(path, stack())
    write_stack(path, stack() + 1, voxel_size=(1.0, 0.5, 0.5))
    np.testing.assert_array_equal(read_stack(path), stack() + 1)
    assert read_voxel_size(path) == pytest.approx((1.0, 0.5, 0.5))
    assert os.listdir(path.parent) == ["stack.tif"]


def test_crash_while_writing_keeps_old_file_and_removes_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "stack.tif"
    write_stack(path, stack())

    def crash(fh, *args, **kwargs):
        fh.write(b"II*\x00half")
        raise RuntimeError("disk died")

    monkeypatch.setattr(tiff.tifffile, "imwrite", crash)
    with pytest.raises(RuntimeError, match="disk died"):
        write_stack(path, stack() + 7)
    monkeypatch.undo()
    np.testing.assert_array_equal(read_stack(path), stack())
    assert os.listdir(tmp_path) == ["stack.tif"]


def test_voxel_size_is_none_without_imagej_metadata_and_scaled_from_other_units(tmp_path):
    plain, nm = tmp_path / "plain.tif", tmp_path / "nm.tif"
    tifffile.imwrite(plain, stack())
    meta = {"axes": "ZYX", "spacing": 500.0, "unit": "nm"}
    tifffile.imwrite(nm, stack(), imagej=True, resolution=(1 / 100.0, 1 / 200.0), metadata=meta)
    assert read_voxel_size(plain) is None
    assert read_voxel_size(nm) == pytest.approx((0.5, 0.2, 0.1))


# ----------------------------------------------------------------------------------------------- memory map


def test_uncompressed_read_is_a_copy_on_write_memmap(tmp_path):
    path = tmp_path / "stack.tif"
    write_stack(path, stack())
    out = read_stack(path)
    assert isinstance(out, np.memmap)
    out[0, 0, 0] = 999  # must not reach the file
    np.testing.assert_array_equal(read_stack(path, mmap=False), stack())
    assert not isinstance(read_stack(path, mmap=False), np.memmap)


def test_compressed_read_falls_back_to_a_normal_array(tmp_path):
    path = tmp_path / "stack.tif"
    write_stack(path, stack(), voxel_size=VOXEL, compression="zlib")
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression != tifffile.COMPRESSION.NONE
    out = read_stack(path)
    assert not isinstance(out, np.memmap)
    np.testing.assert_array_equal(out, stack())
    assert read_voxel_size(path) == pytest.approx(VOXEL)


# ----------------------------------------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    ("data", "kwargs"),
    [
        (stack()[:, None], {"imagej": True, "metadata": {"axes": "ZCYX"}}),  # ImageJ, C=1
        (stack()[None], {"metadata": {"axes": "CZYX"}}),  # leading singleton channel
        (stack()[..., None], {"photometric": "minisblack"}),  # trailing singleton sample axis
        (np.moveaxis(stack(), 0, -1).copy(), {"metadata": {"axes": "YXZ"}, "photometric": "minisblack"}),
    ],
    ids=["ZCYX-C1", "CZYX-C1", "ZYX1", "YXZ"],
)
def test_single_channel_and_reordered_layouts_read_as_zyx(tmp_path, data, kwargs):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data, **kwargs)
    out = read_stack(path)
    assert out.shape == SHAPE
    np.testing.assert_array_equal(out, stack())


def test_generic_multipage_tiff_without_metadata_reads_as_stack(tmp_path):
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as writer:
        for plane in stack():
            writer.write(plane, metadata=None)
    np.testing.assert_array_equal(read_stack(path), stack())


# ----------------------------------------------------------------------------------------------- read errors


def test_2d_image_is_rejected(tmp_path):
    path = tmp_path / "slice.tif"
    tifffile.imwrite(path, stack()[0])
    with raises_naming(path, "single 2D image, not a stack", r"\(16, 12\)", "'YX'", "multi-page TIFF"):
        read_stack(path)


@pytest.mark.parametrize(
    ("data", "kwargs", "what"),
    [
        (np.zeros((16, 12, 3), np.uint8), {"photometric": "rgb"}, "RGB image with 3 channels"),
        (np.zeros((5, 16, 12, 3), np.uint8), {"photometric": "rgb"}, "RGB image with 3 channels"),
        (np.zeros((5, 2, 16, 12), np.uint8), {"imagej": True, "metadata": {"axes": "ZCYX"}}, "2 channels"),
    ],
    ids=["rgb-2d", "rgb-stack", "two-channels"],
)
def test_multichannel_data_is_rejected(tmp_path, data, kwargs, what):
    path = tmp_path / "colour.tif"
    tifffile.imwrite(path, data, **kwargs)
    with raises_naming(path, what, re.escape(str(data.shape)), "Extract one channel", "3D"):
        read_stack(path)


def test_5d_and_time_series_are_rejected(tmp_path):
    five, four = tmp_path / "5d.tif", tmp_path / "tzyx.tif"
    tifffile.imwrite(five, np.zeros((2, 3, 5, 16, 12), np.uint8))
    tifffile.imwrite(four, np.zeros((3, 5, 16, 12), np.uint8), imagej=True, metadata={"axes": "TZYX"})
    with raises_naming(five, "5D data", r"\(2, 3, 5, 16, 12\)", "own 3D stack"):
        read_stack(five)
    with raises_naming(four, "4D data", "T=3, Z=5", "'TZYX'"):
        read_stack(four)


def test_empty_stack_is_rejected(tmp_path):
    path = tmp_path / "empty.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile warns about writing a zero-size array
        tifffile.imwrite(path, np.zeros((0, 16, 12), np.uint16))
    with raises_naming(path, "empty stack", r"\(0, 16, 12\)"):
        read_stack(path)


def test_missing_file_is_a_tiff_error_and_a_file_not_found_error(tmp_path):
    path = tmp_path / "nowhere.tif"
    with raises_naming(path, "no such file") as info:
        read_stack(path)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, TiffNotFoundError)
    with raises_naming(path, "no such file"):
        read_voxel_size(path)


@pytest.mark.parametrize("content", [b"hello, not an image", b""], ids=["text", "empty-file"])
def test_non_tiff_file_is_rejected(tmp_path, content):
    path = tmp_path / "fake.tif"
    path.write_bytes(content)
    with raises_naming(path, "not a TIFF file"):
        read_stack(path)


def test_folder_is_rejected(tmp_path):
    with raises_naming(tmp_path, "is a folder"):
        read_stack(tmp_path)


def test_truncated_file_is_rejected(tmp_path):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, stack())
    path.write_bytes(path.read_bytes()[:1500])  # keeps the first IFD, loses part of the pixel data
    with raises_naming(path, "corrupt or truncated"):
        read_stack(path)


# ----------------------------------------------------------------------------------------------- write errors


@pytest.mark.parametrize(
    ("array", "pattern"),
    [
        (stack(np.float64), "float64.*astype\\(np.float32\\)"),
        (stack(np.int32), "int32.*uint8, uint16 or float32"),
        (stack() > 3, "bool"),
        (stack()[0], r"shape \(16, 12\)"),
        (stack()[None, None], r"shape \(1, 1, 5, 16, 12\)"),
        (stack()[:1], "at least 2 slices"),
    ],
    ids=["float64", "int32", "bool", "2d", "5d", "one-slice"],
)
def test_rejected_write_leaves_no_file(tmp_path, array, pattern):
    path = tmp_path / "out" / "stack.tif"
    with raises_naming(path, pattern):
        write_stack(path, array)
    assert not path.parent.exists()


@pytest.mark.parametrize("voxel_size", [(1.0, 0.0, 1.0), (1.0, 1.0), (1.0, -2.0, 1.0), "abc"])
def test_bad_voxel_size_is_rejected(tmp_path, voxel_size):
    path = tmp_path / "stack.tif"
    with pytest.raises(VolumeError, match=re.escape(f"{path}: voxel_size must be three positive numbers")):
        write_stack(path, stack(), voxel_size=voxel_size)  # the volume layer's one voxel-size check
    assert not path.exists()


def test_unknown_compression_is_rejected_without_leftovers(tmp_path):
    path = tmp_path / "stack.tif"
    with raises_naming(path, "compression='bogus'"):
        write_stack(path, stack(), compression="bogus")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------- MONAI


def test_reader_interface(tmp_path):
    path = tmp_path / "stack.tif"
    write_stack(path, stack(), voxel_size=VOXEL)
    reader = TiffStackReader()
    assert reader.verify_suffix(path) and reader.verify_suffix(["a.TIFF", "b.tif"])
    assert not reader.verify_suffix("a.png") and not reader.verify_suffix(["a.tif", "b.nii.gz"])
    data, meta = reader.get_data(reader.read(path))
    np.testing.assert_array_equal(data, stack())
    np.testing.assert_array_equal(meta["spatial_shape"], SHAPE)
    assert np.isnan(meta["original_channel_dim"]) and meta["filename_or_obj"] == str(path)
    np.testing.assert_allclose(meta["spacing"], VOXEL)
    np.testing.assert_allclose(meta["affine"], np.diag([*VOXEL, 1.0]))


def test_monai_load_image_with_our_reader_returns_the_whole_stack(tmp_path):
    path = tmp_path / "stack.tif"
    write_stack(path, stack(), voxel_size=VOXEL)
    for loader in (LoadImage(reader=TiffStackReader()), load_stack_transform()):
        img = loader(path)
        assert tuple(img.shape) == SHAPE
        np.testing.assert_array_equal(img.numpy(), stack())
        np.testing.assert_allclose(np.asarray(img.pixdim), VOXEL)


def test_load_stack_transform_channel_first_dict_and_unknown_voxel_size(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack())  # no voxel size recorded
    img = load_stack_transform(ensure_channel_first=True)(path)
    assert tuple(img.shape) == (1, *SHAPE)
    out = load_stack_transform(keys="image")({"image": str(path)})
    assert tuple(out["image"].shape) == SHAPE
    np.testing.assert_array_equal(out["image"].numpy(), stack())
    np.testing.assert_allclose(out["image"].meta["affine"].numpy(), np.eye(4))


def test_several_files_load_as_channels(tmp_path):
    first, second = tmp_path / "a.tif", tmp_path / "b.tif"
    write_stack(first, stack())
    write_stack(second, stack() + 1)
    img = load_stack_transform()([first, second])
    assert tuple(img.shape) == (2, *SHAPE)
    np.testing.assert_array_equal(img[1].numpy(), stack() + 1)


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # MONAI's PILReader leaves the file open
def test_plain_monai_pil_reader_returns_only_the_first_page_but_ours_the_stack(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack())
    try:
        pil_reader = PILReader()
    except OptionalImportError:
        pytest.skip("MONAI's PILReader needs Pillow")
    pil = LoadImage(reader=pil_reader)(path)
    assert tuple(pil.shape) == SHAPE[:0:-1]  # one page, and transposed to (X, Y)
    np.testing.assert_array_equal(pil.numpy(), stack()[0].T)
    assert tuple(LoadImage(reader=TiffStackReader())(path).shape) == SHAPE


def test_plain_monai_load_image_finds_no_tiff_reader(tmp_path):
    path = tmp_path / "stack.tif"
    write_stack(path, stack())
    with pytest.raises(RuntimeError, match="cannot find a suitable reader"):
        LoadImage()(path)


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_2d_tiff_raises_through_monai_instead_of_falling_back_to_pil(tmp_path):
    path = tmp_path / "slice.tif"
    tifffile.imwrite(path, stack()[0])
    reader = TiffStackReader()
    with raises_naming(path, "single 2D image"):
        reader.get_data(reader.read(path))
    loaders = [
        (LoadImage(reader=TiffStackReader()), path),
        (load_stack_transform(), path),
        (load_stack_transform(keys="img"), {"img": path}),
    ]
    for loader, arg in loaders:
        with raises_naming(path, "single 2D image"):
            loader(arg)
