"""Chunked (out-of-core) tracing agrees with whole-volume `trace`, reads chunk by chunk, stitches seams."""

from __future__ import annotations

from pathlib import Path

import cc3d
import numpy as np
import pytest

from neurovit.data.morphogen import GrowthParams, random_morphology
from neurovit.data.render import render_mask
from neurovit.data.volumes import open_volume, write_volume
from neurovit.metrics import neuron_distance
from neurovit.trace import TraceError, trace
from neurovit.trace_chunked import trace_chunked

SHAPE = (64, 200, 200)
CHUNK = (32, 96, 96)  # 2 × 3 × 3 chunks; 96 and 192 are seams in y and x, 32 in z
CORNER = (96.0, 96.0, 32.0)  # x, y, z: where 8 chunks meet


class LazyVolume:
    """A (Z, Y, X) array that records every block read and refuses to hand out the whole volume."""

    def __init__(self, array: np.ndarray):
        self._array = array
        self.shape, self.dtype = array.shape, array.dtype
        self.reads: list[tuple[slice, slice, slice]] = []

    def __getitem__(self, key):
        assert isinstance(key, tuple) and len(key) == 3 and all(isinstance(k, slice) for k in key), key
        size = tuple(len(range(*k.indices(n))) for k, n in zip(key, self.shape))
        if size == tuple(self.shape):
            raise AssertionError("whole-volume read")
        self.reads.append(key)
        return self._array[key].copy()

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole volume was converted to an array")


def tube(mask: np.ndarray, a_zyx, b_zyx, radius: float) -> None:
    """Set the voxels within `radius` of the segment a–b (voxel units)."""
    a, b = np.asarray(a_zyx, float), np.asarray(b_zyx, float)
    lo = np.maximum(np.floor(np.minimum(a, b) - radius - 1), 0).astype(int)
    hi = np.minimum(np.ceil(np.maximum(a, b) + radius + 2), mask.shape).astype(int)
    grid = np.stack(np.meshgrid(*(np.arange(lo[i], hi[i]) for i in range(3)), indexing="ij"), -1)
    grid = grid.astype(float)
    t = np.clip(((grid - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    near = np.linalg.norm(grid - (a + t[..., None] * (b - a)), axis=-1) <= radius
    mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] |= near


def neurons(seed: int, primary_radius=(1.5, 2.5)) -> np.ndarray:
    """Three rendered random neurons; the first has its soma on the corner where 8 chunks meet."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(SHAPE, bool)
    for soma in (CORNER, (50.0, 150.0, 20.0), (150.0, 40.0, 45.0)):
        params = GrowthParams(max_nodes=600, primary_radius=primary_radius, soma_radius=(4.0, 6.0))
        neuron = random_morphology(rng, (199.0, 199.0, 63.0), params, soma_xyz=np.array(soma))
        mask |= render_mask(neuron, SHAPE)
    return mask


def tubes() -> np.ndarray:
    """Hand-drawn: a diagonal tube through the 8-chunk corner, one lying on a seam line (z = 31.5, y = 95.5:
    its centre is ambiguous between two chunks along its whole length) and an L across two seams."""
    mask = np.zeros(SHAPE, bool)
    tube(mask, (4, 10, 10), (60, 185, 185), 2.0)
    tube(mask, (31.5, 95.5, 120), (31.5, 95.5, 195), 1.5)
    tube(mask, (16, 150, 20), (16, 150, 150), 2.5)
    tube(mask, (16, 150, 150), (16, 60, 150), 2.5)
    return mask


@pytest.fixture(scope="module")
def rendered():
    mask = neurons(0)
    return mask, trace(mask)


def assert_agrees(chunked, whole, length_tol=0.04):
    assert len(chunked.roots) == len(whole.roots)
    assert neuron_distance(chunked, whole)["esa"] <= 0.5
    assert chunked.total_length == pytest.approx(whole.total_length, rel=length_tol)


def test_chunked_agrees_with_whole_volume_and_reads_chunk_by_chunk(rendered):
    mask, whole = rendered
    lazy = LazyVolume(mask)
    m = trace_chunked(lazy, chunk=CHUNK, overlap=16)
    assert len(whole.roots) == 3 and m.units == "voxel"
    assert_agrees(m, whole)
    assert (m.parent[1:] < np.arange(1, len(m))).all()
    # one read per chunk (2 × 3 × 3), each at most chunk + 2 × overlap, together covering the volume
    assert len(lazy.reads) == 18 and any("18 chunks" in h for h in m.header)
    seen = np.zeros(SHAPE, np.int8)
    for key in lazy.reads:
        assert all(k.stop - k.start <= c + 32 for k, c in zip(key, CHUNK))
        seen[key] += 1
    assert seen.min() >= 1 and seen.max() <= 8


def test_thin_anisotropic_neurons_agree():
    mask, vs = neurons(1, primary_radius=(0.8, 1.5)), (2.0, 1.0, 1.0)
    whole = trace(mask, voxel_size=vs)
    m = trace_chunked(mask, chunk=CHUNK, voxel_size=vs)
    assert len(whole.roots) == 3
    assert_agrees(m, whole)


def test_tubes_through_a_corner_and_along_seams():
    mask = tubes()
    whole = trace(mask)
    m = trace_chunked(mask, chunk=CHUNK)
    assert len(whole.roots) == 3
    assert_agrees(m, whole, length_tol=0.02)
    # without fragment joining, trees are still the connected components: seams never depend on join_distance
    n_components = cc3d.connected_components(mask, connectivity=26, return_N=True)[1]
    assert len(trace_chunked(mask, chunk=CHUNK, join_distance=0).roots) == n_components == 3


@pytest.mark.parametrize("voxel_size", [(1.0, 1.0, 1.0), (2.5, 1.0, 1.0)])
def test_one_chunk_gives_exactly_trace(rendered, voxel_size):
    mask = rendered[0]
    whole = trace(mask, voxel_size=voxel_size, join_distance=4.0)
    m = trace_chunked(mask, chunk=(100, 256, 256), voxel_size=voxel_size, join_distance=4.0)
    for name in ("xyz", "radius", "types", "parent"):
        np.testing.assert_array_equal(getattr(m, name), getattr(whole, name))
    assert m.header[:4] == whole.header[:4]


def test_dust_is_removed_as_in_trace_also_across_seams():
    mask = tubes()
    mask[31:33, 95:97, 40] = True  # 4 voxels on the 4-chunk seam line, far from the tubes
    mask[10, 20, 60:63] = True  # 3 voxels inside one chunk
    for min_size in (0, 8):
        whole = trace(mask, min_size=min_size, join_distance=0)
        m = trace_chunked(mask, chunk=CHUNK, min_size=min_size, join_distance=0)
        assert len(m.roots) == len(whole.roots) == (5 if min_size == 0 else 3)


def test_empty_and_below_threshold_give_an_empty_morphology():
    m = trace_chunked(LazyVolume(np.zeros(SHAPE, np.float32)), chunk=CHUNK)
    assert len(m) == 0 and m.units == "voxel" and any("empty" in h for h in m.header)
    assert len(trace_chunked(np.full((8, 30, 30), 0.4, np.float32), chunk=8)) == 0


def test_probability_volume_from_a_zarr_file(tmp_path: Path, rendered):
    mask, whole = rendered
    prob = np.where(mask, 0.8, 0.1).astype(np.float32)
    write_volume(tmp_path / "prob.ome.zarr", prob)
    array = open_volume(tmp_path / "prob.ome.zarr").array  # lazy zarr array
    m = trace_chunked(array, chunk=CHUNK, threshold=0.5)
    ref = trace_chunked(mask, chunk=CHUNK)
    np.testing.assert_array_equal(m.xyz, ref.xyz)
    np.testing.assert_array_equal(m.parent, ref.parent)
    assert len(trace_chunked(open_volume(tmp_path / "prob.ome.zarr"), chunk=CHUNK)) == len(ref)  # ImageVolume


def test_bad_arguments():
    with pytest.raises(TraceError, match="3D"):
        trace_chunked(np.zeros((8, 8)))
    with pytest.raises(TraceError, match="chunk"):
        trace_chunked(np.zeros((8, 8, 8)), chunk=(0, 8, 8))
    with pytest.raises(TraceError, match="overlap"):
        trace_chunked(np.zeros((8, 8, 8)), overlap=-1)
    with pytest.raises(TypeError, match="unexpected"):
        trace_chunked(np.zeros((8, 8, 8)), min_szie=3)
