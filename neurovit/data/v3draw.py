"""Read and write Vaa3D's uncompressed `.v3draw` image stacks (BigNeuron / Gold166) as (Z, Y, X) arrays.

Layout ("raw_image_stack_by_hpeng", see Vaa3D v3d_main/basic_c_fun/stackutils.cpp):

    offset  bytes  field
    0       24     ASCII key b"raw_image_stack_by_hpeng" (no terminator)
    24      1      endianness of everything that follows: b"B" big or b"L" little
    25      2      datatype, signed short: 1 = uint8, 2 = uint16, 4 = float32
    27      4 × 4  sizes x, y, z, c as 4-byte integers (current Vaa3D; header 43 bytes), or
            4 × 2  as 2-byte integers (older files; header 35 bytes)
    43|35   ...    x·y·z·c voxels in C order [c][z][y][x] (x fastest)

The size width is not recorded: it is the one whose header + data length equals the file size exactly.
The format records no voxel size, so callers get none from it.

Why hand-written: the one reader on PyPI, v3d-py-helper (0.4.1, Aug 2024, `v3dpy.loaders.Raw`, MIT), works
but is a compiled Cython wheel per Python version, needs a flag for 2-byte sizes instead of detecting them,
reads the whole file into memory (no memory map), fails with assert/RuntimeError messages that do not name
the file, and writes non-atomically and only uint8/uint16. This module is ~150 lines of struct + numpy.
Compressed Vaa3D PBD (.v3dpbd) is not supported (`read_v3dpbd` says how to convert it).
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from neurovit.errors import VolumeError

__all__ = [
    "V3DRAW_SUFFIXES",
    "is_v3draw",
    "read_v3dpbd",
    "read_v3draw",
    "write_v3draw",
]

PathLike = str | os.PathLike[str]

V3DRAW_SUFFIXES = (".v3draw", ".raw")  # .raw only when the key matches; see is_v3draw
KEY = b"raw_image_stack_by_hpeng"
ENDIANNESS = {b"B": (">", "big"), b"L": ("<", "little")}
DATATYPES = {1: "u1", 2: "u2", 4: "f4"}  # datatype code -> numpy kind+itemsize (the code is the itemsize)
CODES = {np.dtype(np.uint8): 1, np.dtype(np.uint16): 2, np.dtype(np.float32): 4}
PREFIX_BYTES = len(KEY) + 1 + 2  # key, endianness, datatype
LAYOUTS = ((4, "I", PREFIX_BYTES + 4 * 4), (2, "H", PREFIX_BYTES + 4 * 2))  # (size width, struct code, header)
EXPECTED = "expected a single-channel Vaa3D .v3draw stack"


# ----------------------------------------------------------------------------------------------- reading


def is_v3draw(path: PathLike) -> bool:
    """True when path is a readable file that starts with the v3draw key (whatever its suffix)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(KEY)) == KEY
    except OSError:
        return False


def read_v3draw(path: PathLike, *, mmap: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
    """(Z, Y, X) array (np.memmap read-only / copy-on-write view when mmap, else in memory) and metadata
    {"format": "v3draw", "endianness": "little"/"big", "dtype": "uint16", "size_xyzc": [x, y, z, c],
    "header_bytes": 43}.

    A memory map keeps the file's byte order (e.g. dtype '>u2' for big-endian files; the values are right);
    an in-memory read is converted to native byte order.
    """
    path = _existing_file(path)
    file_bytes, head = _read_head(path)
    order, endianness, dtype = _parse_prefix(path, head)
    header_bytes, (x, y, z, c) = _parse_sizes(path, head, order, dtype, file_bytes)
    if 0 in (x, y, z, c):
        raise VolumeError(f"{path}: empty image (size x, y, z, c = {x}, {y}, {z}, {c}); {EXPECTED} "
                          "with at least one voxel")
    if c > 1:
        raise VolumeError(f"{path}: multi-channel image ({c} channels, size x, y, z = {x}, {y}, {z}); "
                          f"extract one channel (e.g. Vaa3D Image > Split channels) and save it as .v3draw")
    shape = (z, y, x)
    try:
        if mmap:
            data = np.memmap(path, dtype=dtype, mode="c", offset=header_bytes, shape=shape)
        else:
            data = np.fromfile(path, dtype=dtype, count=x * y * z, offset=header_bytes).reshape(shape)
            data = data.astype(dtype.newbyteorder("="), copy=False)
    except (OSError, ValueError) as err:
        raise VolumeError(f"{path}: cannot read the voxel data ({err}); check the file is readable") from err
    meta = {
        "format": "v3draw",
        "endianness": endianness,
        "dtype": dtype.name,
        "size_xyzc": [x, y, z, c],
        "header_bytes": header_bytes,
    }
    return data, meta


def read_v3dpbd(path: PathLike) -> NoReturn:
    """Always raise VolumeError: compressed Vaa3D PBD is not supported."""
    raise VolumeError(f"{path}: compressed Vaa3D PBD (.v3dpbd) is not supported; convert it with Vaa3D "
                      "(File > Save as .v3draw) or Fiji's Vaa3D plugin")


def _existing_file(path: PathLike) -> Path:
    """Return path as a Path, raising VolumeError when it is missing or a folder."""
    from neurovit.data.volumes import existing_file

    return existing_file(path, EXPECTED)


def _read_head(path: Path) -> tuple[int, bytes]:
    """Return (file size in bytes, the first bytes of the file, at most the longest header)."""
    try:
        with open(path, "rb") as fh:
            return os.fstat(fh.fileno()).st_size, fh.read(LAYOUTS[0][2])
    except OSError as err:
        raise VolumeError(f"{path}: cannot open ({err.strerror or err}); check the file is readable") from err


def _parse_prefix(path: Path, head: bytes) -> tuple[str, str, np.dtype]:
    """Return (struct byte-order character, "big"/"little", voxel dtype) from the key, endianness, datatype."""
    if head[: len(KEY)] != KEY:
        raise VolumeError(f"{path}: not a Vaa3D v3draw file (it does not start with {KEY.decode()!r}); "
                          f"{EXPECTED}, or convert the image to TIFF")
    if len(head) < PREFIX_BYTES:
        raise VolumeError(f"{path}: truncated or not a v3draw (header cut off after {len(head)} bytes); "
                          "re-export the stack")
    tag = head[len(KEY) : len(KEY) + 1]
    if tag not in ENDIANNESS:
        raise VolumeError(f"{path}: unknown endianness byte {tag!r} (expected b'B' or b'L'); "
                          "the file is corrupt, re-export the stack")
    order, endianness = ENDIANNESS[tag]
    (code,) = struct.unpack_from(f"{order}h", head, len(KEY) + 1)
    if code not in DATATYPES:
        raise VolumeError(f"{path}: unknown datatype code {code} (expected 1 = uint8, 2 = uint16 or "
                          "4 = float32); re-export the stack as 8-bit, 16-bit or 32-bit float")
    return order, endianness, np.dtype(order + DATATYPES[code])


def _parse_sizes(path: Path, head: bytes, order: str, dtype: np.dtype,
                 file_bytes: int) -> tuple[int, tuple[int, int, int, int]]:
    """Return (header bytes, (x, y, z, c)) for the size width whose total length matches the file exactly."""
    tried = []
    for width, code, header_bytes in LAYOUTS:
        if len(head) < header_bytes:
            continue
        sizes = struct.unpack_from(f"{order}4{code}", head, PREFIX_BYTES)
        expected = header_bytes + math.prod(sizes) * dtype.itemsize
        if expected == file_bytes:
            return header_bytes, sizes
        tried.append(f"{expected} with {width}-byte sizes x, y, z, c = {', '.join(map(str, sizes))}")
    raise VolumeError(f"{path}: truncated or not a v3draw: expected {' or '.join(tried) or 'a longer header'} "
                      f"({dtype.name}) but the file has {file_bytes} bytes; re-export or re-download it")


# ----------------------------------------------------------------------------------------------- writing


def write_v3draw(path: PathLike, array: np.ndarray) -> None:
    """Atomically write a (Z, Y, X) uint8/uint16/float32 array (little-endian, 4-byte sizes, c = 1)."""
    path = Path(path)
    data = np.asarray(array)
    code = CODES.get(data.dtype.newbyteorder("="))
    if code is None:
        raise VolumeError(f"{path}: cannot write dtype {data.dtype}; use uint8, uint16 or float32 (cast it first)")
    if data.ndim != 3 or 0 in data.shape:
        raise VolumeError(f"{path}: cannot write an array of shape {data.shape}; expected a non-empty 3D "
                          "(Z, Y, X) grey-scale stack")
    z, y, x = data.shape
    if max(data.shape) > 0xFFFFFFFF:
        raise VolumeError(f"{path}: cannot write shape {data.shape}; v3draw sizes must fit in 4 bytes")
    if path.is_dir():
        raise VolumeError(f"{path}: is a folder; give a file name such as {path / 'stack.v3draw'}")
    header = struct.pack("<24sch4I", KEY, b"L", code, x, y, z, 1)
    little = data.dtype.newbyteorder("<")
    from neurovit.atomic import atomic_open

    with atomic_open(path) as fh:
        fh.write(header)
        for plane in data:  # one slice at a time: bounded memory for non-contiguous or big-endian input
            fh.write(np.ascontiguousarray(plane, dtype=little).data)
