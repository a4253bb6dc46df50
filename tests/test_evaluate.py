"""evaluate_folders: matching by name, both gold layouts, tables on disk, missing and mismatched files;
degenerate traces counted and kept; every consumer (evaluate, callbacks) reads the metric registry."""

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
from neurovit.evaluate import METRICS, EvaluationResult, evaluate_folders, format_summary

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
    gold = make_dataset(tmp_path / "gold", names=("a",))
    write_stack(tmp_path / "pred" / "a.tif", np.zeros(SHAPE, np.float32), voxel_size=VS)
    res = evaluate_folders(tmp_path / "pred", tmp_path / "gold", tmp_path / "out")
    (row,) = res.rows
    assert row["dice"] == 0.0 and row["recall"] == 0.0 and row["node_f1"] == 0.0
    assert row["precision"] == 0.0 and row["cldice"] == 0.0  # the empty rule: pred empty, truth not → 0
    # traced to nothing: degenerate, scored as the worst value (the gold tree's extent), not NaN
    xyz = gold["a"][0].xyz
    assert row["degenerate"] is True and row["pds"] == 1.0 and row["pred_nodes"] == 0
    assert row["esa"] == pytest.approx(np.linalg.norm(xyz.max(0) - xyz.min(0))) and row["dsa"] == row["esa"]
    assert res.summary["esa"]["n"] == 1 and res.degenerate == ["a"]
    assert "empty" in (tmp_path / "out" / "traced" / "a.swc").read_text()
    data = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert data["rows"][0]["esa"] == pytest.approx(row["esa"]) and data["degenerate"] == ["a"]


def test_one_node_and_header_only_traces_are_counted_and_kept_in_the_means(tmp_path: Path):
    from neurovit.metrics import degenerate_distance

    gold = make_dataset(tmp_path / "gold", names=("a", "b", "c"))
    pred = tmp_path / "pred"
    write_swc(gold["a"][0], pred / "a.swc")  # a perfect trace
    x, y, z = gold["b"][0].xyz[0]
    (pred / "b.swc").write_text(f"# one node\n1 1 {x} {y} {z} 1.0 -1\n")  # traced to a single node
    (pred / "c.swc").write_text("# header only: nothing traced\n")
    res = evaluate_folders(pred, tmp_path / "gold", tmp_path / "out")
    rows = {r["name"]: r for r in res.rows}
    assert [rows[n]["degenerate"] for n in "abc"] == [False, True, True] and res.degenerate == ["b", "c"]
    assert rows["b"]["pred_nodes"] == 1 and rows["c"]["pred_nodes"] == 0
    w_b, _ = degenerate_distance(gold["b"][0], Morphology(gold["b"][0].xyz[:1], [1], [1], [-1], units="voxel"))
    w_c, _ = degenerate_distance(gold["c"][0], Morphology(np.empty((0, 3)), [], [], [], units="voxel"))
    assert rows["b"]["esa"] == pytest.approx(w_b) and rows["c"]["esa"] == pytest.approx(w_c)
    for n in "bc":
        assert rows[n]["pds"] == 1.0 and rows[n]["dsa"] == rows[n]["esa"] > 1.0 > rows["a"]["esa"]
    for k in ("esa", "dsa", "pds", "node_precision", "node_recall", "node_f1"):  # nothing is dropped
        assert res.summary[k]["n"] == 3, k
        assert res.summary[k]["mean"] == pytest.approx(np.mean([rows[n][k] for n in "abc"])), k
    assert res.summary["dice"]["n"] == 0  # no prediction TIFFs: voxel metrics are missing, not degenerate
    text = format_summary(res)
    assert "2 volume(s) traced to fewer than 2 nodes" in text and "worst value" in text and "b, c" in text
    table = list(csv.DictReader((tmp_path / "out" / "metrics.csv").open()))
    assert [r["degenerate"] for r in table] == ["False", "True", "True"]
    assert all(r["esa"] not in ("", "nan") for r in table)
    assert "fewer than 2 nodes" not in format_summary(EvaluationResult(rows=res.rows[:1], summary=res.summary))


def test_evaluate_reports_exactly_the_registry(tmp_path: Path):
    from neurovit.metrics import METRICS as REGISTRY
    from neurovit.metrics import get_spec

    assert METRICS == tuple(REGISTRY)
    gold = make_dataset(tmp_path / "gold", names=("a",))
    write_probs(tmp_path / "pred", gold)
    res = evaluate_folders(tmp_path / "pred", tmp_path / "gold", tmp_path / "out")
    assert list(res.summary) == list(REGISTRY)
    header = next(csv.reader((tmp_path / "out" / "metrics.csv").open()))
    assert [c for c in header if c in REGISTRY] == list(REGISTRY) and "degenerate" in header
    lines = format_summary(res).splitlines()
    body = [ln.split()[0] for ln in lines[2:2 + len(REGISTRY)]]
    assert body == list(REGISTRY)  # one line per registry metric, in its order
    esa_line = next(ln for ln in lines if ln.startswith("esa"))
    assert esa_line.startswith("esa (vox)") and get_spec("esa").format(res.summary["esa"]["mean"]) in esa_line
    dice_line = next(ln for ln in lines if ln.startswith("dice"))
    assert get_spec("dice").format(res.summary["dice"]["mean"]) in dice_line and "(vox)" not in dice_line


def test_reconstruction_callback_reads_the_registry_and_counts_degenerate_traces(tmp_path: Path):
    from types import SimpleNamespace

    import torch

    from neurovit.lit.callbacks import ReconstructionCallback, ValidationWriter
    from neurovit.metrics import metric_names

    assert ReconstructionCallback.METRICS == metric_names("tree")
    gold = make_dataset(tmp_path / "gold", names=("a", "b"))
    swc = {n: tmp_path / "gold" / "swc" / f"{n}.swc" for n in gold}
    dataset = SimpleNamespace(records=[SimpleNamespace(name=n, swc=swc[n]) for n in gold], swc_units="voxel",
                              voxel_size=VS)
    trainer = SimpleNamespace(datamodule=SimpleNamespace(dataset=dataset), current_epoch=0, global_step=0,
                              default_root_dir=str(tmp_path / "run"), is_global_zero=True, sanity_checking=False,
                              max_epochs=1)
    logged = {}
    module = SimpleNamespace(hparams=SimpleNamespace(threshold=0.5),
                             log=lambda key, value, **kw: logged.__setitem__(key, value))
    cb = ReconstructionCallback(dirpath=str(tmp_path / "run"))
    cb.on_test_epoch_start(trainer, module)
    cb.on_test_batch_end(trainer, module, {"name": "a", "prob": torch.from_numpy(gold["a"][1] * 0.9)}, None, 0)
    cb.on_test_batch_end(trainer, module, {"name": "b", "prob": torch.zeros(SHAPE)}, None, 1)  # traces to nothing
    cb.on_test_epoch_end(trainer, module)
    assert set(logged) == {f"test/{k}" for k in metric_names("tree")} | {"test/degenerate"}
    assert logged["test/degenerate"] == 1.0
    rows = {r["name"]: r for r in cb.rows}
    assert rows["b"]["degenerate"] and rows["b"]["pds"] == 1.0 and np.isfinite(rows["b"]["esa"])
    assert logged["test/esa"] == pytest.approx((rows["a"]["esa"] + rows["b"]["esa"]) / 2)  # kept in the mean
    table = list(csv.DictReader((tmp_path / "run" / "test_reconstruction.csv").open()))
    assert list(table[0]) == ["name", "nodes", *metric_names("tree"), "degenerate"]
    # ValidationWriter tables: the registry's voxel metrics the module reports, in registry order
    vw = ValidationWriter(dirpath=str(tmp_path / "run"), save_probabilities=False)
    vw.rows = [{"name": "a", "recall": 0.5, "dice": 0.6, "precision": 0.7}]
    vw._write(trainer, "val")
    assert next(csv.reader((tmp_path / "run" / "val_metrics.csv").open())) == ["name", "dice", "precision", "recall"]


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
