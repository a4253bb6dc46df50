"""Reconstruction metrics (Vaa3D ESA/DSA/PDS, node P/R/F1) and voxel metrics against hand-computed values;
the metric registry, the empty rule and degenerate (edgeless) trees."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from conftest import EMPTY_TREE as EMPTY
from conftest import line, tree

from neurovit.data.morphogen import random_morphology
from neurovit.data.swc import Morphology
from neurovit.metrics import (
    METRICS,
    MetricsError,
    MetricSpec,
    best,
    check_metric_names,
    cldice,
    degenerate_distance,
    dice,
    format_value,
    get_spec,
    is_better,
    metric_names,
    neuron_distance,
    node_scores,
    overlap_scores,
    point_segment_distance,
    reconstruction_scores,
    sample_edges,
    segment_distance,
    voxel_scores,
)


# --------------------------------------------------------------------------- geometry
def test_sample_edges_counts_follow_vaa3d_rounding():
    # N = int(1 + L + 0.5): L = 2.4 → 3 points, L = 2.6 → 4, L = 0.3 → 1 (the child only)
    for length, n in ((2.4, 3), (2.6, 4), (0.3, 1), (10.0, 11)):
        m = line((0, 0, 0), (length, 0, 0))
        pts = sample_edges(m.xyz, m.edges)
        assert len(pts) == n
        if n > 1:  # both ends included, evenly spaced
            np.testing.assert_allclose(pts[:, 0], np.linspace(length, 0, n) if m.edges[0, 0] == 1 else
                                       np.linspace(0, length, n))
        else:
            np.testing.assert_allclose(pts[0], m.xyz[m.edges[0, 0]])


def test_segment_distance_is_exact_against_brute_force():
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 40, (200, 3))
    b = a + rng.normal(0, 4, (200, 3))
    q = rng.uniform(-60, 100, (3000, 3))  # many points far away exercise the exact re-check
    brute = point_segment_distance(q[:, None], a[None], b[None]).min(axis=1)
    np.testing.assert_allclose(segment_distance(q, a, b), brute, atol=1e-10)


def test_point_segment_distance_clamps_to_the_ends_and_handles_points():
    a, b = np.array([0.0, 0, 0]), np.array([10.0, 0, 0])
    assert point_segment_distance(np.array([5.0, 3, 0]), a, b) == pytest.approx(3.0)
    assert point_segment_distance(np.array([13.0, 4, 0]), a, b) == pytest.approx(5.0)
    assert point_segment_distance(np.array([3.0, 4, 0]), a, a) == pytest.approx(5.0)


# --------------------------------------------------------------------------- ESA / DSA / PDS
def test_identical_trees_score_zero():
    m = random_morphology(np.random.default_rng(0), (60, 60, 20))
    s = neuron_distance(m, m.copy())
    assert s["esa"] == pytest.approx(0, abs=1e-9) and s["dsa"] == 0 and s["pds"] == 0
    assert node_scores(m, m.copy())["node_f1"] == 1.0


def test_parallel_lines_at_offset_three():
    # every sample point of either line is 3 away from the other: ESA = DSA = 3, PDS = 1
    s = neuron_distance(line((0, 0, 0), (10, 0, 0)), line((0, 3, 0), (10, 3, 0)))
    assert s["esa"] == pytest.approx(3.0) and s["dsa"] == pytest.approx(3.0) and s["pds"] == pytest.approx(1.0)


def test_parallel_lines_below_threshold_have_no_apart_points():
    s = neuron_distance(line((0, 0, 0), (10, 0, 0)), line((0, 1, 0), (10, 1, 0)))
    assert s["esa"] == pytest.approx(1.0) and s["dsa"] == 0.0 and s["pds"] == 0.0


def test_distance_is_to_segments_not_nodes_and_one_direction_dsa():
    # A: short edge 1 above the middle of B's single long edge; B's nodes are >= 2.5 away from A's points.
    a = line((2.5, 1, 0), (7.5, 1, 0))
    b = line((0, 0, 0), (10, 0, 0))
    s = neuron_distance(a, b)
    assert s["esa_12"] == pytest.approx(1.0)  # point-to-segment: exactly 1 (point-to-node would be >= 2.7)
    # B's 11 points x = 0..10 to A: sqrt((2.5 - x)^2 + 1) outside [2.5, 7.5], else 1
    xs = np.arange(11.0)
    d21 = np.sqrt(np.maximum(np.maximum(2.5 - xs, xs - 7.5), 0) ** 2 + 1)
    assert s["esa_21"] == pytest.approx(d21.mean())
    assert s["esa"] == pytest.approx((1.0 + d21.mean()) / 2)
    # only B→A has points >= 2 (x = 0 and 10, d = sqrt(7.25)): DSA uses that direction alone
    assert s["dsa"] == pytest.approx(math.sqrt(7.25))
    assert s["pds"] == pytest.approx((0 + 2 / 11) / 2)


def test_missing_branch_of_known_length():
    # gold: trunk (0,0,0)-(10,0,0) plus a 10-unit branch up to (10,10,0); test: the trunk only
    gold = tree([(0, 0, 0), (10, 0, 0), (10, 10, 0)], [-1, 0, 1])
    test = line((0, 0, 0), (10, 0, 0))
    s = neuron_distance(test, gold)
    # test → gold: every point lies on the gold trunk
    assert s["esa_12"] == 0.0
    # gold → test: trunk 11 points at 0, branch 11 points at distances 0..10 (sum 55) → 55 / 22
    assert s["esa_21"] == pytest.approx(2.5)
    assert s["esa"] == pytest.approx(1.25)
    assert s["dsa"] == pytest.approx(np.arange(2, 11).mean())  # points at 2..10 → 6
    assert s["pds"] == pytest.approx((0 + 9 / 22) / 2)
    # symmetric
    assert neuron_distance(gold, test)["esa"] == pytest.approx(s["esa"])


def test_anisotropy_is_explicit():
    a = line((0, 0, 0), (10, 0, 0))
    b = line((0, 0, 1), (10, 0, 1))  # one slice apart
    assert neuron_distance(a, b)["esa"] == pytest.approx(1.0)  # voxels
    assert neuron_distance(a, b, voxel_size=(2.0, 1.0, 1.0))["esa"] == pytest.approx(2.0)  # µm
    assert neuron_distance(a, b, voxel_size=(2.0, 1.0, 1.0), threshold=2.0)["pds"] == pytest.approx(1.0)


def test_mixed_units_need_a_voxel_size():
    with pytest.raises(MetricsError, match="units"):
        neuron_distance(line((0, 0, 0), (5, 0, 0), "voxel"), line((0, 0, 0), (5, 0, 0), "um"))
    um = line((0, 0, 0), (10, 0, 0), "um")
    vox = line((0, 0, 0), (5, 0, 0), "voxel")  # 5 x-voxels of 2 µm = 10 µm
    assert neuron_distance(um, vox, voxel_size=(1.0, 2.0, 2.0))["esa"] == pytest.approx(0.0)


def test_edgeless_trees_are_degenerate_and_scored_as_the_worst_value():
    single = tree([(0, 0, 0)], [-1])
    gold = line((0, 0, 0), (5, 0, 0))  # 6 sample points x = 0..5
    s = neuron_distance(single, gold)
    # W = mean distance of the gold's sample points to the lone node = (0 + 1 + ... + 5) / 6 = 2.5
    assert s["degenerate"] is True
    assert s["esa"] == pytest.approx(2.5) and s["dsa"] == pytest.approx(2.5) and s["pds"] == 1.0
    assert s["esa_12"] == s["esa_21"] == s["esa"] and s["pds_12"] == s["pds_21"] == 1.0 and s["max_dist"] == 5.0
    assert neuron_distance(gold, single) == s  # symmetric: a degenerate gold tree is scored the same way
    # zero nodes (a header-only SWC): the largest extent of the other tree, its bounding-box diagonal
    e = neuron_distance(EMPTY, tree([(0, 0, 0), (3, 0, 0), (3, 4, 0)], [-1, 0, 1]))
    assert e["degenerate"] and e["esa"] == pytest.approx(5.0) and e["dsa"] == pytest.approx(5.0) and e["pds"] == 1.0
    # nodes without parent links: the nearest of them; x = 0..5 to {0, 5} → 0, 1, 2, 2, 1, 0
    two_roots = tree([(0, 0, 0), (5, 0, 0)], [-1, -1])
    assert neuron_distance(two_roots, gold)["esa"] == pytest.approx(1.0)
    # neither tree has edges: nothing to disagree about, not degenerate
    both = neuron_distance(single, single.copy())
    assert both["esa"] == 0.0 and both["pds"] == 0.0 and both["degenerate"] is False
    assert neuron_distance(EMPTY, EMPTY.copy())["degenerate"] is False
    assert neuron_distance(gold, gold.copy())["degenerate"] is False


def test_degenerate_scores_are_finite_and_worse_than_a_real_trace():
    gold = line((0, 0, 0), (10, 0, 0))
    near = neuron_distance(line((0, 1, 0), (10, 1, 0)), gold)  # a real trace one unit off: ESA 1, PDS 0
    one = reconstruction_scores(tree([(5, 0, 0)], [-1]), gold)  # traced to the one middle node
    empty = reconstruction_scores(EMPTY, gold)
    for s in (one, empty):
        assert s["degenerate"] and all(math.isfinite(s[k]) for k in metric_names("tree"))
        assert s["pds"] == 1.0 >= near["pds"] and s["esa"] > near["esa"] and s["dsa"] > near["dsa"]
    assert one["esa"] == pytest.approx(30 / 11)  # |x - 5| over x = 0..10
    assert empty["esa"] == pytest.approx(10.0) and empty["esa"] >= one["esa"]  # empty never beats a node inside
    assert one["node_precision"] == 1.0 and one["node_recall"] == pytest.approx(5 / 11)  # the ratio rule
    assert empty["node_precision"] == 0.0 and empty["node_recall"] == 0.0 and empty["node_f1"] == 0.0
    assert degenerate_distance(gold, EMPTY) == (10.0, 10.0)
    with pytest.raises(MetricsError, match="edges"):
        degenerate_distance(EMPTY, gold)


# --------------------------------------------------------------------------- node P/R/F1
def test_node_scores_on_a_known_case():
    gold = line((0, 0, 0), (10, 0, 0))  # 11 nodes after resampling
    test = tree([(0, 0, 0), (5, 0, 0), (0, 20, 0), (5, 20, 0)], [-1, 0, -1, 2])  # 6 + 6 spurious nodes
    s = node_scores(test, gold, threshold=2.0, spacing=1.0)
    assert s["test_nodes"] == 12 and s["gold_nodes"] == 11
    assert s["node_precision"] == pytest.approx(6 / 12)
    assert s["node_recall"] == pytest.approx(8 / 11)  # gold x = 0..7 have a test node within 2
    assert s["node_f1"] == pytest.approx(16 / 27)
    assert reconstruction_scores(test, gold)["node_f1"] == pytest.approx(16 / 27)


def test_node_scores_empty_rules():
    empty = Morphology(np.empty((0, 3)), [], [], [], units="voxel")
    assert node_scores(empty, empty.copy())["node_f1"] == 1.0
    s = node_scores(empty, line((0, 0, 0), (3, 0, 0)))
    assert s["node_precision"] == 0.0 and s["node_recall"] == 0.0 and s["node_f1"] == 0.0


# --------------------------------------------------------------------------- voxel metrics
def test_dice_precision_recall_on_tiny_masks():
    gold = np.zeros((3, 4, 5), bool)
    gold[1, 1, 1:4] = True  # 3 voxels
    pred = np.zeros_like(gold)
    pred[1, 1, 1:3] = True  # 2 voxels, both correct
    s = voxel_scores(pred, gold)
    assert s["dice"] == pytest.approx(4 / 5) == dice(pred, gold)
    assert s["precision"] == 1.0 and s["recall"] == pytest.approx(2 / 3)


def _masks3():
    z = np.zeros((5, 6, 7), bool)
    some = z.copy()
    some[2, 1:5, 3] = True
    return z, some


@pytest.mark.parametrize("case, expected", [("both empty", 1.0), ("pred empty", 0.0), ("truth empty", 0.0)])
@pytest.mark.parametrize("metric", metric_names("voxel"))
def test_empty_rule_for_every_voxel_metric(metric, case, expected):
    z, some = _masks3()
    pred, gold = {"both empty": (z, z), "pred empty": (z, some), "truth empty": (some, z)}[case]
    assert voxel_scores(pred, gold)[metric] == expected
    if metric == "dice":
        assert dice(pred, gold) == expected
    if metric == "cldice":
        assert cldice(pred, gold) == expected
    if metric != "cldice":
        counts = (np.count_nonzero(pred & gold), np.count_nonzero(pred), np.count_nonzero(gold))
        assert overlap_scores(*counts)[metric] == expected


def test_overlap_scores_from_counts_match_voxel_scores():
    gold = np.zeros((3, 4, 5), bool)
    gold[1, 1, 1:4] = True
    pred = np.zeros_like(gold)
    pred[1, 1:3, 2] = True
    s = overlap_scores(np.count_nonzero(pred & gold), np.count_nonzero(pred), np.count_nonzero(gold))
    v = voxel_scores(pred, gold)
    assert s == {k: v[k] for k in ("dice", "precision", "recall")}
    assert overlap_scores(0, 0, 0) == {"dice": 1.0, "precision": 1.0, "recall": 1.0}
    with pytest.raises(MetricsError, match="inconsistent"):
        overlap_scores(3, 2, 5)


def test_voxel_metrics_empty_rules_and_shape_check():
    z = np.zeros((2, 3, 4), bool)
    one = z.copy()
    one[0, 0, 0] = True
    assert voxel_scores(z, z) == {"dice": 1.0, "cldice": 1.0, "precision": 1.0, "recall": 1.0}
    assert voxel_scores(z, one) == {"dice": 0.0, "cldice": 0.0, "precision": 0.0, "recall": 0.0}
    assert voxel_scores(one, z)["precision"] == 0.0
    with pytest.raises(MetricsError, match="shape"):
        dice(z, np.zeros((2, 3, 5)))


def test_cldice_thin_line():
    gold = np.zeros((5, 5, 9), bool)
    gold[2, 2, 2:7] = True  # a 5-voxel line: its own skeleton
    pred = np.zeros_like(gold)
    pred[2, 2, 2:5] = True  # 3 voxels of it
    # Tprec = 3/3, Tsens = 3/5 → 2 * 0.6 / 1.6
    assert cldice(pred, gold) == pytest.approx(0.75)


def test_cldice_ignores_thickness_unlike_dice():
    gold = np.zeros((7, 7, 15), bool)
    gold[3, 3, 2:13] = True
    pred = np.zeros_like(gold)
    pred[2:5, 2:5, 2:13] = True  # a 3x3 tube around the gold centreline
    assert dice(pred, gold) < 0.25
    assert cldice(pred, gold) == pytest.approx(1.0)


# --------------------------------------------------------------------------- registry
def test_registry_lists_every_metric_once_in_order():
    assert list(METRICS) == ["dice", "cldice", "precision", "recall", "esa", "dsa", "pds", "node_precision",
                             "node_recall", "node_f1"]
    assert all(isinstance(s, MetricSpec) and s.name == n for n, s in METRICS.items())
    assert metric_names() == tuple(METRICS)
    assert metric_names("voxel") == ("dice", "cldice", "precision", "recall")
    assert metric_names("tree") == ("esa", "dsa", "pds", "node_precision", "node_recall", "node_f1")
    assert metric_names(headline=True) == ("dice", "cldice", "esa", "dsa", "pds", "node_f1")
    assert {n for n, s in METRICS.items() if s.units == "distance"} == {"esa", "dsa"}
    assert {n for n, s in METRICS.items() if not s.higher_is_better} == {"esa", "dsa", "pds"}
    assert all(s.kind in ("voxel", "tree") and s.description and s.fmt for s in METRICS.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        METRICS["dice"].higher_is_better = False  # type: ignore[misc]
    with pytest.raises(MetricsError):
        metric_names("pixel")


def test_registry_names_are_the_keys_the_metric_functions_return():
    z, some = _masks3()
    assert tuple(voxel_scores(some, some)) == metric_names("voxel")
    s = reconstruction_scores(line((0, 0, 0), (4, 0, 0)), line((0, 1, 0), (4, 1, 0)))
    assert set(metric_names("tree")) <= set(s) and "degenerate" in s


def test_registry_helpers_follow_the_direction_and_format():
    assert best("dice", [0.2, float("nan"), 0.9, None]) == 0.9
    assert best("esa", [3.0, 1.5, float("inf")]) == 1.5
    assert best("pds", []) is None
    assert is_better("dice", 0.8, 0.7) and not is_better("dice", 0.7, 0.8)
    assert is_better("esa", 1.0, 2.0) and not is_better("esa", 2.0, 1.0)
    assert is_better("esa", 5.0, float("nan")) and not is_better("dice", float("nan"), 0.1)
    assert format_value("dice", 0.91234) == "0.912" and format_value("esa", 2.345) == "2.35"  # 2.345 → 2.35
    assert format_value("dsa", -0.5, sign=True) == "-0.50" and format_value("pds", 0.25, sign=True) == "+0.250"
    assert format_value("dice", float("nan")) == "–" and format_value("dice", None, missing="n/a") == "n/a"
    assert get_spec("esa").axis_label("µm") == "ESA (µm)" and get_spec("node_f1").axis_label("µm") == "node F1"
    assert check_metric_names(["dice", "iou", "esa", "hd95"]) == ["iou", "hd95"]
    with pytest.raises(MetricsError, match="unknown metric 'iou'.*dice"):
        get_spec("iou")
