"""Property-based tests (hypothesis): SWC and image-volume round trips, and corrupt input that must end
in a project error (SWCError / VolumeError) or a valid result — never another exception type."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from neurovit.data.swc import Morphology, format_swc, read_swc, write_swc
from neurovit.data.volumes import open_volume, write_volume
from neurovit.errors import SWCError, VolumeError

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------------------------- SWC
@st.composite
def morphologies(draw) -> Morphology:
    """A random valid forest: parent[i] in [-1, i), finite positions, radii >= 0, types 0..20."""
    n = draw(st.integers(1, 25))
    parent = [-1] + [draw(st.integers(-1, i - 1)) for i in range(1, n)]
    coord = st.floats(-1e5, 1e5, allow_nan=False, allow_infinity=False)
    xyz = draw(arrays(np.float64, (n, 3), elements=coord))
    radius = draw(arrays(np.float64, n, elements=st.floats(0, 50, allow_nan=False)))
    types = draw(arrays(np.int64, n, elements=st.integers(0, 20)))
    units = draw(st.sampled_from(["um", "voxel"]))
    return Morphology(xyz, radius, types, np.array(parent), units=units, source="random")


def _as_written(value: float) -> float:
    """The value the SWC text holds for `value` (4 decimals), as a reader parses it back."""
    return float(f"{value:.4f}")


def _canonical_forest(labels: list[tuple], parent: np.ndarray) -> list:
    """Order-independent form of a labelled forest (AHU encoding): equal iff the trees are isomorphic with
    equal labels, whatever order the nodes are stored in."""
    n = len(parent)
    children: list[list] = [[] for _ in range(n)]
    canon: list = [None] * n
    for i in range(n - 1, -1, -1):  # children after parents: bottom-up in reverse order
        canon[i] = (labels[i], tuple(sorted(children[i], key=repr)))
        if parent[i] >= 0:
            children[parent[i]].append(canon[i])
    return sorted((canon[i] for i in range(n) if parent[i] < 0), key=repr)


@settings(max_examples=150, **SETTINGS)
@given(m=morphologies())
def test_swc_round_trip_keeps_topology_positions_radii_types_and_units(m):
    with tempfile.TemporaryDirectory() as tmp:
        back = read_swc(write_swc(m, Path(tmp) / "tree.swc"), fork_end="keep")
    assert back.n_nodes == m.n_nodes and back.units == m.units
    assert (back.parent < np.arange(back.n_nodes)).all()
    assert len(back.roots) == len(m.roots) and back.n_tips == m.n_tips
    assert back.n_branch_points == m.n_branch_points
    # node order may change (parents first, breadth-first); the labelled forest may not
    expected = [tuple(_as_written(v) for v in (*m.xyz[i], m.radius[i])) + (int(m.types[i]),)
                for i in range(m.n_nodes)]
    got = [tuple(float(v) for v in (*back.xyz[i], back.radius[i])) + (int(back.types[i]),)
           for i in range(back.n_nodes)]
    assert _canonical_forest(got, back.parent) == _canonical_forest(expected, m.parent)
    # ... and what was written is the original to the format's 4 decimals
    written = np.array([[_as_written(v) for v in row] for row in m.xyz]).reshape(-1, 3)
    order = np.lexsort(written.T[::-1])  # the same key on both sides: the values in the file
    back_order = np.lexsort(back.xyz.T[::-1])
    np.testing.assert_allclose(np.sort(back.radius), np.sort(m.radius), atol=5.01e-5, rtol=0)
    np.testing.assert_allclose(back.xyz[back_order], m.xyz[order], atol=5.01e-5, rtol=1e-12)
    assert back.total_length == pytest.approx(m.total_length, rel=1e-3, abs=1e-3 * max(1, m.n_nodes))


# Byte edits: flip/overwrite, insert (random bytes or tokens a reader may choke on), delete, truncate.
TOKENS = [b"\xef\xbb\xbf", b"-", b"-1", b"0", b"nan", b"inf", b"-inf", b"1e400", b"1e20", b"9" * 30, b"\n",
          b"\r", b"#", b",", b" ", b"\t", b"\x00", b"\xff", b"\xc3", b"e", b".", b"1_0", b"\x0b", b"\x1c",
          "\u2028".encode()]
EDIT = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.one_of(st.binary(min_size=1, max_size=4),
                                                                    st.sampled_from(TOKENS))),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 8)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
)


def corrupt(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for kind, pos, arg in edits:
        if kind == "insert":
            pos %= len(buf) + 1
        elif buf:
            pos %= len(buf)
        else:
            continue
        if kind == "flip":
            buf[pos] = arg
        elif kind == "insert":
            buf[pos:pos] = arg
        elif kind == "delete":
            del buf[pos:pos + arg]
        else:
            del buf[pos:]
    return bytes(buf)


# Field edits: replace the k-th whitespace-separated field of the text by a value a reader may mishandle.
FIELD_VALUES = ["-1", "-2", "0", "1", "2", "1.5", "1e20", "-1e20", "9" * 25, "1e400", "nan", "inf", "-inf",
                "x", "", "1,2", "\ufeff1", "2**3", "0x10", "1_0", "٣"]
FIELD_EDIT = st.tuples(st.integers(0, 10**6), st.sampled_from(FIELD_VALUES))


def corrupt_fields(text: str, edits) -> str:
    parts = text.split(" ")
    for k, value in edits:
        parts[k % len(parts)] = value
    return " ".join(parts)


def _assert_valid_morphology(m: Morphology) -> None:
    assert isinstance(m, Morphology) and m.n_nodes > 0
    assert (m.parent < np.arange(m.n_nodes)).all() and (m.parent >= -1).all()
    assert np.isfinite(m.xyz).all()
    assert np.isfinite(m.radius).all() and (m.radius >= 0).all()


@settings(max_examples=500, **SETTINGS)
@given(m=morphologies(), fields=st.lists(FIELD_EDIT, max_size=3), edits=st.lists(EDIT, max_size=6))
def test_corrupt_swc_gives_swc_error_or_a_valid_morphology(m, fields, edits):
    data = corrupt(corrupt_fields(format_swc(m), fields).encode(), edits)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # overflow / invalid casts are bugs too
        path = Path(tmp) / "bad.swc"
        path.write_bytes(data)
        try:
            got = read_swc(path)
        except SWCError as err:
            assert "bad.swc" in str(err) and "\n" not in str(err)
            return
    _assert_valid_morphology(got)


# ----------------------------------------------------------------------------------------------- volumes
DTYPES = st.sampled_from([np.uint8, np.uint16, np.float32])
VOXEL = st.tuples(*[st.floats(0.05, 20.0, allow_nan=False)] * 3)

# Found by these properties and fixed in tiff.py: tifffile's own exceptions on corrupt files now become
# TiffError, and a one-pixel-wide (Z, Y, 1) stack, which ImageJ TIFF cannot hold, is refused at writing.


@st.composite
def volumes(draw, finite: bool = False, min_z: int = 1, x: tuple[int, int] = (1, 6)) -> np.ndarray:
    dtype = draw(DTYPES)
    shape = (draw(st.integers(min_z, 4)), draw(st.integers(1, 6)), draw(st.integers(*x)))
    if dtype == np.float32:
        elements = st.floats(width=32, allow_nan=not finite, allow_infinity=not finite)
    else:
        elements = st.integers(0, int(np.iinfo(dtype).max))
    return draw(arrays(dtype, shape, elements=elements))


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Same shape, dtype (any byte order) and bytes: NaN payloads and -0.0 included."""
    a, b = np.asarray(a), np.asarray(b)
    native = a.dtype.newbyteorder("=")
    return (a.shape == b.shape and native == b.dtype.newbyteorder("=")
            and np.array_equal(a.astype(native).view(np.uint8), b.astype(native).view(np.uint8)))


def _round_trip(suffix: str, arr: np.ndarray, voxel) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_volume(Path(tmp) / f"vol{suffix}", arr, voxel_size=voxel)
        vol = open_volume(path)
        got = vol.read()
        assert _same_bits(got, arr), (got, arr)
        if suffix == ".v3draw":
            assert vol.voxel_size is None  # the format records none
        else:
            assert vol.voxel_size == pytest.approx(voxel, rel=1e-5)
        del vol, got  # release memory maps before the folder goes


# TIFF: write_stack refuses a single slice by design (it would read back as a 2D image), so Z >= 2;
# one-pixel-wide stacks (X = 1) are the separate, xfailed property below.
@pytest.mark.parametrize("suffix, min_z, x",
                         [(".tif", 2, (2, 6)), (".v3draw", 1, (1, 6)), (".ome.zarr", 1, (1, 6))],
                         ids=["tif", "v3draw", "ome.zarr"])
@settings(max_examples=40, **SETTINGS)
@given(data=st.data(), voxel=VOXEL)
def test_volume_round_trip_is_bit_identical(suffix, min_z, x, data, voxel):
    _round_trip(suffix, data.draw(volumes(min_z=min_z, x=x), label="arr"), voxel)


@settings(max_examples=10, phases=(Phase.explicit, Phase.generate), **SETTINGS)
@given(arr=volumes(min_z=2, x=(1, 1)), voxel=VOXEL)
@example(arr=np.zeros((2, 1, 1), np.uint8), voxel=(1.0, 1.0, 1.0))
def test_one_pixel_wide_stacks_are_refused_as_tiff_and_kept_as_ome_zarr(arr, voxel):
    with tempfile.TemporaryDirectory() as tmp, pytest.raises(VolumeError, match="one pixel wide"):
        write_volume(Path(tmp) / "v.tif", arr, voxel_size=voxel)
    _round_trip(".ome.zarr", arr, voxel)


def _read_corrupt(path: Path, data: bytes):
    path.write_bytes(data)
    try:
        vol = open_volume(path)
        arr = vol.read()
        _ = vol.voxel_size
    except VolumeError as err:
        assert path.name in str(err)
        return None
    assert arr.ndim == 3 and arr.size > 0
    return arr


@pytest.mark.parametrize("suffix", [
    ".tif", ".v3draw"])
@settings(max_examples=200, phases=(Phase.explicit, Phase.generate), **SETTINGS)
@given(arr=volumes(finite=True, min_z=2, x=(2, 6)), edits=st.lists(EDIT, min_size=1, max_size=4))
@example(arr=np.zeros((2, 1, 2), np.uint8), edits=[("flip", 178, 0)])
def test_corrupt_volume_gives_volume_error_or_an_array(suffix, arr, edits):
    with tempfile.TemporaryDirectory() as tmp:
        good = write_volume(Path(tmp) / f"good{suffix}", arr, voxel_size=(2.0, 0.5, 0.5)).read_bytes()
        _read_corrupt(Path(tmp) / f"bad{suffix}", corrupt(good, edits))
