"""evaluate_folders: matching by name, both gold layouts, tables on disk, missing and mismatched files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from neurovit.data.morphogen import GrowthParams, random_morphology
from neurovit.data.render import render_mask
from neurovit.data.swc import Morphology, write_swc
from neurovit.data.tiff import write_stack
from neurovit.errors import NeurovitError
from neurovit.evaluate import METRICS, evaluate_folders, format_summary

SHAPE, VS = (10, 64, 80), (2.0, 1.0, 1.0)


def neuron(seed: int) -> tuple[Morphology, np.ndarray]:
    """A small procedural neuron in voxel units and its rendered mask."""
    m = random_morphology(np.random.default_rng(seed), (70.0, 55.0, 16.0), GrowthParams(max_nodes=250))
    return m.to_voxels(VS), render_mask(m, SHAPE, VS).astype(np.uint8)


def make_dataset(root: Path, names=("a", "b"), *, swc=True, labels=True) -> dict:
    """Dataset-layout gold folder (labels/, swc/, dataset.yaml); returns {name: (tree, mask)}."""
    out = {}
    for i, name in enumerate(names):
        tree, mask = neuron(i)
        if labels:
            write_stack(root / "labels" / f"{name}.tif", mask, voxel_size=VS)
        if swc:
            write_swc(tree, root / "swc" / f"{name}.swc")
        (root / "images").mkdir(parents=True, exist_ok=True)
        write_stack(root / "images" / f"{name}.tif", (mask * 200).astype(np.uint8), voxel_size=VS)
        out[name] = (tree, mask)
    (root / "dataset.yaml").write_text(f"format: neurovit-dataset/1\nvoxel_size_zyx_um: {list(VS)}\n")
    return out


def write_probs(pred: Path, gold: dict, names=None) -> None:
    for name in names or gold:
        write_stack(pred / f"{name}.tif", gold[name][1].astype(np.float32) * 0.9, voxel_size=VS)


def test_perfect_predictions_traced_and_tables_written(tmp_path: Path):
    gold = make_dataset(tmp_path / "gold")
    write_probs(tmp_path / "pred", gold)
    res = evaluate_folders(tmp_path / "pred", tmp_path / "gold", tmp_path / "out")
    assert [r["name"] for r in res.rows] == ["a", "b"]
    for r in res.rows:
        assert r["dice"] == 1.0 and r["cldice"] == 1.0 and r["pred_swc"] == "traced"
        assert r["esa"] < 1.0 and r["node_f1"] > 0.8
    assert res.settings["voxel_size_zyx"] == list(VS)  # read from dataset.yaml
    assert (tmp_path / "out" / "traced" / "a.swc").is_file()
    rows = list(csv.DictReader((tmp_path / "out" / "metrics.csv").open()))
    assert [r["name"] for r in rows] == ["a", "b"] and set(METRICS) <= set(rows[0])
    data = json.loads((tmp_path / "out" / "metrics.json").read_text())
    esa = [r["esa"] for r in res.rows]
    assert data["summary"]["esa"]["mean"] == pytest.approx(np.mean(esa))
    assert data["summary"]["esa"]["std"] == pytest.approx(np.std(esa, ddof=1))
    assert data["summary"]["dice"]["n"] == 2
    text = format_summary(res)
    assert "dice" in text and "±" in text and "metrics.csv" in text


def test_prediction_swc_is_used_and_plain_gold_folder(tmp_path: Path):
    gold = make_dataset(tmp_path / "ds", names=("a",))
    plain = tmp_path / "plain"
    write_stack(plain / "a.tif", gold["a"][1], voxel_size=VS)
    write_swc(gold["a"][0], plain / "a.swc")
    write_probs(tmp_path / "pred", gold)
    write_swc(gold["a"][0], tmp_path / "pred" / "a.swc")  # the prediction's own tree: identical to gold
    res = evaluate_folders(tmp_path / "pred", plain)
    (row,) = res.rows
    assert row["pred_swc"] == "file" and row["gold_mask"] == "file"
    assert row["esa"] == pytest.approx(0.0, abs=1e-6) and row["node_f1"] == 1.0
    assert res.settings["voxel_size_zyx"] == list(VS)  # from the TIFF metadata this time


def test_gold_mask_rendered_from_swc_when_labels_are_missing(tmp_path: Path):
    gold = make_dataset(tmp_path / "gold", names=("a",), labels=False)
    write_probs(tmp_path / "pred", gold)
    (row,) = evaluate_folders(tmp_path / "pred", tmp_path / "gold").rows
    assert row["gold_mask"] == "rendered" and row["dice"] == 1.0


def test_missing_files_are_listed_by_name(tmp_path: Path):
    gold = make_dataset(tmp_path / "gold", names=("a", "b", "c"))
    write_probs(tmp_path / "pred", gold, names=["a"])
    write_stack(tmp_path / "pred" / "stray.tif", gold["a"][1], voxel_size=VS)
    with pytest.warns(UserWarning, match="b, c"):
        res = evaluate_folders(tmp_path / "pred", tmp_path / "gold")
    assert res.missing_pred == ["b", "c"] and res.missing_gold == ["stray"]
    assert [r["name"] for r in res.rows] == ["a"]
    assert "stray" in format_summary(res)


def test_nothing_matching_is_an_error_naming_both_sides(tmp_path: Path):
    gold = make_dataset(tmp_path / "gold", names=("a",))
    write_stack(tmp_path / "pred" / "zzz.tif", gold["a"][1], voxel_size=VS)
    with pytest.raises(NeurovitError, match=r"zzz.*a"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gold")
    with pytest.raises(NeurovitError, match="does not exist"):
        evaluate_folders(tmp_path / "nope", tmp_path / "gold")


def test_shape_mismatch_is_named_and_skipped(tmp_path: Path):
    gold = make_dataset(tmp_path / "gold", names=("a", "b"))
    write_probs(tmp_path / "pred", gold, names=["a"])
    write_stack(tmp_path / "pred" / "b.tif", np.zeros((10, 64, 81), np.float32), voxel_size=VS)
    with pytest.warns(UserWarning, match="shape mismatch"):
        res = evaluate_folders(tmp_path / "pred", tmp_path / "gold")
    assert [r["name"] for r in res.rows] == ["a"]
    assert len(res.problems) == 1 and res.problems[0].startswith("b: shape mismatch")
    (tmp_path / "pred" / "a.tif").unlink()
    with pytest.raises(NeurovitError, match="b: shape mismatch"), pytest.warns(UserWarning):
        evaluate_folders(tmp_path / "pred", tmp_path / "gold")


def test_metric_units_um_scales_z(tmp_path: Path):
    gold = tmp_path / "gold"
    pred = tmp_path / "pred"
    line = Morphology([[5, 10, 3], [60, 10, 3]], [1, 1], [3, 3], [-1, 0], units="voxel")
    write_swc(line, gold / "a.swc")
    write_swc(line.translate((0, 0, 1)), pred / "a.swc")  # one slice off
    vox = evaluate_folders(pred, gold, voxel_size=VS).rows[0]
    um = evaluate_folders(pred, gold, voxel_size=VS, metric_units="um").rows[0]
    assert vox["esa"] == pytest.approx(1.0) and um["esa"] == pytest.approx(2.0)
    assert np.isnan(vox["dice"])  # no TIFFs: voxel metrics are not available


def test_empty_prediction_is_scored_not_crashed(tmp_path: Path):
    make_dataset(tmp_path / "gold", names=("a",))
    write_stack(tmp_path / "pred" / "a.tif", np.zeros(SHAPE, np.float32), voxel_size=VS)
    (row,) = evaluate_folders(tmp_path / "pred", tmp_path / "gold", tmp_path / "out").rows
    assert row["dice"] == 0.0 and row["recall"] == 0.0 and row["node_f1"] == 0.0
    assert np.isnan(row["esa"]) and row["pred_nodes"] == 0
    assert "empty" in (tmp_path / "out" / "traced" / "a.swc").read_text()
    data = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert data["rows"][0]["esa"] is None  # NaN is written as null


def test_split_keeps_only_that_splits_volumes(tmp_path: Path, capsys):
    from neurovit.cli import main

    gold = make_dataset(tmp_path / "gold", names=("a", "b", "c"))
    meta = tmp_path / "gold" / "dataset.yaml"
    meta.write_text(meta.read_text() + "volumes:\n" + "".join(
        f"- {{name: {n}, image: images/{n}.tif, label: labels/{n}.tif, swc: swc/{n}.swc, split: {s}}}\n"
        for n, s in (("a", "train"), ("b", "val"), ("c", "test"))))
    write_probs(tmp_path / "pred", gold, names=["b"])
    res = evaluate_folders(tmp_path / "pred", tmp_path / "gold", split="val")
    assert [r["name"] for r in res.rows] == ["b"] and res.missing_pred == []  # a and c are not "missing"
    with pytest.raises(NeurovitError, match="no 'test' volumes|no prediction matches"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gold", split="test")
    plain = tmp_path / "plain"
    write_stack(plain / "b.tif", gold["b"][1], voxel_size=VS)
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gold", str(plain), "--split", "val"]) == 2
    assert "needs a dataset folder with dataset.yaml" in capsys.readouterr().err
