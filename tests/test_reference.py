"""The reference recipe: one ablation cell on real-like data, then held-out neurons at fixed SNRs scored
next to Frangi + Otsu (tiny SWCs and a seconds-long fit)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from neurovit.ablate.reference import load_recipe, main
from neurovit.errors import NeurovitError

REPO = Path(__file__).resolve().parents[1]


def _tree(i: int) -> str:
    """A small Y-shaped neuron (µm), shifted per file."""
    return (f"1 1 {20 + i} 20 6 2.0 -1\n2 3 {30 + i} 22 7 1.5 1\n3 3 {40 + i} 30 8 1.2 2\n"
            f"4 3 {40 + i} 12 6 1.2 2\n")


@pytest.fixture
def recipe(tmp_path) -> Path:
    swc = tmp_path / "swc"
    swc.mkdir()
    for i, name in enumerate(["a", "b", "c", "d"]):
        (swc / f"{name}.swc").write_text(_tree(i))
    (tmp_path / "split.yaml").write_text("train: [a, b]\nval: [c]\ntest: [d]\n")
    raw = {"name": "ref-test", "out_dir": str(tmp_path / "out"), "data_dir": str(tmp_path / "out/data"),
           "synth": {"swc_dir": str(swc), "split_file": str(tmp_path / "split.yaml"), "max_shape": None,
                     "microscope": {"voxel_size": [2.0, 1.0, 1.0], "snr": [3.0, 10.0]}, "seed": 0},
           "base_configs": [str(REPO / "experiments/base.yaml"), str(REPO / "experiments/demo.yaml")],
           "strategies": {"scratch": [str(REPO / "experiments/scratch.yaml")]}, "seeds": [0], "fractions": [1.0],
           "fit_args": ["--data.block_size", "32", "--data.batch_size", "2", "--data.blocks_per_epoch", "4",
                        "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "0",
                        "--trainer.enable_progress_bar", "false"],
           "test_checkpoint": "last", "wandb": {"enabled": False}, "test_snrs": [4, 8]}
    path = tmp_path / "reference.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_reference_trains_once_and_reports_both_snrs_next_to_the_baseline(recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert main(["--config", str(recipe)]) == 0
    out = tmp_path / "out"
    rows = (out / "reference.csv").read_text().splitlines()
    assert rows[0].startswith("snr,method,n,dice") and len(rows) == 5  # 2 SNRs × (model, baseline)
    md = (out / "reference.md").read_text()
    assert "| 4 | model | 1 |" in md and "| 8 | frangi_otsu | 1 |" in md
    assert "Wall time: cell " in md and "total" in md
    for snr in (4, 8):
        meta = yaml.safe_load((out / f"test_snr{snr}" / "data" / "dataset.yaml").read_text())
        assert meta["split"]["test"] == ["d"] and not meta["split"]["train"]  # only the held-out neuron
        assert [v["snr"] for v in meta["volumes"]] == [pytest.approx(snr, abs=1e-3)]
        assert (out / "figures" / f"reference_snr{snr}.png").read_bytes()[:4] == b"\x89PNG"
    done = json.loads((out / "cells" / "scratch-f1-s0" / "done.json").read_text())
    assert done["n_train_volumes"] == 2
    assert main(["--config", str(recipe)]) == 0  # again: the cell is skipped, the report rewritten


def test_a_recipe_must_be_one_cell(recipe):
    raw = yaml.safe_load(recipe.read_text())
    raw["seeds"] = [0, 1]
    recipe.write_text(yaml.safe_dump(raw))
    with pytest.raises(NeurovitError, match="one row, one seed"):
        load_recipe(recipe)


def test_the_committed_recipe_is_one_cell_of_the_realistic_data(monkeypatch):
    """experiments/reference.yaml (make reference) loads, and renders the realistic ablation's data."""
    monkeypatch.chdir(REPO)
    cfg, snrs = load_recipe(REPO / "experiments" / "reference.yaml")
    assert snrs == [4.0, 8.0] and cfg.fractions == [1.0] and len(cfg.seeds) == 1
    assert all(p.is_file() for paths in cfg.strategies.values() for p in paths)
    ablation = yaml.safe_load((REPO / "experiments" / "ablation_realistic.yaml").read_text())
    assert cfg.synth == ablation["synth"]  # the same neurons, split, voxel size and SNRs as the table
