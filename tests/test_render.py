"""Ground-truth masks: exactness against brute force, anisotropy, somata, connectivity."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from neurovit.cli import main
from neurovit.data import render
from neurovit.data.render import cone_sphere_excess, fit_to_volume, render_mask, render_segment_ids
from neurovit.data.swc import Morphology, read_swc
from neurovit.errors import DatasetError


def brute_force_excess(points_zyx, a, b, ra, rb, samples=4001):
    """min over capsules and densely sampled t of |p - c(t)| - r(t)."""
    t = np.linspace(0, 1, samples)
    best = np.full(len(points_zyx), np.inf)
    for ai, bi, rai, rbi in zip(a, b, ra, rb):
        c = ai + t[:, None] * (bi - ai)
        r = rai + t * (rbi - rai)
        d = np.linalg.norm(points_zyx[:, None, :] - c[None], axis=2) - r[None]
        best = np.minimum(best, d.min(axis=1))
    return best


def grid_points(shape, voxel_size):
    idx = np.indices(shape).reshape(3, -1).T
    return idx * np.asarray(voxel_size, float)


def test_cone_sphere_matches_point_to_segment_for_constant_radius():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    p = rng.normal(size=(50, 3)) * 2
    d = b - a
    t = np.clip(((p - a) * d).sum(1) / (d * d).sum(1), 0, 1)
    dist = np.linalg.norm(p - (a + t[:, None] * d), axis=1)
    r = np.full(50, 0.7)
    np.testing.assert_allclose(cone_sphere_excess(p, a, b, r, r), dist - 0.7, atol=1e-12)


def test_cone_sphere_matches_dense_sampling_for_tapered_segments():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(40, 3)) * 3, rng.normal(size=(40, 3)) * 3
    ra, rb = rng.uniform(0.1, 2.5, 40), rng.uniform(0.1, 2.5, 40)
    p = rng.normal(size=(40, 3)) * 3
    exact = cone_sphere_excess(p, a, b, ra, rb)
    brute = np.array([brute_force_excess(p[i:i + 1], a[i:i + 1], b[i:i + 1], ra[i:i + 1], rb[i:i + 1])[0]
                      for i in range(40)])
    np.testing.assert_allclose(exact, brute, atol=2e-3)
    assert (exact <= brute + 1e-9).all()  # the closed form is the true minimum


def test_mask_equals_brute_force_on_small_anisotropic_tree():
    # Neurite nodes only (no soma), tapered radii, voxel size (z, y, x) = (1.5, 0.5, 0.7) µm.
    xyz = np.array([[2.0, 2.0, 3.0], [6.0, 3.0, 4.5], [9.0, 7.0, 6.0], [4.0, 8.0, 3.0], [10.0, 2.5, 9.0]])
    radius = np.array([1.6, 1.0, 0.6, 0.9, 0.4])
    m = Morphology(xyz, radius, np.full(5, 3), np.array([-1, 0, 1, 1, 1]))
    vs, shape = (1.5, 0.5, 0.7), (9, 22, 17)
    mask = render_mask(m, shape, vs, min_radius=0.0, connect=False)
    e = m.edges
    zyx = xyz[:, ::-1]
    brute = brute_force_excess(grid_points(shape, vs), zyx[e[:, 0]], zyx[e[:, 1]], radius[e[:, 0]],
                               radius[e[:, 1]]).reshape(shape)
    clear = np.abs(brute) > 5e-3  # ignore voxels within sampling error of the surface
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(mask[clear], brute[clear] <= 0)
    assert 50 < mask.sum() < mask.size / 2


def test_min_radius_clamps_thin_neurites_and_centreline_keeps_them_connected():
    # A zig-zag neurite of radius 0 on isotropic 1 µm voxels.
    xyz = np.array([[1.0, 1.0, 1.0], [7.3, 4.6, 2.2], [13.1, 1.7, 3.9], [19.0, 8.2, 1.4]])
    m = Morphology(xyz, np.zeros(4), np.full(4, 3), np.array([-1, 0, 1, 2]))
    shape = (6, 11, 21)
    loose = render_mask(m, shape, min_radius=0.0, connect=False)
    full = render_mask(m, shape)
    labels, n = ndimage.label(full, np.ones((3, 3, 3)))
    assert n == 1
    assert loose.sum() < full.sum() / 4  # radius 0 alone hits almost no voxel centre
    # every node's voxel is in the mask
    for x, y, z in xyz:
        assert labels[int(round(z)), int(round(y)), int(round(x))] == 1


def test_soma_is_a_sphere_and_neurites_leave_it_with_their_own_radius():
    xyz = np.array([[10.0, 10.0, 10.0], [18.0, 10.0, 10.0]])
    m = Morphology(xyz, np.array([4.0, 0.5]), np.array([1, 3]), np.array([-1, 0]))
    mask = render_mask(m, (21, 21, 21), min_radius=0.0, connect=False)
    assert mask[10, 10, 6] and mask[10, 14, 10] and mask[14, 10, 10]  # sphere of radius 4
    assert not mask[10, 10, 5]
    assert mask[10, 10, 17]  # the neurite
    assert not mask[10, 12, 15]  # no cone from the soma radius: 2 µm off-axis at x=15 is outside
    ball = np.linalg.norm(grid_points((21, 21, 21), (1, 1, 1)) - [10, 10, 10], axis=1).reshape(21, 21, 21) <= 4
    assert (mask[ball]).all()


def test_voxel_unit_morphology_renders_like_um(tiny_swc):
    m = read_swc(tiny_swc)
    vs = (2.0, 0.5, 0.5)
    um = render_mask(m, (4, 16, 24), vs)
    vox = render_mask(m.to_voxels(vs), (4, 16, 24), vs)
    np.testing.assert_array_equal(um, vox)
    assert um.sum() > 20


def test_segment_ids_cover_the_mask(tiny_swc):
    m = read_swc(tiny_swc)
    ids = render_segment_ids(m, (4, 16, 24), (2.0, 0.5, 0.5))
    mask = render_mask(m, (4, 16, 24), (2.0, 0.5, 0.5))
    np.testing.assert_array_equal(ids >= 0, mask)
    assert set(np.unique(ids[ids >= 0])) <= set(range(m.n_nodes))
    assert len(np.unique(ids[ids >= 0])) >= 4


def test_out_of_volume_parts_are_clipped_not_wrapped():
    m = Morphology(np.array([[-20.0, 3.0, 2.0], [30.0, 3.0, 2.0]]), np.array([1.0, 1.0]), np.full(2, 3),
                   np.array([-1, 0]))
    mask = render_mask(m, (5, 7, 9))
    assert mask[2, 3, :].all()
    assert mask.sum() == mask[:, 2:5, :].sum()


def test_bad_voxel_size_is_rejected(tiny_swc):
    with pytest.raises(ValueError, match="voxel_size"):
        render_mask(read_swc(tiny_swc), (4, 4, 4), (1.0, 0.0, 1.0))


@pytest.mark.slow
def test_every_real_morphology_renders(shared_morphologies):
    for f in sorted(shared_morphologies.glob("*.swc")):
        m, shape = fit_to_volume(read_swc(f), (4.0, 4.0, 4.0), margin=2.0)
        mask = render_mask(m, shape, (4.0, 4.0, 4.0))
        _, n = ndimage.label(mask, np.ones((3, 3, 3)))
        roots = len(m.roots)
        assert 0 < n <= roots, f.name  # each tree stays one piece at coarse voxels


HUGE_SWC = "1 1 0 0 0 1 -1\n2 3 1e12 0 0 1 1\n"  # coordinates in nm (or worse) read as µm


def test_fit_to_volume_refuses_a_grid_too_large_to_allocate(write_swc_text):
    m = read_swc(write_swc_text(HUGE_SWC, name="huge.swc"))
    with pytest.raises(DatasetError) as info:
        fit_to_volume(m, (1.0, 1.0, 1.0))
    msg = str(info.value)
    assert "huge.swc" in msg and "13 x 13 x 1000000000013 (z, y, x)" in msg
    assert "1e+12 x 2 x 2 µm (x, y, z)" in msg and f"{render.MAX_GRID_VOXELS:,}" in msg
    assert "check the SWC's units (µm vs nm/voxels) and the voxel size" in msg and "\n" not in msg


def test_fit_to_volume_converts_a_voxel_unit_morphology_to_um(tiny_swc):
    m = read_swc(tiny_swc)
    vs = (2.0, 0.5, 0.25)
    um, shape = fit_to_volume(m, vs)
    from_vox, shape_vox = fit_to_volume(m.to_voxels(vs), vs)
    assert shape_vox == shape and from_vox.units == "um"
    np.testing.assert_allclose(from_vox.xyz, um.xyz)
    np.testing.assert_allclose(from_vox.radius, um.radius)


def test_fit_to_volume_limit_is_the_module_constant(tiny_swc, monkeypatch):
    m = read_swc(tiny_swc)
    _, shape = fit_to_volume(m, (1.0, 1.0, 1.0), margin=0.0)
    n = int(np.prod(shape))
    monkeypatch.setattr(render, "MAX_GRID_VOXELS", n)
    assert fit_to_volume(m, (1.0, 1.0, 1.0), margin=0.0)[1] == shape  # exactly at the limit: fine
    monkeypatch.setattr(render, "MAX_GRID_VOXELS", n - 1)
    with pytest.raises(DatasetError, match="tiny.swc"):
        fit_to_volume(m, (1.0, 1.0, 1.0), margin=0.0)


@pytest.mark.parametrize("func", [render_mask, render_segment_ids])
def test_render_refuses_a_grid_over_the_limit_before_allocating(tiny_swc, func):
    pattern = r"tiny.swc: .*2048 x 2048 x 1024 \(z, y, x\) grid.*check the SWC's units"
    with pytest.raises(DatasetError, match=pattern):
        func(read_swc(tiny_swc), (2048, 2048, 1024))  # 2**32 voxels


def test_render_rejects_a_negative_shape(tiny_swc):
    with pytest.raises(DatasetError, match=r"three non-negative integers"):
        render_mask(read_swc(tiny_swc), (4, -4, 4))


def test_render_refuses_coordinates_beyond_1000_km(tiny_swc):
    m = read_swc(tiny_swc).translate((0.0, 0.0, 3e15))
    with pytest.raises(DatasetError, match="reach 3e\\+15 µm.*check the SWC's units"):
        render_mask(m, (4, 4, 4))


def test_a_far_too_long_neurite_renders_in_a_given_small_grid():
    # before: one 1e12 µm edge was cut into 2.5e11 pieces first (terabytes), though 5 voxels are inside
    m = Morphology(np.array([[0.0, 0.0, 0.0], [1e12, 0.0, 0.0]]), np.ones(2), np.full(2, 3),
                   np.array([-1, 0]))
    mask = render_mask(m, (5, 5, 5))
    assert mask.sum() == 15 and mask[0, 0, :].all() and mask[0, 1, :].all() and mask[1, 0, :].all()
    ids = render_segment_ids(m, (5, 5, 5))
    np.testing.assert_array_equal(ids >= 0, mask)


@pytest.mark.parametrize("connect", [True, False])
def test_rendering_a_corner_of_the_grid_matches_the_whole(tiny_swc, connect):
    # Only the capsule pieces that can reach the grid are made; the result must not change.
    m = read_swc(tiny_swc).resample(0.7)
    whole = render_mask(m, (6, 20, 30), (0.5, 0.25, 0.3), connect=connect)
    corner = render_mask(m, (3, 9, 21), (0.5, 0.25, 0.3), connect=connect)
    np.testing.assert_array_equal(corner, whole[:3, :9, :21])
    assert corner.sum() > 10
    ids = render_segment_ids(m, (6, 20, 30), (0.5, 0.25, 0.3), connect=connect)
    np.testing.assert_array_equal(render_segment_ids(m, (3, 9, 21), (0.5, 0.25, 0.3), connect=connect),
                                  ids[:3, :9, :21])


def test_cli_render_of_a_huge_swc_is_a_one_line_error(write_swc_text, tmp_path, capsys):
    swc = write_swc_text(HUGE_SWC, name="huge.swc")
    out = tmp_path / "mask.tif"
    assert main(["render", "--swc", str(swc), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("neurovit render: error: ") and "huge.swc" in err and "check the SWC's units" in err
    assert not out.exists()


def test_cli_render_of_a_huge_swc_into_a_given_shape_works(write_swc_text, tmp_path, capsys):
    swc = write_swc_text(HUGE_SWC, name="huge.swc")
    out = tmp_path / "mask.tif"
    assert main(["render", "--swc", str(swc), "--out", str(out), "--shape", "5", "5", "5"]) == 0
    assert "15 foreground voxels" in capsys.readouterr().out and out.exists()


def test_cli_render_of_an_swc_with_nan_is_a_one_line_error(write_swc_text, tmp_path, capsys):
    swc = write_swc_text("1 1 0 0 0 1 -1\n2 3 nan 0 0 1 1\n", name="nan.swc")
    assert main(["render", "--swc", str(swc), "--out", str(tmp_path / "m.tif")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nan.swc:2: coordinate is not finite" in err
