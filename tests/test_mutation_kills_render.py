"""Targeted tests that kill mutants of neurovit/data/render.py (the ground-truth mask renderer).

Each test pins a behaviour the broader tests (tests/test_render.py) left open: exact refusal messages
(users act on them), dtypes and backgrounds, degenerate grids and morphologies, the steep-cone and
zero-length branches of `cone_sphere_excess`, the centreline's 26-connected chain, segment ids of somata
and isolated roots, the pieces a long edge is cut into, the rendering of a window of the grid, and the
memory bound of `_inside_voxels`. The mutants they kill are named in the comments (mutmut's names,
`python tests/mutation.py render` lists them); equivalent mutants are documented in
tests/mutation_equivalent.txt instead.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from neurovit.data import render
from neurovit.data.render import (
    _prepare,
    cone_sphere_excess,
    fit_to_volume,
    render_mask,
    render_segment_ids,
    segments_zyx,
)
from neurovit.data.swc import Morphology
from neurovit.errors import DatasetError

LIMIT = "over the limit of 2,147,483,648 (neurovit.data.render.MAX_GRID_VOXELS)"
CHECK = "check the SWC's units (µm vs nm/voxels) and the voxel size"


def morph(xyz, radius, parent, types=None, **kw) -> Morphology:
    """A Morphology from plain lists (type 3, neurite, unless given)."""
    n = len(xyz)
    return Morphology(np.asarray(xyz, dtype=float).reshape(n, 3), np.asarray(radius, dtype=float),
                      np.full(n, 3) if types is None else np.asarray(types), np.asarray(parent), **kw)


def empty() -> Morphology:
    return morph(np.zeros((0, 3)), [], [])


# ============================================================ _check_shape, _refuse_grid, _extent_um
def test_grid_refusal_message_exactly_for_a_voxel_unit_morphology_without_source():
    # x__refuse_grid__mutmut_3/4/7/11 (the "<morphology>" fallback, the extent's voxel size, the advice),
    # x__extent_um__mutmut_6/8/9/10/11 (voxel units are converted to µm first), x__check_shape__mutmut_23,
    # x_render_mask__mutmut_6/12/13 and x_render_segment_ids__mutmut_6/12/13 (what is refused)
    # 0..40 x 0..8 x 0..2 voxels of radius 4 (x-voxels) = 0..10 x 0..4 x 0..4 µm of radius 1 µm
    m = morph([[0, 0, 0], [40, 8, 2]], [4, 4], [-1, 0], units="voxel")
    vs = (2.0, 0.5, 0.25)
    for func, what in ((render_mask, "mask"), (render_segment_ids, "segment-id volume")):
        with pytest.raises(DatasetError) as info:
            func(m, (2048, 2048, 1024), vs)
        assert str(info.value) == (
            f"<morphology>: {what} would be a 2048 x 2048 x 1024 (z, y, x) grid = 4.29e+09 voxels, {LIMIT}; "
            f"the neuron spans 12 x 6 x 6 µm (x, y, z) at voxel size (2.0, 0.5, 0.25) µm (z, y, x): {CHECK}")


def test_grid_refusal_of_an_empty_morphology_says_it_has_no_nodes():
    # x__extent_um__mutmut_2/3/4
    with pytest.raises(DatasetError) as info:
        render_mask(empty(), (2048, 2048, 1024))
    assert "; the neuron spans nothing (no nodes) at voxel size (1.0, 1.0, 1.0) µm" in str(info.value)


def test_a_shape_that_is_no_sequence_is_refused_with_the_sourceless_name():
    # x__check_shape__mutmut_4 (dims = None: TypeError), x__check_shape__mutmut_5/6/7/8 ("<morphology>")
    for shape in (None, (4, "x", 4), (4, 4)):
        with pytest.raises(DatasetError) as info:
            render_mask(morph([[0, 0, 0]], [1], [-1]), shape)
        assert str(info.value) == ("<morphology>: the mask shape must be three non-negative integers "
                                   f"(z, y, x), got {shape!r}")


def test_a_grid_with_an_empty_axis_is_allowed_and_renders_nothing():
    # x__check_shape__mutmut_13/14 (0 is a non-negative size)
    m = morph([[1, 1, 1], [3, 1, 1]], [1, 1], [-1, 0])
    mask = render_mask(m, (0, 3, 5))
    assert mask.shape == (0, 3, 5) and mask.dtype == bool
    ids = render_segment_ids(m, (2, 0, 5))
    assert ids.shape == (2, 0, 5) and ids.dtype == np.int32


def test_the_grid_limit_is_inclusive(monkeypatch):
    # x__check_shape__mutmut_18 (a grid of exactly MAX_GRID_VOXELS voxels is fine)
    m = morph([[1, 1, 1]], [0.5], [-1])
    monkeypatch.setattr(render, "MAX_GRID_VOXELS", 27)
    assert render_mask(m, (3, 3, 3)).sum() == 1
    with pytest.raises(DatasetError, match=r"3 x 3 x 4 \(z, y, x\) grid = 36 voxels, over the limit of 27 "):
        render_mask(m, (3, 3, 4))


# ============================================================================ render_mask, render_segment_ids
def test_a_single_node_is_a_ball_of_its_own_id_on_a_bool_and_int32_grid():
    # x_render_mask__mutmut_21/16/18, x_render_segment_ids__mutmut_25/17/20/23,
    # x__inside_voxels__mutmut_66 (a capsule whose box holds one voxel centre), x__inside_voxels__mutmut_68
    m = morph([[1, 1, 1]], [0.5], [-1])
    expected = np.zeros((3, 3, 3), dtype=bool)
    expected[1, 1, 1] = True
    for connect in (False, True):
        mask = render_mask(m, (3, 3, 3), connect=connect)
        assert mask.dtype == bool
        np.testing.assert_array_equal(mask, expected)
        ids = render_segment_ids(m, (3, 3, 3), connect=connect)
        assert ids.dtype == np.int32
        np.testing.assert_array_equal(ids, np.where(expected, 0, -1))


def test_an_empty_morphology_renders_an_empty_grid_of_the_given_shape():
    # x_render_mask__mutmut_22, x_render_segment_ids__mutmut_26 (reshape), x_render_segment_ids__mutmut_23
    mask = render_mask(empty(), (2, 3, 4))
    assert mask.shape == (2, 3, 4) and mask.dtype == bool and not mask.any()
    ids = render_segment_ids(empty(), (2, 3, 4))
    assert ids.shape == (2, 3, 4) and ids.dtype == np.int32 and (ids == -1).all()


def test_segment_ids_of_somata_isolated_roots_and_branches():
    # x__prepare__mutmut_33/34/35/36/37/38: which nodes are balls decides the owner of every capsule:
    # the soma and the isolated root are; a root with a child and a tip hanging off the soma are not.
    xyz = [[4, 4, 3], [4, 10, 3], [10, 4, 3], [16, 4, 3], [16, 12, 3], [22, 12, 3], [8, 12, 3]]
    m = morph(xyz, [2, 0.5, 0.5, 0.5, 0.5, 0.5, 1], [-1, 0, 0, 2, -1, 4, -1], types=[1, 3, 3, 3, 3, 3, 3])
    ids = render_segment_ids(m, (7, 15, 25))
    np.testing.assert_array_equal(np.unique(ids), [-1, 0, 1, 2, 3, 5, 6])  # node 4 owns no capsule
    at = {(3, 4, 4): 0, (3, 8, 4): 1, (3, 4, 7): 2, (3, 4, 13): 3, (3, 12, 19): 5, (3, 12, 8): 6}
    assert {p: int(ids[p]) for p in at} == at
    np.testing.assert_array_equal(ids >= 0, render_mask(m, (7, 15, 25)))


def test_default_min_radius_is_half_the_smallest_voxel_size():
    # x__prepare__mutmut_45 (0.5 / min(v)), x_render_segment_ids__mutmut_30 (min_radius passed on)
    m = morph([[0, 0, 0], [4, 0, 0]], [0, 0], [-1, 0])
    vs, shape = (1.0, 0.5, 0.5), (3, 5, 10)
    default = render_mask(m, shape, vs, connect=False)
    assert default.sum() == 9 and default[0, 0, :9].all()  # radius 0.25 µm: the axis only
    np.testing.assert_array_equal(default, render_mask(m, shape, vs, min_radius=0.25, connect=False))
    thick = render_mask(m, shape, vs, min_radius=1.0, connect=False)
    assert thick.sum() == 38
    np.testing.assert_array_equal(render_segment_ids(m, shape, vs, min_radius=1.0, connect=False) >= 0, thick)
    np.testing.assert_array_equal(render_segment_ids(m, shape, vs, connect=False) >= 0, default)


# ============================================================================ _prepare
def test_node_coordinates_up_to_1000_km_are_accepted_and_beyond_refused_exactly():
    # x__prepare__mutmut_21 (the bound is inclusive), x__prepare__mutmut_23/24/25/27 (the message)
    at = morph([[0, 0, 0], [1e15, 0, 0]], [1, 1], [-1, 0])
    assert render_mask(at, (1, 1, 5)).all()
    beyond = morph([[0, 0, 0], [np.nextafter(1e15, np.inf), 0, 0]], [1, 1], [-1, 0])
    with pytest.raises(DatasetError) as info:
        render_mask(beyond, (1, 1, 5))
    assert str(info.value) == ("<morphology>: node coordinates reach 1e+15 µm, beyond ±1e+15 µm (1000 km) at "
                               f"voxel size (1.0, 1.0, 1.0) µm (z, y, x): {CHECK}")


# ============================================================================ fit_to_volume
def test_fit_to_volume_puts_the_neuron_margin_from_the_origin_of_an_anisotropic_grid():
    # x_fit_to_volume__mutmut_38 (extent / voxel size), x_fit_to_volume__mutmut_70 (translate by margin - lo)
    m = morph([[1.5, 2.5, 3.5], [6, 4, 5]], [0.5, 0.5], [-1, 0])  # bounds (1, 2, 3) .. (6.5, 4.5, 5.5)
    fitted, shape = fit_to_volume(m, (2.0, 0.5, 0.25), margin=1.5)
    lo, hi = fitted.bounds()
    np.testing.assert_allclose(lo, [1.5, 1.5, 1.5])
    np.testing.assert_allclose(hi, [7.0, 4.0, 4.0])
    assert shape == (3, 12, 35)  # floor((5.5, 5.5, 8.5) µm / (2, 0.5, 0.25) µm) + 1


def test_fit_to_volume_refuses_a_negative_or_infinite_margin_exactly():
    # x_fit_to_volume__mutmut_7 (inf is no margin), x_fit_to_volume__mutmut_11/12/13/14 (the message)
    m = morph([[0, 0, 0]], [1], [-1])
    for margin, text in ((-1, "-1.0"), (math.inf, "inf"), ("nan", "nan")):
        with pytest.raises(DatasetError) as info:
            fit_to_volume(m, (1.0, 1.0, 1.0), margin=margin)
        assert str(info.value) == ("<morphology>: the margin around the neuron must be a finite number "
                                   f">= 0 µm, got {text}")


def test_fit_to_volume_refusal_writes_sizes_from_1e15_voxels_in_short_form():
    # x_fit_to_volume__mutmut_53/54/55 (".3g" from exactly 1e15 on), x_fit_to_volume__mutmut_60/66/67
    m = morph([[0, 0, 0], [1e15 - 1, 0, 0]], [0, 0], [-1, 0])
    with pytest.raises(DatasetError) as info:
        fit_to_volume(m, (1.0, 1.0, 1.0), margin=0)
    assert str(info.value) == (
        f"<morphology>: the fitted volume would be a 1 x 1 x 1e+15 (z, y, x) grid = 1e+15 voxels, {LIMIT}; "
        f"the neuron spans 1e+15 x 0 x 0 µm (x, y, z) at voxel size (1.0, 1.0, 1.0) µm (z, y, x): {CHECK}")


@pytest.mark.filterwarnings("error")
def test_fit_to_volume_refuses_overflowing_and_infinite_extents_without_runtime_warnings():
    # x_fit_to_volume__mutmut_20/21/22/23 and x__extent_um__mutmut_12/13/14/15 (np.errstate over/invalid):
    # a span past the float range overflows, a node at infinity makes inf - inf; neither may warn
    huge = morph([[-1.7e308, 0, 0], [1.7e308, 0, 0]], [1, 1], [-1, 0])
    at_inf = morph([[math.inf, 0, 0]], [1], [-1])
    with pytest.raises(DatasetError) as info:
        fit_to_volume(huge, (1.0, 1.0, 1.0))
    assert "would be a 13 x 13 x inf (z, y, x) grid = inf voxels" in str(info.value)
    assert "the neuron spans inf x 2 x 2 µm (x, y, z)" in str(info.value)
    with pytest.raises(DatasetError) as info:
        fit_to_volume(at_inf, (1.0, 1.0, 1.0))
    assert "would be a 13 x 13 x nan (z, y, x) grid = nan voxels" in str(info.value)
    assert "the neuron spans nan x 2 x 2 µm (x, y, z)" in str(info.value)
    with pytest.raises(DatasetError, match="the neuron spans inf x 2 x 2 µm"):
        render_mask(huge, (2048, 2048, 1024))
    with pytest.raises(DatasetError, match="the neuron spans nan x 2 x 2 µm"):
        render_mask(at_inf, (2048, 2048, 1024))


# ============================================================================ cone_sphere_excess
X = np.array([0.0, 0.0, 1.0])  # (z, y, x): a unit capsule along x from the origin


def test_steep_cones_take_the_minimum_at_the_end_of_the_larger_ball():
    # x_cone_sphere_excess__mutmut_62 (|k| < 2), x_cone_sphere_excess__mutmut_75/82/83 (the end for |k| >= 1)
    a, b = np.zeros((4, 3)), np.tile(X, (4, 1))
    ra = np.array([0.0, 0.0, 0.5, 1.5])
    rb = np.array([1.5, 1.5, 1.5, 0.0])  # slopes 1.5, 1.5, exactly 1 and -1.5
    p = np.array([[0, 0, 0.5], [0, 0.3, 0.5], [0, 0.5, 0.5], [0, 0, 0.5]])
    expected = [0.5 - 1.5, math.hypot(0.3, 0.5) - 1.5, math.hypot(0.5, 0.5) - 1.5, 0.5 - 1.5]
    np.testing.assert_allclose(cone_sphere_excess(p, a, b, ra, rb), expected, atol=1e-12)


@pytest.mark.filterwarnings("error")
def test_zero_length_capsules_are_balls_of_the_larger_radius_without_warnings():
    # x_cone_sphere_excess__mutmut_17 (0/0 warned), x_cone_sphere_excess__mutmut_102/104/105/107 (the ball
    # branch, and only for length 0: the unit capsule beside it is no ball)
    a = np.zeros((2, 3))
    b = np.array([[0.0, 0.0, 0.0], X])
    p = np.array([[0.0, 0.0, 3.0], [0.0, 1.0, 0.5]])
    np.testing.assert_allclose(cone_sphere_excess(p, a, b, np.array([1.0, 0.5]), np.array([2.0, 0.5])),
                               [3.0 - 2.0, 1.0 - 0.5], atol=1e-12)


@pytest.mark.filterwarnings("error")
def test_a_cone_of_unbounded_radius_contains_its_axis_silently():
    # x_cone_sphere_excess__mutmut_45/47 (inf * 0 in the discarded slope branch must not warn)
    out = cone_sphere_excess(np.array([[0.0, 0.0, 0.5]]), np.zeros((1, 3)), X[None], np.zeros(1),
                             np.array([math.inf]))
    assert out.tolist() == [-math.inf]


def test_cone_sphere_excess_broadcasts_points_against_capsules():
    # x_cone_sphere_excess__mutmut_8/27/38/117 (the last axis is the coordinate axis for any leading shape)
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    b[2] = a[2]  # one ball
    ra, rb = rng.uniform(0.2, 2.0, 5), rng.uniform(0.2, 2.0, 5)
    p = rng.normal(size=(4, 3)) * 2
    table = cone_sphere_excess(p[:, None, :], a[None], b[None], ra[None], rb[None])
    assert table.shape == (4, 5)
    rows = [[cone_sphere_excess(p[i:i + 1], a[j:j + 1], b[j:j + 1], ra[j:j + 1], rb[j:j + 1])[0]
             for j in range(5)] for i in range(4)]
    np.testing.assert_allclose(table, rows, rtol=0, atol=1e-12)
    np.testing.assert_allclose(table[:, 2], np.linalg.norm(p - a[2], axis=1) - max(ra[2], rb[2]), atol=1e-12)


# ============================================================================ _inside_voxels
def test_voxel_centres_within_1e_9_um_of_the_surface_are_inside():
    # x__inside_voxels__mutmut_162 (the tolerance is inclusive)
    for offset, inside in ((1e-9, True), (2e-9, False)):
        m = morph([[-offset, 0, 0]], [0], [-1])
        mask = render_mask(m, (1, 1, 2), min_radius=0.0, connect=False)
        assert mask.tolist() == [[[inside, False]]], offset


def test_inside_voxels_works_in_chunks_of_whole_capsules_of_about_chunk_voxels(monkeypatch):
    # x__inside_voxels__mutmut_76/78/79/81/89/90 (chunk bounds), x__inside_voxels__mutmut_77/80 (step)
    # 13 balls of radius 1 µm, each tested on its 3 x 3 x 3 voxel box: 27 voxel centres
    m = morph([[2 + 4 * i, 2, 2] for i in range(13)], np.ones(13), np.full(13, -1))
    v = (1.0, 1.0, 1.0)
    a, b, ra, rb = segments_zyx(m, v)
    tested = []
    real = render.cone_sphere_excess

    def spy(p, *args):
        tested.append(len(p))
        return real(p, *args)

    monkeypatch.setattr(render, "cone_sphere_excess", spy)
    got = list(render._inside_voxels(a, b, ra, rb, (5, 5, 54), v, chunk=81))
    assert tested == [81, 81, 81, 81, 27]
    flat = np.concatenate([f for f, _ in got])
    seg = np.concatenate([s for _, s in got])
    assert len(flat) == 13 * 7  # a ball of radius 1 holds its centre and 6 neighbours
    np.testing.assert_array_equal(seg, np.repeat(np.arange(13), 7))
    tested.clear()
    whole = list(render._inside_voxels(a, b, ra, rb, (5, 5, 54), v))
    assert tested == [13 * 27] and len(whole) == 1
    np.testing.assert_array_equal(whole[0][0], flat)


# ============================================================================ _centreline_voxels
def test_a_thin_neurite_entering_the_grid_is_a_chain_of_every_voxel_it_crosses():
    # x__centreline_voxels__mutmut_14/17/18/50 (sampling density and direction),
    # x__centreline_voxels__mutmut_39/40/41 (each piece sampled from its start to its end, not beyond)
    # radius 0 at y = 0.3 µm: no voxel centre is inside, only the centreline marks voxels; x voxels 0.5 µm
    m = morph([[-5.5, 0.3, 0], [6.5, 0.3, 0]], [0, 0], [-1, 0])
    vs = (1.0, 1.0, 0.5)
    expected = np.arange(16) <= 13  # up to x = 6.5 µm
    assert render_mask(m, (1, 1, 16), vs, min_radius=0.0)[0, 0].tolist() == expected.tolist()
    ids = render_segment_ids(m, (1, 1, 16), vs, min_radius=0.0)
    assert ids[0, 0].tolist() == np.where(expected, 1, -1).tolist()


def test_a_neurite_shorter_than_half_a_voxel_marks_just_the_voxels_of_its_ends():
    # x__centreline_voxels__mutmut_12 (one step, not two: the midpoint (0.5, 0.5) would round to (0, 0))
    m = morph([[0.3, 0.7, 0], [0.7, 0.3, 0]], [0, 0], [-1, 0])
    assert render_mask(m, (1, 2, 2), min_radius=0.0)[0].tolist() == [[False, True], [True, False]]


# ======================================================================= _prepare, _split_long, _split_window
def test_long_edges_are_cut_into_equal_pieces_of_at_most_4_voxels_or_2_median_radii():
    # x__prepare__mutmut_64/65 (4 x the largest voxel size), x__prepare__mutmut_68 (2 x the median radius),
    # x__prepare__mutmut_125..139 and x__split_long__mutmut_1..52 (the pieces, exactly, with their owner)
    vs = (1.0, 1.0, 2.0)
    for r_child, r_parent, n in ((0.6, 1.0, 5), (3.0, 5.0, 4)):  # pieces of max(8, 2) µm, of max(8, 10) µm
        m = morph([[0, 1, 2], [40, 1, 2]], [r_parent, r_child], [-1, 0])
        v, a, b, ra, rb, owner = _prepare(m, vs, None)
        assert v == vs and owner.tolist() == [1] * n
        start = np.linspace(40, 0, n + 1)  # from the child (node 1) to its parent, z y x
        np.testing.assert_allclose(a, np.stack([np.full(n, 2), np.full(n, 1), start[:-1]], 1), atol=1e-12)
        np.testing.assert_allclose(b, np.stack([np.full(n, 2), np.full(n, 1), start[1:]], 1), atol=1e-12)
        r = np.linspace(r_child, r_parent, n + 1)
        np.testing.assert_allclose(ra, r[:-1], atol=1e-12)
        np.testing.assert_allclose(rb, r[1:], atol=1e-12)


@pytest.mark.parametrize("tree", ["two pieces each", "mixed"])
def test_preparing_for_a_grid_holding_the_whole_neuron_makes_exactly_the_full_split(tree):
    # x__split_window__mutmut_8 (the shortcut is for unsplit capsules only), x__prepare__mutmut_76/81/83/88
    # (the piece counts agree with _split_long's), x__split_long__mutmut_17/18
    if tree == "two pieces each":  # edges of 12 µm, pieces of at most 8 µm: no balls, every edge in two
        step = 12 / 3 ** 0.5
        m = morph([[1, 2, 3], [13, 2, 3], [13, 14, 3], [13 + step, 2 + step, 3 + step]], [0.5, 0.5, 0.4, 0.3],
                  [-1, 0, 1, 1])
    else:  # a soma, short and long tapered edges, an isolated root
        m = morph([[5, 5, 5], [9, 5, 5], [30, 7, 6], [31, 25, 9], [20, 20, 4]], [2, 0.6, 0.3, 0.8, 1],
                  [-1, 0, 1, 2, -1], types=[1, 3, 3, 3, 3])
    vs = (1.0, 1.0, 2.0)
    full = _prepare(m, vs, None)
    window = _prepare(m, vs, None, (20, 40, 30))
    if tree == "two pieces each":
        assert len(full[1]) == 6
    else:
        assert len(full[1]) > m.n_nodes
    for x, y in zip(full, window):
        np.testing.assert_array_equal(x, y)


# ============================================================================ _pieces_near_grid
def window_of(m: Morphology, vs, corner, shape):
    """`m` moved so that voxel `corner` (z, y, x) of its grid is the origin of a grid of `shape`."""
    return m.translate(-(np.asarray(corner) * np.asarray(vs))[::-1])


def assert_windows_match_the_whole(m, vs, whole_shape, windows, **kw):
    whole = render_mask(m, whole_shape, vs, **kw)
    whole_ids = render_segment_ids(m, whole_shape, vs, **kw)
    for corner, shape in windows:
        part = tuple(slice(c, c + s) for c, s in zip(corner, shape))
        moved = window_of(m, vs, corner, shape)
        np.testing.assert_array_equal(render_mask(moved, shape, vs, **kw), whole[part], err_msg=str(corner))
        np.testing.assert_array_equal(render_segment_ids(moved, shape, vs, **kw), whole_ids[part],
                                      err_msg=str(corner))
    return whole


def random_edges(rng, n, lo, hi, thick=0.2):
    """`n` separate edges (root, child) on a 1/8 µm lattice: some thick, some along axes, some with a
    displacement of exactly 1 µm on an axis."""
    a = np.round(rng.uniform(lo, hi, (n, 3)) * 8) / 8
    d = np.round(rng.normal(0, 8, (n, 3)) * 8) / 8
    d[rng.random((n, 3)) < 0.25] = 0.0
    d[rng.random((n, 3)) < 0.1] = 1.0
    b = np.clip(a + d, lo, hi)
    r = np.where(rng.random((n, 2)) < thick, rng.uniform(2, 5, (n, 2)), rng.uniform(0.25, 0.6, (n, 2)))
    xyz = np.stack([a, b], 1).reshape(-1, 3)
    parent = np.stack([np.full(n, -1), 2 * np.arange(n)], 1).ravel()
    return morph(xyz, np.round(r.ravel() * 8) / 8, parent)


@pytest.mark.parametrize("connect", [True, False])
def test_any_window_of_the_grid_renders_as_that_part_of_the_whole(connect):
    # x__pieces_near_grid__mutmut_8/10/12/18 (the grid box grown by radius and voxel), _37 (the entry
    # parameter), _66/_80 (per capsule, not over all capsules), _79 (a capsule missing the box diagonally
    # reaches nothing), _125 (one piece past the exit)
    rng = np.random.default_rng(11)
    m = random_edges(rng, 60, 6.0, 32.0)
    vs = (2.0, 0.5, 1.0)
    # even corners: a centreline point halfway between two voxel centres rounds to the even one (np.rint),
    # so an odd shift of the grid could move it
    windows = [((4, 20, 10), (6, 24, 12)), ((0, 0, 0), (4, 30, 16)), ((8, 50, 24), (7, 26, 13)),
               ((2, 14, 16), (1, 40, 3)), ((12, 30, 6), (5, 2, 30))]
    whole = assert_windows_match_the_whole(m, vs, (20, 80, 40), windows, connect=connect)
    assert 0.05 < whole.mean() < 0.5


def test_a_neurite_ending_just_outside_the_grid_paints_the_voxels_its_radius_reaches():
    # x__pieces_near_grid__mutmut_23: the edge moves exactly 1 µm in y, from 1.3 µm below the grid (outside
    # the grid box grown by radius and voxel, 1 µm) to 0.3 µm below it, within its 0.5 µm radius of row 0
    m = morph([[9, 4.6875, 4], [6, 3.6875, 4]], [0.5, 0.5], [-1, 0])  # from the child: +1 µm in y
    vs = (2.0, 0.5, 1.0)
    whole = assert_windows_match_the_whole(m, vs, (6, 20, 14), [((2, 10, 4), (2, 4, 8))], min_radius=0.0)
    assert whole[2, 10, 4:12].tolist() == [False] * 5 + [True] + [False] * 2  # the window's row y = 0: x = 9


@pytest.mark.filterwarnings("error")
def test_edges_along_axes_on_the_grown_grid_box_or_of_subnormal_length_render_without_warnings():
    # x__pieces_near_grid__mutmut_24..29 (np.errstate): along an axis d = 0 (x / 0), on the face of the
    # grown box 0 / 0, and a displacement of 5e-324 µm overflows
    on_face = morph([[0, -1.5, 2], [4, -1.5, 2]], [0.5, 0.5], [-1, 0])  # y = -(0.5 + 1): nothing to paint
    tiny = morph([[0, 1, 1], [5e-324, 1, 1]], [0.5, 0.5], [-1, 0])
    assert not render_mask(on_face, (4, 4, 6), connect=False).any()
    mask = render_mask(tiny, (3, 3, 3))
    assert mask.sum() == 1 and mask[1, 1, 0]
