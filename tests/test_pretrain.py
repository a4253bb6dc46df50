"""`neurovit pretrain` (DINO with lightly): photos and stacks → RUN/backbone.pth that `init.source` loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurovit.cli import main
from neurovit.errors import DatasetError

TINY = ["--model.out_dim", "64", "--model.hidden_dim", "32", "--model.bottleneck_dim", "16", "--model.warmup_steps", "2",
        "--data.global_crop_size", "32", "--data.local_crop_size", "16", "--data.n_local_views", "2",
        "--data.samples_per_epoch", "8", "--data.batch_size", "4", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def pretrain_args(data: Path, root: Path, *extra: str) -> list[str]:
    return ["pretrain", "--config", "pretrain", "--data.data_dir", str(data), "--trainer.default_root_dir", str(root),
            "--trainer.max_epochs", "1", *TINY, *extra]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Four small pictures of different sizes (PNG and JPEG) made from scikit-image photos."""
    import skimage.data
    from PIL import Image

    d = tmp_path_factory.mktemp("photos")
    for i, (name, size) in enumerate([("astronaut", 80), ("coffee", 64), ("camera", 72), ("chelsea", 96)]):
        img = Image.fromarray(getattr(skimage.data, name)()).resize((size, size + 8 * i))
        img.save(d / (f"{name}.png" if i % 2 == 0 else f"{name}.jpg"))
    return d


@pytest.fixture(scope="module")
def pretrained_photos(photos, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pt-photos") / "run"
    assert main(pretrain_args(photos, root)) == 0
    return root


def test_pretrain_on_photos_writes_a_timm_backbone_and_what_it_saw(pretrained_photos, photos):
    from neurovit.models import build_vit2d

    sd = torch.load(pretrained_photos / "backbone.pth", weights_only=True)
    vit = build_vit2d("neurovit_tiny_patch16", img_size=32)
    assert set(sd) == set(vit.state_dict())  # exactly timm's names: no head, no prefixes
    info = json.loads((pretrained_photos / "backbone.json").read_text())
    assert info["trained_on"]["kind"] == "images" and info["trained_on"]["n_files"] == 4
    assert info["steps"] == 2 and info["images_seen"] == 8 and info["arch"] == "neurovit_tiny_patch16"
    assert info["wall_seconds"] > 0 and np.isfinite(info["final_loss"])
    assert (pretrained_photos / "checkpoints" / "last.ckpt").is_file()
    assert (pretrained_photos / "config.yaml").is_file()


@pytest.mark.parametrize("strategy", ["center", "average"])
def test_backbone_goes_through_the_init_source_loader(pretrained_photos, strategy):
    from neurovit.models import SliceViT, collapse_rgb, load_2d_state_dict, transfer_2d_to_3d

    sd = load_2d_state_dict(str(pretrained_photos / "backbone.pth"))
    net = SliceViT(arch="neurovit_tiny_patch16", block_depth=5, img_size=32)
    report = transfer_2d_to_3d(net, sd, strategy)
    assert "patch_embed.proj.weight" in report.copied
    w3 = net.encoder.state_dict()["patch_embed.proj.weight"].double()  # (E, 1, D, p, p)
    w2 = collapse_rgb(sd["patch_embed.proj.weight"], 1).double()
    if strategy == "center":
        assert torch.allclose(w3[:, :, 2], w2, atol=1e-6) and w3[:, :, [0, 1, 3, 4]].abs().max() == 0
    else:
        assert torch.allclose(w3.sum(2), w2, atol=1e-6)
    assert torch.equal(net.encoder.state_dict()["blocks.0.attn.qkv.weight"], sd["blocks.0.attn.qkv.weight"])


def test_lightning_checkpoint_of_pretrain_loads_the_teacher(pretrained_photos):
    from neurovit.models import load_2d_state_dict

    backbone = torch.load(pretrained_photos / "backbone.pth", weights_only=True)
    ckpt = pretrained_photos / "checkpoints" / "last.ckpt"
    teacher = load_2d_state_dict(str(ckpt))
    student = load_2d_state_dict(str(ckpt), which="student")
    assert all(torch.equal(teacher[k], backbone[k]) for k in backbone)
    assert any(not torch.equal(student[k], backbone[k]) for k in backbone)  # the EMA lags the student


def test_fit_with_center_init_from_a_pretrained_stack_backbone(tiny_dataset, tmp_path, monkeypatch):
    """Done-when: pretrain on a folder of stacks (labels never opened), then `fit --init.source` loads it."""
    from conftest import tiny_fit_args

    import neurovit.data.volumes as volumes

    opened = []
    real = volumes.open_volume
    monkeypatch.setattr(volumes, "open_volume", lambda p, **kw: (opened.append(str(p)), real(p, **kw))[1])
    assert main(pretrain_args(tiny_dataset, tmp_path / "pt", "--data.splits", "[train]")) == 0
    info = json.loads((tmp_path / "pt" / "backbone.json").read_text())
    assert info["trained_on"]["kind"] == "stacks" and info["trained_on"]["n_files"] == 2  # the 2 train volumes
    assert opened and not any("labels" in p for p in opened)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    args = tiny_fit_args(tiny_dataset, tmp_path / "fit", "--init.source", str(tmp_path / "pt" / "backbone.pth"),
                         "--init.strategy", "center", "--trainer.max_steps", "1")
    assert main(args) == 0
    assert (tmp_path / "fit" / "checkpoints" / "last.ckpt").is_file()


def test_resume_continues_the_run_and_a_second_run_is_refused(photos, tmp_path, capsys):
    root = tmp_path / "run"
    assert main(pretrain_args(photos, root)) == 0
    first = torch.load(root / "backbone.pth", weights_only=True)
    assert main(pretrain_args(photos, root)) == 2  # a new run into a used folder
    assert "already holds a run" in capsys.readouterr().err
    # mark the checkpoint: a resumed run carries the mark on (the teacher is an EMA: it keeps ~99 % of it),
    # a run that silently started afresh would not
    ckpt_file = root / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_file, weights_only=False)
    ckpt["state_dict"]["teacher_backbone.pos_embed"] += 10.0
    torch.save(ckpt, ckpt_file)
    assert main(pretrain_args(photos, root, "--trainer.max_epochs", "2", "--ckpt_path", "last")) == 0
    ckpt = torch.load(ckpt_file, weights_only=False)
    assert ckpt["global_step"] == 4 and ckpt["epoch"] == 1
    info = json.loads((root / "backbone.json").read_text())
    assert info["steps"] == 4 and info["epochs"] == 2
    resumed = torch.load(root / "backbone.pth", weights_only=True)
    assert (resumed["pos_embed"] - first["pos_embed"]).mean() > 9.0
    assert main(pretrain_args(photos, root, "--model.arch", "vit_tiny_patch16_224", "--ckpt_path", "last")) == 2
    assert "pretrained with model.arch 'neurovit_tiny_patch16'" in capsys.readouterr().err


def test_bad_folders_are_one_line_errors(tmp_path, capsys):
    assert main(pretrain_args(tmp_path / "missing", tmp_path / "r1")) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(pretrain_args(tmp_path / "empty", tmp_path / "r2")) == 2
    assert "neither pictures" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    from neurovit.pretrain.inputs import ImageFolderInput

    with pytest.raises(DatasetError, match="broken.png"):
        ImageFolderInput(bad).sample(np.random.default_rng(0))
    assert not (tmp_path / "r1" / "backbone.pth").exists()


def test_kind_detection_prefers_stacks_for_dataset_folders(tiny_dataset, photos):
    from neurovit.pretrain.inputs import detect_kind

    assert (tiny_dataset / "preview.png").is_file()  # a picture in a dataset folder does not make it photos
    assert detect_kind(tiny_dataset) == "stacks"
    assert detect_kind(photos) == "images"


def test_stack_regions_are_biased_towards_foreground(tmp_path):
    """A dark volume with one bright line: biased sampling picks regions with it far more often."""
    from neurovit.data.volumes import write_volume
    from neurovit.pretrain.inputs import StackFolderInput

    rng = np.random.default_rng(0)
    vol = rng.normal(100, 5, (6, 128, 128)).astype(np.float32)
    vol[:, 100:103, 10:120] = 1000.0  # a bright neurite near the bottom edge
    write_volume(tmp_path / "v.tif", vol, voxel_size=(2.0, 1.0, 1.0))
    scores = {}
    for bias in (0.0, 1.0):
        src = StackFolderInput(tmp_path, region=32, foreground_bias=bias, tries=8)
        r = np.random.default_rng(1)
        scores[bias] = np.mean([src.regions(r)[1] > 0 for _ in range(60)])
    assert scores[1.0] >= 0.9 and scores[0.0] <= 0.5
    img = StackFolderInput(tmp_path, region=32).sample(np.random.default_rng(2))
    assert img.mode == "RGB" and img.size == (32, 32)


def test_schedules_and_ema():
    from neurovit.pretrain.dino import DinoPretrainModule

    m = DinoPretrainModule(img_size=32, out_dim=16, hidden_dim=8, bottleneck_dim=4, warmup_steps=10, lr=1e-3,
                           min_lr=1e-5, momentum=0.9)
    m.total_steps = lambda: 100
    m.peak_lr = lambda: 1e-3
    assert m.lr_factor(0) == pytest.approx(0.1) and m.lr_factor(9) == pytest.approx(1.0)
    assert m.lr_factor(10) == pytest.approx(1.0) and m.lr_factor(100) == pytest.approx(1e-2)
    assert m.lr_factor(55) == pytest.approx(0.01 + 0.99 * 0.5)
    assert m.momentum_at(0) == pytest.approx(0.9) and m.momentum_at(100) == pytest.approx(1.0)
    assert not any(p.requires_grad for p in m.teacher_backbone.parameters())
    opt_params = {id(p) for g in m.configure_optimizers()["optimizer"].param_groups for p in g["params"]}
    assert not any(id(p) in opt_params for p in m.teacher_backbone.parameters())
    groups = m.configure_optimizers()["optimizer"].param_groups
    names = {id(p): n for n, p in m.named_parameters()}
    no_decay = {names[id(p)] for p in groups[1]["params"]}
    assert groups[1]["weight_decay"] == 0 and "student_backbone.pos_embed" in no_decay
    assert "student_backbone.blocks.0.attn.qkv.weight" not in no_decay
    with torch.no_grad():
        for p in m.student_backbone.parameters():
            p.add_(1.0)
    before = m.teacher_backbone.pos_embed.clone()
    m.on_train_batch_end(None, None, 0)  # m = 0.9: the teacher moves 10 % of the way
    assert torch.allclose(m.teacher_backbone.pos_embed, before + 0.1, atol=1e-5)


def test_ddp_ranks_see_different_regions_and_an_empty_epoch_is_refused(photos):
    """Ranks share the global seed; the item index (disjoint per rank under DistributedSampler) must still
    give them different regions."""
    from neurovit.pretrain.data import PretrainDataModule

    dm = PretrainDataModule(str(photos), global_crop_size=32, local_crop_size=16, n_local_views=1,
                            samples_per_epoch=8, batch_size=4)
    dm.setup()
    from lightning import seed_everything

    seed_everything(0, verbose=False)  # torch, numpy and random: lightly's transforms use all three
    a = dm.train_ds[0][0]
    seed_everything(0, verbose=False)  # the same RNG state, as on another rank, but another index
    b = dm.train_ds[1][0]
    seed_everything(0, verbose=False)
    assert torch.equal(dm.train_ds[0][0], a) and not torch.equal(a, b)
    with pytest.raises(DatasetError, match="no batch"):
        PretrainDataModule(str(photos), samples_per_epoch=4, batch_size=8)
