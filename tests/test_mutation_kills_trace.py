"""Targeted tests that kill mutants of neurovit/trace.py the rest of the suite left alive (the first
trace.py kill tests are in tests/test_mutation_kills.py): the order of equally thick trees, kimimaro's
border fixing, and that tracing never writes into the caller's mask. Mutant names are mutmut's
(`python tests/mutation.py trace`); equivalents are documented in tests/mutation_equivalent.txt."""

from __future__ import annotations

import numpy as np

from neurovit.trace import skeleton_to_morphology, trace


def test_trees_with_equally_thick_roots_keep_the_skeletons_order():
    # x__order_forest__mutmut_22/24 (numpy's default sort is not stable: equally thick trees were shuffled)
    radii = np.random.default_rng(0).integers(1, 3, 40).astype(float)
    vertices = np.stack([np.zeros(40), np.zeros(40), np.arange(40) * 10.0], axis=1)  # (z, y, x), far apart
    m = skeleton_to_morphology(vertices, np.empty((0, 2), np.int64), radii, join_distance=0.0, soma_radius=100.0)
    index = (m.xyz[:, 0] / 10).astype(int)  # which vertex each one-node tree is
    expected = np.r_[np.flatnonzero(radii == 2), np.flatnonzero(radii == 1)]
    np.testing.assert_array_equal(index, expected)


def test_a_neurite_cut_by_the_volume_border_is_traced_along_its_axis():
    # x__skeletonize__mutmut_15/36 (fix_borders off: the skeleton's end points sit in a corner of the cut face)
    volume = np.zeros((5, 7, 20), np.float32)
    volume[1:4, 2:5, :] = 1.0  # a 3 × 3 bar through both x faces of the stack
    m = trace(volume, min_size=1)
    assert m.units == "voxel" and m.xyz[:, 0].min() == 0 and m.xyz[:, 0].max() == 19
    np.testing.assert_array_equal(m.xyz[:, 1:], np.tile([3.0, 2.0], (len(m), 1)))  # y = 3, z = 2 everywhere


def test_tracing_a_boolean_mask_leaves_the_callers_array_untouched():
    # x__skeletonize__mutmut_16/37 (in_place: kimimaro rewrote the caller's mask, which reaches it as a view
    # when the foreground spans the whole stack)
    mask = np.zeros((5, 5, 20), bool)
    mask[1:4, 1:4, :] = True
    mask[0, 0, 0] = mask[4, 4, 19] = True  # two specks, below min_size, make the foreground box the whole stack
    before = mask.copy()
    m = trace(mask, min_size=5)
    assert len(m) > 0
    np.testing.assert_array_equal(mask, before)
