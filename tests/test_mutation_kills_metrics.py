"""Targeted tests that kill mutants of neurovit/metrics.py which survived the rest of the suite.

Each test pins a behaviour the broader tests (tests/test_metrics.py) left open: the registry helper and the
defaults of `MetricSpec`, exact error messages (users act on them), the result keys of every branch of
`neuron_distance`, voxel sizes passed on by the combined scorers, thresholds met exactly, empty inputs, and
the exactness of `segment_distance` (chunks, k = 1, ties at the re-check radius). The mutants each test kills
are named in its comments (mutmut's names, `python tests/mutation.py metrics` lists the survivors); mutants
that cannot change behaviour are documented as equivalent instead.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from conftest import EMPTY_TREE as EMPTY
from conftest import line, tree
from scipy.spatial import cKDTree

from neurovit.metrics import (
    MetricsError,
    MetricSpec,
    _ball_recheck,
    _spec,
    _split_segments,
    cldice,
    degenerate_distance,
    directional_distances,
    get_spec,
    is_better,
    metric_names,
    neuron_distance,
    node_scores,
    point_segment_distance,
    reconstruction_scores,
    sample_edges,
    segment_distance,
)

TREE_KEYS = ("esa", "dsa", "pds", "esa_12", "esa_21", "pds_12", "pds_21", "max_dist")


# --------------------------------------------------------------------------- registry
def test_spec_helper_takes_label_before_description_and_defaults_to_headline():
    # x__spec__mutmut_1 (headline default), 2..9 (an argument replaced by None), 10..17 (an argument dropped)
    # (METRICS is built at import, before mutmut switches a mutant on, so only a direct call reaches _spec)
    s = _spec("x", "tree", False, ".2f", "distance", "X", "the x distance")
    assert s == MetricSpec(name="x", kind="tree", higher_is_better=False, fmt=".2f", units="distance",
                           description="the x distance", label="X", headline=True)
    assert _spec("y", "voxel", True, ".3f", "", "Y", "the y ratio", False).headline is False


def test_spec_method_defaults():
    # xǁMetricSpecǁaxis_label__mutmut_1/2 (distance_unit="voxel"), xǁMetricSpecǁformat__mutmut_1/2 (sign, missing)
    assert get_spec("esa").axis_label() == "ESA (voxel)"
    assert get_spec("dsa").format(0.5) == "0.50" and get_spec("pds").format(0.25) == "0.250"
    assert get_spec("esa").format(None) == "–" and get_spec("dice").format(float("inf")) == "–"


def test_registry_error_messages_exactly():
    # x_get_spec__mutmut_3 (the ", " joining the known names), x_metric_names__mutmut_7 (no message)
    with pytest.raises(MetricsError) as e:
        get_spec("iou")
    assert str(e.value) == ("unknown metric 'iou'; known: dice, cldice, precision, recall, esa, dsa, pds, "
                            "node_precision, node_recall, node_f1")
    with pytest.raises(MetricsError) as e:
        metric_names("pixel")
    assert str(e.value) == "metric kind must be 'voxel' or 'tree', got 'pixel'"


def test_is_better_is_strict_for_equal_values():
    # x_is_better__mutmut_9 (>= for higher-is-better), x_is_better__mutmut_11 (<= for lower-is-better)
    assert not is_better("dice", 0.5, 0.5) and not is_better("esa", 1.25, 1.25)
    assert is_better("dice", 0.6, 0.5) and is_better("esa", 1.0, 1.25)


# --------------------------------------------------------------------------- geometry
def test_point_segment_distance_of_a_degenerate_segment_warns_nothing():
    # x_point_segment_distance__mutmut_27 (dd >= 0: 0 / 0 for a point-like segment, a RuntimeWarning)
    p = np.array([[3.0, 4, 0], [5.0, 3, 0]])
    a = np.array([[0.0, 0, 0], [0.0, 0, 0]])
    b = np.array([[0.0, 0, 0], [10.0, 0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = point_segment_distance(p, a, b)
    np.testing.assert_array_equal(d, [5.0, 3.0])


def test_sample_edges_without_edges_and_of_a_unit_edge():
    # x_sample_edges__mutmut_3/4/5 (the (0, 3) empty result), 46/54 (N = 2: the child and the parent)
    none = sample_edges(np.zeros((1, 3)), np.empty((0, 2), dtype=np.int64))
    assert none.shape == (0, 3)
    m = line((1, 2, 3), (1, 2, 4))  # length 1: N = int(1 + 1 + 0.5) = 2, both ends
    np.testing.assert_array_equal(sample_edges(m.xyz, m.edges), [[1.0, 2, 4], [1.0, 2, 3]])


def test_split_segments_cuts_the_fewest_equal_pieces():
    # x__split_segments__mutmut_7 (at least 2 pieces), 9 (+1e-9: 4 pieces of an exact 3), 10 (* max_len),
    # 15 (|b + a|), 17 (- 1.000000001: pieces longer than max_len)
    a = np.array([[1.0, 1, 1], [5.0, 5, 5]])
    b = np.array([[1.0, 1, 4], [5.0, 5, 5.5]])  # lengths 3 and 0.5
    lo, hi = _split_segments(a, b, 1.0)
    np.testing.assert_allclose(lo, [[1, 1, 1], [1, 1, 2], [1, 1, 3], [5, 5, 5]])
    np.testing.assert_allclose(hi, [[1, 1, 2], [1, 1, 3], [1, 1, 4], [5, 5, 5.5]])
    lo, hi = _split_segments(np.array([[2.0, 0, 0]]), np.array([[2.0, 4, 0]]), 2.0)  # length 4 → 2 pieces of 2
    np.testing.assert_allclose(lo, [[2, 0, 0], [2, 2, 0]])
    np.testing.assert_allclose(hi, [[2, 2, 0], [2, 4, 0]])


SEG_A = np.array([[0.0, 0, 0], [0.0, 10, 0]])  # two segments: y = 0 and y = 10, x = 0..10
SEG_B = np.array([[10.0, 0, 0], [10.0, 10, 0]])


def test_segment_distance_edge_cases():
    # x_segment_distance__mutmut_18/19/20 (message), 22 (one point returns nothing), 23/24 (no points: (0,))
    with pytest.raises(MetricsError) as e:
        segment_distance(np.zeros((2, 3)), np.empty((0, 3)), np.empty((0, 3)))
    assert str(e.value) == "no segments to measure distances to"
    none = segment_distance(np.empty((0, 3)), SEG_A, SEG_B)
    assert none.shape == (0,) and none.dtype == np.float64
    np.testing.assert_allclose(segment_distance([5.0, 3, 0], SEG_A, SEG_B), [3.0])


def test_segment_distance_in_small_chunks():
    # x_segment_distance__mutmut_66 (range(0, chunk): the points after the first chunks are never measured)
    q = np.array([[5.0, 1, 0], [5.0, 12, 0], [-3.0, 4, 0], [13.0, 6, 0], [5.0, 11, 0]])
    expected = [1.0, 2.0, 5.0, 5.0, 1.0]
    np.testing.assert_allclose(segment_distance(q, SEG_A, SEG_B, chunk=2), expected, atol=1e-12)
    np.testing.assert_allclose(segment_distance(q, SEG_A, SEG_B, chunk=1), expected, atol=1e-12)


def test_segment_distance_with_one_neighbour_is_exact_at_the_recheck_radius():
    # x_segment_distance__mutmut_98/99 (dk[:, +1] / dk[:, -2]: an IndexError with k = 1),
    # 114 (radius - 1e-9 misses the piece whose midpoint lies exactly at best + half)
    # q = (3, 0, 0): the nearest midpoint (k = 1) is the tiny segment's, 2 + 5e-10 away; the unit segment
    # [0, 1] on the x axis is 2 away (its end) with its midpoint at exactly best + half - 5e-10
    a = np.array([[0.0, 0, 0], [3.0, 2.0000000005, -0.1]])
    b = np.array([[1.0, 0, 0], [3.0, 2.0000000005, 0.1]])
    d = segment_distance([[3.0, 0, 0]], a, b, k=1)
    assert d[0] == pytest.approx(2.0, abs=1e-13)


def test_segment_distance_with_long_pieces_is_exact():
    # x_segment_distance__mutmut_41 (half = 0.5 / longest piece: too small a re-check once pieces exceed 1),
    # 48 (half from |b + a|: too small for segments around the origin)
    rng = np.random.default_rng(5)
    a = rng.uniform(0, 40, (60, 3))
    b = a + rng.normal(0, 6, (60, 3))
    q = rng.uniform(-20, 60, (400, 3))
    brute = point_segment_distance(q[:, None], a[None], b[None]).min(axis=1)
    np.testing.assert_allclose(segment_distance(q, a, b, piece=4.0, k=1), brute, atol=1e-10)
    rng = np.random.default_rng(7)
    mid, half = rng.uniform(-1, 1, (30, 3)), rng.normal(0, 3, (30, 3))  # midpoints within 1 of the origin
    a, b = mid - half, mid + half
    q = rng.uniform(-15, 15, (300, 3))
    brute = point_segment_distance(q[:, None], a[None], b[None]).min(axis=1)
    np.testing.assert_allclose(segment_distance(q, a, b, piece=20.0, k=1), brute, atol=1e-10)
    np.testing.assert_allclose(segment_distance(q, a, b, piece=20.0), brute, atol=1e-10)


def test_ball_recheck_takes_a_single_closer_candidate():
    # x__ball_recheck__mutmut_14 (counts.sum() == 1 returned `best` unchanged)
    a, b = np.array([[0.0, 0, 0], [20.0, 0, 0]]), np.array([[1.0, 0, 0], [21.0, 0, 0]])
    kd = cKDTree(0.5 * (a + b))
    q = np.array([[0.5, 2, 0]])  # only the first midpoint (0.5, 0, 0) lies within the radius 3
    out = _ball_recheck(kd, q, np.array([3.0]), a, b, np.array([7.0]))
    np.testing.assert_allclose(out, [2.0])


# --------------------------------------------------------------------------- tree metrics
def test_mixed_units_message_exactly():
    # x__pair_in_units__mutmut_5/6 (the hint to pass voxel_size)
    with pytest.raises(MetricsError) as e:
        neuron_distance(line((0, 0, 0), (5, 0, 0), "voxel"), line((0, 0, 0), (5, 0, 0), "um"))
    assert str(e.value) == ("trees in different units ('voxel' vs 'um'); convert one, or pass voxel_size to "
                            "measure both in µm")


def test_directional_distances_units_and_edgeless_trees():
    # x_directional_distances__mutmut_4 (voxel_size ignored), 17..20 (message), 23/24 (empty result)
    a, b = line((0, 0, 0), (4, 0, 0)), line((0, 0, 1), (4, 0, 1))  # one slice apart
    np.testing.assert_allclose(directional_distances(a, b, voxel_size=(2.0, 1.0, 1.0)), np.full(5, 2.0))
    with pytest.raises(MetricsError) as e:
        directional_distances(a, tree([(0, 0, 0)], [-1]))
    assert str(e.value) == "tree B has no edges: distances to it are undefined"
    none = directional_distances(tree([(0, 0, 0)], [-1]), EMPTY.copy())
    assert none.shape == (0,)


def test_neuron_distance_directional_parts_and_one_sided_dsa():
    # x__scores_from_distances__mutmut_11 (only test→gold has far points), 38/39/42/43/46/47 (key names),
    # 41/45 (pds_12 / pds_21 as a product)
    # test: the long line y = 0, x = 0..10; gold: x = 2.5..7.5 one above. Test points x = 0 and 10 are
    # sqrt(7.25) from the gold; every gold point is 1 from the test line.
    s = neuron_distance(line((0, 0, 0), (10, 0, 0)), line((2.5, 1, 0), (7.5, 1, 0)))
    xs = np.arange(11.0)
    d12 = np.sqrt(np.maximum(np.maximum(2.5 - xs, xs - 7.5), 0) ** 2 + 1)
    expected = {"esa": (d12.mean() + 1.0) / 2, "dsa": math.sqrt(7.25), "pds": (2 / 11 + 0) / 2,
                "esa_12": d12.mean(), "esa_21": 1.0, "pds_12": 2 / 11, "pds_21": 0.0, "max_dist": 1.0,
                "degenerate": False}
    assert s == pytest.approx(expected)
    far = neuron_distance(line((0, 0, 0), (10, 0, 0)), line((0, 3, 0), (10, 3, 0)))
    assert far == pytest.approx(dict.fromkeys(TREE_KEYS, 1.0) | {"esa": 3.0, "dsa": 3.0, "esa_12": 3.0,
                                                                  "esa_21": 3.0, "max_dist": 3.0,
                                                                  "degenerate": False})


def test_neuron_distance_of_two_edgeless_trees_has_every_key():
    # x_neuron_distance__mutmut_5..18 (the key names of the all-zero result)
    s = neuron_distance(tree([(0, 0, 0)], [-1]), EMPTY.copy())
    assert s == {"esa": 0.0, "dsa": 0.0, "pds": 0.0, "esa_12": 0.0, "esa_21": 0.0, "pds_12": 0.0,
                 "pds_21": 0.0, "max_dist": 0.0, "degenerate": False}


def test_degenerate_distance_extent_and_message():
    # x_degenerate_distance__mutmut_4 (message), 19 (max + min), 22 (the global instead of per-axis min)
    assert degenerate_distance(line((1, 2, 3), (4, 6, 3)), EMPTY) == (5.0, 5.0)
    with pytest.raises(MetricsError) as e:
        degenerate_distance(EMPTY, line((0, 0, 0), (1, 0, 0)))
    assert str(e.value) == "degenerate_distance needs a tree with edges as its first argument"


# --------------------------------------------------------------------------- node P/R/F1
def test_node_scores_defaults_threshold_and_spacing():
    # x_node_scores__mutmut_1 (threshold 3), 2 (spacing 2)
    s = node_scores(line((0, 2.5, 0), (4, 2.5, 0)), line((0, 0, 0), (4, 0, 0)))  # 2.5 apart > 2
    assert s == {"node_precision": 0.0, "node_recall": 0.0, "node_f1": 0.0, "test_nodes": 5, "gold_nodes": 5}


def test_node_scores_count_nodes_exactly_at_the_threshold():
    # x_node_scores__mutmut_34 (search bound threshold - 1e-9), 37 (< threshold)
    s = node_scores(line((0, 2, 0), (4, 2, 0)), line((0, 0, 0), (4, 0, 0)), threshold=2.0)
    assert s["node_precision"] == 1.0 and s["node_recall"] == 1.0 and s["node_f1"] == 1.0


def test_node_scores_in_um_with_a_voxel_size():
    # x_node_scores__mutmut_6 (voxel_size ignored): 1 slice of 3 µm apart, x voxels of 2 µm → 9 nodes
    s = node_scores(line((0, 0, 1), (4, 0, 1)), line((0, 0, 0), (4, 0, 0)), voxel_size=(3.0, 1.0, 2.0))
    assert s == {"node_precision": 0.0, "node_recall": 0.0, "node_f1": 0.0, "test_nodes": 9, "gold_nodes": 9}


def test_node_scores_of_two_empty_trees_are_all_one():
    # x_node_scores__mutmut_52/59 (precision and recall without the both-empty rule)
    assert node_scores(EMPTY, EMPTY.copy()) == {"node_precision": 1.0, "node_recall": 1.0, "node_f1": 1.0,
                                                "test_nodes": 0, "gold_nodes": 0}


def test_node_f1_when_precision_and_recall_sum_below_one():
    # x__f1__mutmut_13 (P + R > 1 required: F1 = 0 for P + R <= 1)
    gold = line((0, 0, 0), (10, 0, 0))  # 11 nodes
    test = tree([(0, 0, 0), (1, 0, 0), (0, 20, 0), (9, 20, 0)], [-1, 0, -1, 2])  # 2 near + 10 far nodes
    s = node_scores(test, gold)
    assert s["node_precision"] == pytest.approx(2 / 12) and s["node_recall"] == pytest.approx(4 / 11)
    assert s["node_f1"] == pytest.approx(8 / 35)


def test_reconstruction_scores_pass_units_threshold_and_spacing_on():
    # x_reconstruction_scores__mutmut_7/11 and 17/22 (voxel_size dropped), 10/20 (threshold), 21 (spacing)
    a, b = line((0, 0, 0), (4, 0, 0)), line((0, 0, 1), (4, 0, 1))  # one slice apart
    um = reconstruction_scores(a, b, threshold=2.5, voxel_size=(3.0, 1.0, 1.0))  # 3 µm apart
    assert um["esa"] == pytest.approx(3.0) and um["pds"] == 1.0
    assert um["node_precision"] == 0.0 and um["test_nodes"] == 5
    vox = reconstruction_scores(a, b, threshold=0.5, spacing=2.0)  # 1 voxel apart, nodes every 2 voxels
    assert vox["esa"] == pytest.approx(1.0) and vox["pds"] == 1.0 and vox["dsa"] == pytest.approx(1.0)
    assert vox["node_precision"] == 0.0 and vox["node_recall"] == 0.0
    assert vox["test_nodes"] == 3 and vox["gold_nodes"] == 3


# --------------------------------------------------------------------------- voxel metrics
def _cldice_masks():
    gold = np.zeros((5, 5, 9), bool)
    gold[2, 2, 2:7] = True  # 5 voxels
    pred = np.zeros_like(gold)
    pred[2, 2, 0:9] = True  # 9 voxels: the gold line and 4 more
    return pred, gold


def test_cldice_counts_skeleton_voxels_outside_the_gold():
    # x_cldice__mutmut_39 (Tprec forced to 1): Tprec = 5/9, Tsens = 1 → 2 (5/9) / (14/9) = 5/7
    pred, gold = _cldice_masks()
    assert cldice(pred, gold) == pytest.approx(5 / 7)


def test_cldice_uses_the_skeletons_given():
    # x_cldice__mutmut_13/16/17/18 (pred_skeleton ignored, None, inverted, != 1), 21/24/25/26 (gold_skeleton)
    pred, gold = _cldice_masks()
    sp = np.zeros_like(pred)
    sp[2, 2, 0:3] = True  # 1 of 3 in the gold: Tprec = 1/3
    sg = np.zeros_like(gold)
    sg[2, 2, 3] = sg[0, 0, 0] = True  # 1 of 2 in the prediction: Tsens = 1/2
    assert cldice(pred, gold, pred_skeleton=sp, gold_skeleton=sg) == pytest.approx(0.4)
    assert cldice(pred, gold, pred_skeleton=sp) == pytest.approx(0.5)  # Tsens = 1 from the gold's own
    assert cldice(pred, gold, gold_skeleton=sg) == pytest.approx(2 * (5 / 9) * 0.5 / (5 / 9 + 0.5))
    # a 0/1 integer skeleton reads as a mask too
    assert cldice(pred, gold, pred_skeleton=sp.astype(np.uint8), gold_skeleton=sg.astype(np.uint8)) == \
        pytest.approx(0.4)


@pytest.mark.parametrize("spacing", [0.0, -1.0, float("nan")])
def test_node_scores_refuse_a_spacing_that_is_not_positive_whatever_the_trees(spacing):
    # x_node_scores__mutmut_12/16 (the empty trees skipped resample, so a bad spacing scored 1.0), the check
    for a, b in [(EMPTY, EMPTY), (EMPTY, line((0, 0, 0), (3, 0, 0))), (line((0, 0, 0), (3, 0, 0)),) * 2]:
        with pytest.raises(MetricsError, match=f"node_scores spacing must be positive, got {spacing}"):
            node_scores(a, b, spacing=spacing)
