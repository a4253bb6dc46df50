"""Lightning framework: DataModule sampling, CLI configs and overrides, checkpoints/resume, W&B files, DDP."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from neurovit.cli import main
from neurovit.data.blocks import EpochSampler, is_positive
from neurovit.data.datamodule import NeuronDataModule
from neurovit.data.synth import SynthConfig, synthesize_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def dataset(tiny_dataset) -> Path:
    return tiny_dataset


def tiny_args(dataset: Path, root: Path, *extra: str) -> list[str]:
    """A fit command line of the demo config shrunk to seconds."""
    return ["--config", str(REPO / "experiments/base.yaml"), "--config", str(REPO / "experiments/demo.yaml"),
            "--data.data_dir", str(dataset), "--data.block_size", "32", "--data.batch_size", "4",
            "--data.blocks_per_epoch", "8", "--trainer.default_root_dir", str(root), "--trainer.max_epochs", "1",
            "--trainer.check_val_every_n_epoch", "1", "--trainer.enable_progress_bar", "false",
            "--model.sw_batch_size", "64", "--model.z_chunk", "8", *extra]


def test_pos_fraction_is_exact_over_consecutive_indices():
    for f in (0.0, 0.25, 0.5, 0.8, 1.0):
        assert sum(is_positive(i, f) for i in range(100)) == round(100 * f)


def test_datamodule_blocks_ratio_shapes_and_reproducibility(dataset):
    dm = NeuronDataModule(str(dataset), block_depth=3, block_size=24, batch_size=5, blocks_per_epoch=40,
                          pos_fraction=0.25)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 8
    b = batches[0]
    assert b["image"].shape == (5, 1, 3, 24, 24) and b["label"].shape == (5, 1, 24, 24)
    pos = torch.cat([x["positive"] for x in batches])
    assert int(pos.sum()) == 10  # 25 % of 40
    fg = torch.stack([x["label"].flatten(1).amax(1) for x in batches]).flatten()
    assert bool((fg[pos] > 0).all())  # positive blocks have foreground on the centre slice
    again = list(dm.train_dataloader())  # next epoch: new blocks
    assert not torch.equal(again[0]["image"], b["image"])
    dm2 = NeuronDataModule(str(dataset), block_depth=3, block_size=24, batch_size=5, blocks_per_epoch=40,
                           pos_fraction=0.25)
    dm2.setup("fit")
    assert torch.equal(next(iter(dm2.train_dataloader()))["image"], b["image"])  # seeded


def test_ranks_get_equal_disjoint_shares():
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    shares = [list(DistributedSamplerWrapper(EpochSampler(50), num_replicas=2, rank=r, shuffle=True))
              for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 25
    assert not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == list(range(50))


def test_train_fraction_subsets_are_nested(tmp_path):
    synthesize_dataset(tmp_path / "ds", SynthConfig(n_volumes=8, shape=(6, 24, 24), split=(1.0, 0.0, 0.0)),
                       progress=False)
    names = {}
    for f in (0.25, 0.5, 1.0):
        dm = NeuronDataModule(str(tmp_path / "ds"), block_size=16, train_fraction=f, subset_seed=3)
        dm.setup("fit")
        names[f] = set(dm.train_names)
    assert len(names[0.25]) == 2 and len(names[0.5]) == 4 and len(names[1.0]) == 8
    assert names[0.25] < names[0.5] < names[1.0]


def test_masks_are_rendered_from_swc_once(dataset, tmp_path):
    import shutil

    ds = tmp_path / "swc_only"
    shutil.copytree(dataset, ds)
    meta = yaml.safe_load((ds / "dataset.yaml").read_text())
    for v in meta["volumes"]:
        v.pop("label")
    (ds / "dataset.yaml").write_text(yaml.safe_dump(meta))
    shutil.rmtree(ds / "labels")
    dm = NeuronDataModule(str(ds), block_size=16)
    dm.prepare_data()
    cached = sorted((ds / ".cache" / "labels").glob("*.tif"))
    assert len(cached) == len(meta["volumes"])
    stamp = cached[0].stat().st_mtime_ns
    dm.prepare_data()
    assert cached[0].stat().st_mtime_ns == stamp  # not rendered again
    from neurovit.data.tiff import read_stack
    a = read_stack(cached[0]) > 0
    b = read_stack(dataset / "labels" / cached[0].name) > 0
    assert (a == b).mean() > 0.999


@pytest.mark.slow
def test_fit_writes_checkpoint_config_predictions_wandb_and_resumes(dataset, tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    root = tmp_path / "run"
    assert main(["fit", *tiny_args(dataset, root, "--data.block_depth", "3")]) == 0
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    # the command-line override reached the model through the ${data.block_depth} interpolation
    assert cfg["model"]["net"]["init_args"]["block_depth"] == 3
    assert cfg["model"]["net"]["init_args"]["img_size"] == 32
    assert (root / "checkpoints" / "last.ckpt").is_file()
    metrics = json.loads((root / "metrics.json").read_text())
    assert 0.0 <= metrics["mean"]["dice"] <= 1.0 and metrics["volumes"]
    preds = sorted((root / "predictions").glob("*.tif"))
    assert len(preds) == len(metrics["volumes"])
    runs = list((root / "wandb").glob("offline-run-*"))
    assert runs and list(runs[0].glob("*.wandb")), "W&B offline run files are written"
    assert list(runs[0].glob("files/media/images/val/mip*.png")), "MIP overlays are logged as W&B images"
    recon = (root / "val_reconstruction.csv").read_text().splitlines()
    assert recon[0].startswith("name,nodes,esa,dsa,pds") and len(recon) == len(metrics["volumes"]) + 1
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2
    # resume: continues at step 2 and skips the 2D transfer; a second run into the same folder works
    with caplog.at_level(logging.INFO):
        assert main(["fit", *tiny_args(dataset, root, "--data.block_depth", "3", "--trainer.max_epochs", "2",
                                        "--ckpt_path", str(root / "checkpoints" / "last.ckpt"))]) == 0
    assert "no 2D weights transferred" in caplog.text
    assert len(list((root / "wandb").glob("offline-run-*"))) == 2  # the second command got its own run
    resumed = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["global_step"] == 4 and resumed["epoch"] == 1


def test_center_init_from_a_2d_checkpoint_file_and_wandb_disabled(dataset, tmp_path, monkeypatch, caplog):
    from neurovit.models import TINY_ARCH, build_vit2d

    monkeypatch.setenv("WANDB_MODE", "disabled")
    vit2d = build_vit2d(TINY_ARCH, img_size=224)
    torch.save(vit2d.state_dict(), tmp_path / "tiny2d.pth")
    root = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        assert main(["fit", *tiny_args(dataset, root, "--trainer.limit_val_batches", "0", "--trainer.max_steps", "1",
                                        "--init.strategy", "center", "--init.source", str(tmp_path / "tiny2d.pth"),
                                        "--model.lr", "0.0")]) == 0
    assert "TransferInit" in caplog.text and "center" in caplog.text
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    w3d = ckpt["state_dict"]["net.encoder.patch_embed.proj.weight"]  # (E, 1, D, p, p)
    w2d = vit2d.state_dict()["patch_embed.proj.weight"].sum(1, keepdim=True)  # grey: summed over RGB
    torch.testing.assert_close(w3d[:, :, 2], w2d)
    assert float(w3d[:, :, [0, 1, 3, 4]].abs().max()) == 0.0
    assert not list(root.glob("wandb/offline-run-*"))  # WANDB_MODE=disabled wins over offline=True


def test_missing_weights_fail_before_training_with_a_clear_message(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    rc = main(["fit", *tiny_args(dataset, tmp_path / "run", "--init.strategy", "average",
                                 "--init.source", str(tmp_path / "nope_pretrain.pth"))])
    err = capsys.readouterr().err
    assert rc == 2 and "nope_pretrain.pth" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("bad, message", [
    (["--data.no_such_key", "1"], "no_such_key"),
    (["--data.batch_size", "many"], "batch_size"),
])
def test_config_errors_are_reported_by_the_cli(dataset, tmp_path, capsys, bad, message):
    with pytest.raises(SystemExit) as info:
        main(["fit", *tiny_args(dataset, tmp_path / "run", *bad)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "error" in err.lower()
    assert "Traceback" not in err


def test_print_config_resolves_interpolations(dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", *tiny_args(dataset, tmp_path / "run", "--data.block_depth", "7", "--print_config")])
    assert info.value.code == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["net"]["init_args"]["block_depth"] == 7
    assert cfg["trainer"]["logger"]["init_args"]["save_dir"] == str(tmp_path / "run")


@pytest.mark.slow
def test_two_process_ddp_fit_on_cpu(dataset, tmp_path):
    root = tmp_path / "ddp"
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "neurovit", "fit", *tiny_args(dataset, root, "--trainer.strategy", "ddp",
                                                                "--trainer.devices", "2",
                                                                "--trainer.accelerator", "cpu",
                                                                "--data.blocks_per_epoch", "16")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, "\n".join(ln for ln in proc.stderr.splitlines() if "rank0" not in ln)[-3000:]
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # 16 blocks, batch 4, 2 ranks → 2 optimiser steps per epoch on each rank
    assert ckpt["global_step"] == 2
    assert "world_size: 2" in proc.stderr or "GLOBAL_RANK: 1" in proc.stderr + proc.stdout
    metrics = json.loads((root / "metrics.json").read_text())
    assert np.isfinite(metrics["mean"]["dice"])
