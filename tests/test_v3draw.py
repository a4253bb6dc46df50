"""Tests of the Vaa3D .v3draw reader/writer; test files are built byte by byte with struct, not by the writer."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from neurovit.data import v3draw
from neurovit.data.v3draw import V3DRAW_SUFFIXES, is_v3draw, read_v3dpbd, read_v3draw, write_v3draw
from neurovit.errors import VolumeError

KEY = b"raw_image_stack_by_hpeng"
Z, Y, X = 2, 3, 4


def zyx_values() -> np.ndarray:
    """A (Z, Y, X) array whose value 100·z + 10·y + x gives away its axis order."""
    z, y, x = np.meshgrid(np.arange(Z), np.arange(Y), np.arange(X), indexing="ij")
    return 100 * z + 10 * y + x


def build(endian: bytes = b"L", code: int = 2, sizes=(X, Y, Z, 1), size_bytes: int = 4,
          voxels: bytes | None = None, fmt: str = "H") -> bytes:
    """A v3draw file as bytes; voxels default to 100·z + 10·y + x written with struct, x fastest."""
    order = ">" if endian == b"B" else "<"
    header = KEY + endian + struct.pack(f"{order}h", code)
    header += struct.pack(f"{order}4{'I' if size_bytes == 4 else 'H'}", *sizes)
    if voxels is None:
        voxels = b"".join(struct.pack(f"{order}{fmt}", 100 * z + 10 * y + x)
                          for z in range(Z) for y in range(Y) for x in range(X))
    return header + voxels


def no_temp_files(folder) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("mmap", [True, False])
def test_round_trip(tmp_path, dtype, mmap):
    array = zyx_values().astype(dtype)
    if dtype is np.float32:
        array = array + np.float32(0.25)
    path = tmp_path / "stack.v3draw"
    write_v3draw(path, array)
    data, meta = read_v3draw(path, mmap=mmap)
    assert data.shape == (Z, Y, X)
    assert data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(data, array)
    itemsize = np.dtype(dtype).itemsize
    assert meta == {"format": "v3draw", "endianness": "little", "dtype": np.dtype(dtype).name,
                    "size_xyzc": [X, Y, Z, 1], "header_bytes": 43}
    assert path.stat().st_size == 43 + X * Y * Z * itemsize
    assert no_temp_files(tmp_path)


def test_writer_header_is_little_endian_with_4_byte_sizes(tmp_path):
    path = tmp_path / "stack.v3draw"
    write_v3draw(path, zyx_values().astype(np.uint16))
    raw = path.read_bytes()
    assert raw[:43] == KEY + b"L" + struct.pack("<h4I", 2, X, Y, Z, 1)
    assert raw[43:] == build(b"L")[43:]  # same voxel bytes as the independent struct encoding


def test_writer_accepts_big_endian_and_non_contiguous_input(tmp_path):
    array = zyx_values().astype(">u2")
    path = tmp_path / "stack.v3draw"
    write_v3draw(path, array[:, :, ::-1])
    data, meta = read_v3draw(path)
    assert meta["endianness"] == "little"
    np.testing.assert_array_equal(data, zyx_values()[:, :, ::-1])


def test_single_slice_is_a_one_slice_stack(tmp_path):
    path = tmp_path / "one.v3draw"
    path.write_bytes(KEY + b"L" + struct.pack("<h4I", 1, 3, 2, 1, 1) + bytes(range(6)))
    data, meta = read_v3draw(path)
    assert data.shape == (1, 2, 3)
    assert meta["size_xyzc"] == [3, 2, 1, 1]
    np.testing.assert_array_equal(data[0], [[0, 1, 2], [3, 4, 5]])


# ----------------------------------------------------------------------------------------------- hand-built files


@pytest.mark.parametrize("mmap", [True, False])
def test_big_endian_4_byte_sizes(tmp_path, mmap):
    path = tmp_path / "big.v3draw"
    path.write_bytes(build(b"B", code=2, size_bytes=4))
    data, meta = read_v3draw(path, mmap=mmap)
    assert data.shape == (Z, Y, X)
    np.testing.assert_array_equal(data, zyx_values())
    assert data[1, 2, 3] == 123 and data[0, 1, 0] == 10 and data[1, 0, 2] == 102
    assert meta == {"format": "v3draw", "endianness": "big", "dtype": "uint16",
                    "size_xyzc": [X, Y, Z, 1], "header_bytes": 43}
    if not mmap:
        assert data.dtype.isnative


@pytest.mark.parametrize("endian", [b"B", b"L"])
def test_2_byte_sizes(tmp_path, endian):
    path = tmp_path / "old.v3draw"
    path.write_bytes(build(endian, code=4, size_bytes=2, fmt="f"))
    data, meta = read_v3draw(path)
    assert meta["header_bytes"] == 35
    assert meta["dtype"] == "float32"
    assert meta["size_xyzc"] == [X, Y, Z, 1]
    assert data.shape == (Z, Y, X)
    np.testing.assert_array_equal(data, zyx_values().astype(np.float32))


def test_uint8_hand_built(tmp_path):
    path = tmp_path / "u8.v3draw"
    path.write_bytes(build(b"L", code=1, fmt="B"))
    data, meta = read_v3draw(path)
    assert data.dtype == np.uint8 and meta["dtype"] == "uint8"
    np.testing.assert_array_equal(data, zyx_values())


# ----------------------------------------------------------------------------------------------- mmap


def test_mmap_is_memmap_backed_and_copy_on_write(tmp_path):
    path = tmp_path / "stack.v3draw"
    path.write_bytes(build(b"L"))
    before = path.read_bytes()
    data, _ = read_v3draw(path, mmap=True)
    assert isinstance(data, np.memmap)
    data[0, 0, 0] = 999
    data.flush()
    del data
    assert path.read_bytes() == before


def test_no_mmap_is_in_memory(tmp_path):
    path = tmp_path / "stack.v3draw"
    path.write_bytes(build(b"L"))
    data, _ = read_v3draw(path, mmap=False)
    base = data
    while base is not None:  # no memmap anywhere in the chain of views
        assert not isinstance(base, np.memmap)
        base = getattr(base, "base", None)
    path.unlink()  # the data does not depend on the file any more
    np.testing.assert_array_equal(data, zyx_values())


# ----------------------------------------------------------------------------------------------- is_v3draw


def test_is_v3draw(tmp_path):
    good = tmp_path / "stack.raw"
    good.write_bytes(build(b"L"))
    other = tmp_path / "camera.raw"
    other.write_bytes(b"\x00" * 100)
    short = tmp_path / "short.v3draw"
    short.write_bytes(KEY[:10])
    assert is_v3draw(good) is True
    assert is_v3draw(str(good)) is True
    assert is_v3draw(other) is False
    assert is_v3draw(short) is False
    assert is_v3draw(tmp_path / "missing.v3draw") is False
    assert is_v3draw(tmp_path) is False
    assert ".v3draw" in V3DRAW_SUFFIXES and ".raw" in V3DRAW_SUFFIXES


# ----------------------------------------------------------------------------------------------- errors


def assert_volume_error(path, *needles):
    with pytest.raises(VolumeError) as info:
        read_v3draw(path)
    message = str(info.value)
    assert path.name in message
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def test_missing_file(tmp_path):
    assert_volume_error(tmp_path / "missing.v3draw", "no such file")


def test_folder(tmp_path):
    folder = tmp_path / "folder.v3draw"
    folder.mkdir()
    assert_volume_error(folder, "folder")


def test_wrong_key(tmp_path):
    path = tmp_path / "wrong.v3draw"
    path.write_bytes(b"raw_image_stack_by_xxxxx" + build(b"L")[24:])
    assert_volume_error(path, "not a Vaa3D v3draw")


def test_unknown_endianness(tmp_path):
    path = tmp_path / "endian.v3draw"
    raw = bytearray(build(b"L"))
    raw[24:25] = b"X"
    path.write_bytes(bytes(raw))
    assert_volume_error(path, "endianness", "b'X'")


def test_unknown_datatype(tmp_path):
    path = tmp_path / "dtype.v3draw"
    path.write_bytes(build(b"L", code=3))
    assert_volume_error(path, "datatype code 3")


@pytest.mark.parametrize("change", [-1, +1])
def test_size_mismatch(tmp_path, change):
    raw = build(b"L")
    raw = raw[:change] if change < 0 else raw + b"\x00"
    path = tmp_path / "cut.v3draw"
    path.write_bytes(raw)
    message = assert_volume_error(path, "truncated or not a v3draw")
    assert str(43 + X * Y * Z * 2) in message  # expected bytes
    assert f"has {len(raw)} bytes" in message  # actual bytes


def test_header_cut_off(tmp_path):
    path = tmp_path / "header.v3draw"
    path.write_bytes(KEY + b"L")
    assert_volume_error(path, "truncated or not a v3draw")


def test_multi_channel(tmp_path):
    path = tmp_path / "rgb.v3draw"
    path.write_bytes(build(b"L", code=1, sizes=(X, Y, Z, 3), voxels=bytes(X * Y * Z * 3)))
    assert_volume_error(path, "extract one channel", "3 channels")


@pytest.mark.parametrize("sizes", [(0, Y, Z, 1), (X, 0, Z, 1), (X, Y, 0, 1), (X, Y, Z, 0)])
def test_zero_size(tmp_path, sizes):
    path = tmp_path / "empty.v3draw"
    path.write_bytes(build(b"L", sizes=sizes, voxels=b""))
    assert_volume_error(path, "empty image")


def test_pbd_is_refused(tmp_path):
    path = tmp_path / "stack.v3dpbd"
    path.write_bytes(b"v3d_volume_pkbitdf_encod")
    with pytest.raises(VolumeError) as info:
        read_v3dpbd(path)
    message = str(info.value)
    assert path.name in message and "not supported" in message and "Save as .v3draw" in message


# ----------------------------------------------------------------------------------------------- writer errors


@pytest.mark.parametrize("array", [np.zeros((2, 3, 4), np.int32), np.zeros((2, 3, 4), np.float64),
                                   np.zeros((3, 4), np.uint8), np.zeros((1, 2, 3, 4), np.uint8),
                                   np.zeros((0, 3, 4), np.uint16)], ids=["int32", "float64", "2d", "4d", "empty"])
def test_writer_refuses(tmp_path, array):
    path = tmp_path / "bad.v3draw"
    with pytest.raises(VolumeError) as info:
        write_v3draw(path, array)
    assert path.name in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_writer_removes_temp_file_when_replace_fails(tmp_path, monkeypatch):
    path = tmp_path / "stack.v3draw"
    write_v3draw(path, np.ones((2, 2, 2), np.uint8))
    before = path.read_bytes()
    calls = []

    def fail(src, dst):
        calls.append((src, dst))
        assert os.path.exists(src)  # the temp file was written before the rename
        raise OSError("disk full")

    monkeypatch.setattr(v3draw.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_v3draw(path, np.zeros((2, 2, 2), np.uint8))
    assert len(calls) == 1
    assert os.path.basename(calls[0][0]).startswith(".stack.v3draw.")
    assert no_temp_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.v3draw"]
    assert path.read_bytes() == before  # the old file is untouched


def test_writer_removes_temp_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "stack.v3draw"
    monkeypatch.setattr(v3draw.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("io error")))
    with pytest.raises(OSError, match="io error"):
        write_v3draw(path, np.zeros((2, 2, 2), np.uint16))
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_folder(tmp_path):
    with pytest.raises(VolumeError, match="is a folder"):
        write_v3draw(tmp_path, np.zeros((2, 2, 2), np.uint8))
