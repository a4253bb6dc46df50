"""Tracing volumes into SWC forests: axis order, anisotropy, joining, soma root, empty input, speed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from neurovit.data.morphogen import GrowthParams, random_morphology
from neurovit.data.render import render_mask
from neurovit.data.swc import SOMA, read_swc
from neurovit.errors import VolumeError
from neurovit.metrics import neuron_distance, point_segment_distance
from neurovit.trace import TraceError, skeleton_to_morphology, trace, trace_to_swc


def l_shape(shape=(8, 24, 60)) -> np.ndarray:
    """A 3-voxel thick L in slice 4: along x at row 5 (x 5..50), then along y at column 50 (y 5..20)."""
    vol = np.zeros(shape, np.float32)
    vol[3:6, 4:7, 5:51] = 0.9
    vol[3:6, 5:21, 49:52] = 0.9
    return vol


L_SEGMENTS_XYZ = (np.array([[5.0, 5, 4], [50.0, 5, 4]]), np.array([[50.0, 5, 4], [50.0, 20, 4]]))


def distance_to_l(xyz: np.ndarray) -> np.ndarray:
    return np.minimum(*(point_segment_distance(xyz, a, b) for a, b in L_SEGMENTS_XYZ))


def test_trace_keeps_x_y_z_of_an_asymmetric_shape():
    m = trace(l_shape())
    assert m.units == "voxel" and len(m.roots) == 1
    assert distance_to_l(m.xyz).max() < 1.5  # every node on the L (in x = column, y = row, z = slice)
    lo, hi = m.xyz.min(axis=0), m.xyz.max(axis=0)
    assert lo[0] <= 6 and hi[0] >= 49  # x spans the columns
    assert lo[1] <= 6 and hi[1] >= 19  # y spans the rows
    assert np.all(np.abs(m.xyz[:, 2] - 4) <= 1)  # z stays at the slice
    assert m.total_length > 45 + 14  # the whole L is covered


def test_anisotropy_does_not_change_voxel_coordinates():
    m = trace(l_shape(), voxel_size=(2.0, 1.0, 1.0))
    assert distance_to_l(m.xyz).max() < 1.5
    assert np.all(np.abs(m.xyz[:, 2] - 4) <= 1)  # still slice indices, not µm


def test_threshold_and_min_size():
    vol = np.zeros((6, 20, 40), np.float32)
    vol[2:4, 4:6, 2:30] = 0.8  # above 0.5
    vol[2:4, 14:16, 2:30] = 0.4  # below 0.5
    vol[3, 10, 35:38] = 1.0  # a three-voxel speck (kimimaro ignores single voxels)
    m = trace(vol)
    assert len(m.roots) == 1 and np.all(np.abs(m.xyz[:, 1] - 4.5) <= 1)
    m0 = trace(vol, min_size=0)
    assert len(m0.roots) == 2  # the speck is a tree of its own when kept
    assert len(trace(vol, threshold=0.3).roots) == 2  # both bars


def test_fragments_are_joined_across_small_gaps_and_far_ones_stay_apart():
    vol = np.zeros((6, 40, 80), bool)
    vol[2:4, 5:7, 2:30] = True
    vol[2:4, 5:7, 33:60] = True  # gap of 3 voxels: same neurite
    vol[2:4, 35:37, 2:60] = True  # 29 rows away: another neuron
    m = trace(vol, join_distance=6.0)
    assert len(m.roots) == 2
    assert len(trace(vol, join_distance=0.0).roots) == 3
    # the joined tree spans both fragments
    far = m.xyz[:, 1] < 20
    assert m.xyz[far, 0].min() <= 4 and m.xyz[far, 0].max() >= 57


def test_tree_is_rooted_at_the_soma():
    vol = np.zeros((24, 40, 80), bool)
    zz, yy, xx = np.indices(vol.shape)
    vol[(zz - 12) ** 2 + (yy - 20) ** 2 + (xx - 15) ** 2 <= 36] = True  # soma, radius 6
    vol[11:14, 19:22, 15:75] = True  # neurite leaving it
    m = trace(vol)
    root = m.roots[0]
    assert len(m.roots) == 1 and m.types[root] == SOMA
    assert m.radius[root] == m.radius.max() >= 4
    np.testing.assert_allclose(m.xyz[root], (15, 20, 12), atol=2.0)
    assert (m.parent[1:] < np.arange(1, len(m))).all()  # parents first


def test_empty_volume_gives_an_empty_morphology(tmp_path: Path):
    m = trace(np.zeros((4, 8, 8), np.float32))
    assert len(m) == 0 and m.units == "voxel"
    assert any("empty" in h for h in m.header)
    out = tmp_path / "empty.swc"
    trace_to_swc(np.zeros((4, 8, 8)), out)
    text = out.read_text()
    assert "empty" in text and not [t for t in text.splitlines() if t and not t.startswith("#")]


def test_bad_input_raises_trace_error():
    with pytest.raises(TraceError, match="3D"):
        trace(np.zeros((8, 8)))
    with pytest.raises(VolumeError, match="voxel_size must be three positive numbers"):  # the one check
        trace(np.zeros((4, 8, 8)), voxel_size=(1.0, -1.0, 1.0))


def test_trace_to_swc_writes_header_and_round_trips(tmp_path: Path):
    out = tmp_path / "l.swc"
    m = trace_to_swc(l_shape(), out, threshold=0.6, voxel_size=(2.0, 1.0, 1.0), notes=["model: test.ckpt"])
    text = out.read_text()
    for needle in ("volume >= 0.6", "voxel_size_zyx: [2.0, 1.0, 1.0]", "x = column", "const=4", "model: test.ckpt",
                   "units: voxel"):
        assert needle in text
    back = read_swc(out, units="voxel")
    np.testing.assert_allclose(back.xyz, m.xyz, atol=1e-4)
    np.testing.assert_array_equal(back.parent, m.parent)


def test_traced_neuron_is_close_to_the_rendered_morphology():
    rng = np.random.default_rng(5)
    gold = random_morphology(rng, (120.0, 90.0, 20.0), GrowthParams(max_nodes=400))
    shape, vs = (12, 96, 128), (2.0, 1.0, 1.0)
    mask = render_mask(gold, shape, vs)
    m = trace(mask, voxel_size=vs)
    s = neuron_distance(m, gold.to_voxels(vs))
    assert s["esa"] < 1.0 and s["pds"] < 0.1


@pytest.mark.slow
def test_tracing_a_256x512x512_mask_takes_seconds():
    rng = np.random.default_rng(0)
    shape, vs = (256, 512, 512), (2.0, 1.0, 1.0)
    mask = np.zeros(shape, bool)
    for _ in range(3):
        mask |= render_mask(random_morphology(rng, (511.0, 511.0, 510.0), GrowthParams(max_nodes=3000)), shape, vs)
    t0 = time.perf_counter()
    m = trace(mask, voxel_size=vs)
    assert time.perf_counter() - t0 < 60
    assert len(m) > 1000


def test_the_tree_with_the_thickest_root_comes_first_and_each_tree_is_one_block():
    """Two separate chains; the one with the thick root (a soma) has the higher vertex indices. The SWC must
    start with that soma, list each tree as one contiguous block, and keep every parent before its child."""
    thin = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 0, 3]], float)
    thick = np.array([[0, 20, 0], [0, 20, 1], [0, 20, 2]], float)
    vertices = np.concatenate([thin, thick])
    edges = np.array([[0, 1], [1, 2], [2, 3], [4, 5], [5, 6]])
    radii = np.array([1.0, 0.5, 0.5, 0.5, 4.0, 1.0, 1.0])
    m = skeleton_to_morphology(vertices, edges, radii, join_distance=0.0, soma_radius=3.0)
    assert m.radius[0] == 4.0 and m.parent[0] == -1 and m.types[0] == SOMA
    assert list(m.parent < 0) == [True, False, False, True, False, False, False]
    assert np.all(m.xyz[:3, 1] == 20) and np.all(m.xyz[3:, 1] == 0)  # zyx → xyz: y of the thick chain is 20
    assert all(p < i for i, p in enumerate(m.parent) if p >= 0)
    assert m.radius[3] == 1.0  # the thin tree is rooted at its own largest radius
