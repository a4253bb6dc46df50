"""Pretrained 2D sources: every checkpoint format loads; every failure mode says what is wrong and what to do.

No test touches the network: sockets are disabled, and the caches point into tmp_path.
"""

from __future__ import annotations

import argparse
import socket
import time

import pytest
import timm
import torch
from safetensors.torch import save_file

from neurovit.errors import WeightsError
from neurovit.models import TINY_ARCH, ModelConfigError, SliceViT, build_vit2d, load_2d_state_dict
from neurovit.models import pretrained as pretrained_mod
from neurovit.models.pretrained import find_cached_weights, hub_reachable

DINO_S16_URL = "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth"


@pytest.fixture(autouse=True)
def no_network_and_private_caches(monkeypatch, tmp_path):
    """Any connection attempt fails at once; HF / torch-hub caches are empty folders under tmp_path."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def vit_state(arch: str = TINY_ARCH, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_vit2d(arch, img_size=224).state_dict()


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def dino_training_checkpoint(teacher: dict, student: dict) -> dict:
    """The layout DINO's main_dino.py saves: DDP-wrapped student, plain teacher, projection heads, extras."""
    head = {"head.mlp.0.weight": torch.randn(32, 96), "head.last_layer.weight_g": torch.ones(1000, 1)}
    return {
        "student": {
            **{f"module.backbone.{k}": v for k, v in student.items()},
            **{f"module.{k}": v for k, v in head.items()},
        },
        "teacher": {**{f"backbone.{k}": v for k, v in teacher.items()}, **head},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.0005}]},
        "epoch": 100,
        "args": argparse.Namespace(arch="vit_small", patch_size=16, out_dim=65536),
        "dino_loss": {"center": torch.zeros(1, 65536)},
    }


# --- formats ------------------------------------------------------------------------------------------------


def test_timm_state_dict_pth_with_head(tmp_path):
    sd = dict(vit_state(), **{"head.weight": torch.randn(10, 96), "head.bias": torch.zeros(10)})
    torch.save(sd, tmp_path / "timm_vit.pth")
    assert_same(load_2d_state_dict(tmp_path / "timm_vit.pth"), sd)


def test_safetensors_state_dict(tmp_path):
    sd = vit_state()
    save_file(sd, str(tmp_path / "model.safetensors"))
    assert_same(load_2d_state_dict(str(tmp_path / "model.safetensors")), sd)


@pytest.mark.parametrize("wrapper", ["model", "state_dict"])
def test_wrapped_and_prefixed_state_dicts(tmp_path, wrapper):
    sd = vit_state()
    torch.save({wrapper: {f"net.vit.{k}": v for k, v in sd.items()}, "epoch": 3}, tmp_path / "w.ckpt")
    assert_same(load_2d_state_dict(tmp_path / "w.ckpt"), sd)


def test_official_dino_backbone_file(tmp_path):
    """dino_deitsmall16_pretrain.pth: a bare backbone state dict with DINO's key names (= timm's)."""
    sd = vit_state()
    assert {
        "cls_token",
        "pos_embed",
        "patch_embed.proj.weight",
        "blocks.0.attn.qkv.weight",
        "norm.weight",
    } <= set(sd)
    path = tmp_path / "dino_deitsmall16_pretrain.pth"
    torch.save(sd, path)
    assert_same(load_2d_state_dict(path), sd)


def test_full_dino_training_checkpoint_teacher_by_default(tmp_path):
    teacher, student = vit_state(seed=1), vit_state(seed=2)
    torch.save(dino_training_checkpoint(teacher, student), tmp_path / "checkpoint.pth")
    assert_same(load_2d_state_dict(tmp_path / "checkpoint.pth"), teacher)
    assert_same(load_2d_state_dict(tmp_path / "checkpoint.pth", which="student"), student)


def test_slicevit_transfers_from_a_dino_checkpoint(tmp_path):
    teacher = vit_state(seed=1)
    torch.save(dino_training_checkpoint(teacher, vit_state(seed=2)), tmp_path / "checkpoint.pth")
    model = SliceViT(arch=TINY_ARCH, pretrained=str(tmp_path / "checkpoint.pth"), init="average")
    sd3 = model.encoder.state_dict()
    assert torch.equal(sd3["blocks.3.mlp.fc2.weight"], teacher["blocks.3.mlp.fc2.weight"])
    assert model.transfer_report.resampled["pos_embed"] == "(1, 197, 96) → (1, 50, 96)"
    assert "checkpoint.pth" in model.transfer_report.summary()


def test_timm_name_from_a_local_hf_cache(tmp_path):
    """vit_small_patch16_224.dino resolves to the cached timm/… file offline, and SliceViT initialises from it."""
    snapshot = tmp_path / "hf" / "hub" / "models--timm--vit_small_patch16_224.dino" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    sd = vit_state("vit_small_patch16_224")
    save_file(sd, str(snapshot / "model.safetensors"))
    assert find_cached_weights("vit_small_patch16_224.dino") == snapshot / "model.safetensors"
    model = SliceViT(arch="vit_small_patch16_224", pretrained="vit_small_patch16_224.dino", init="center")
    assert torch.equal(
        model.encoder.state_dict()["blocks.11.attn.proj.weight"], sd["blocks.11.attn.proj.weight"]
    )


def test_timm_name_from_the_torch_hub_cache(tmp_path):
    """timm's legacy URL download location (~/.cache/torch/hub/checkpoints/<official file name>) is used too."""
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    sd = vit_state()
    torch.save(sd, hub / "dino_deitsmall16_pretrain.pth")
    assert_same(load_2d_state_dict("vit_small_patch16_224.dino"), sd)


# --- failure modes ------------------------------------------------------------------------------------------


def test_missing_file_names_it_and_the_official_url(tmp_path):
    path = tmp_path / "dino_deitsmall16_pretrain.pth"
    with pytest.raises(
        WeightsError, match=r"file not found: .*dino_deitsmall16_pretrain\.pth.*dl\.fbaipublicfiles"
    ):
        load_2d_state_dict(path)
    with pytest.raises(WeightsError, match=r"file not found: .*weights/vit\.pth"):
        SliceViT(arch=TINY_ARCH, pretrained=str(tmp_path / "weights" / "vit.pth"), init="center")


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("vit_small_patch16_224.dino", DINO_S16_URL),
        ("vit_base_patch16_224.dino", "dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"),
    ],
)
def test_uncached_timm_name_offline_fails_fast_with_instructions(name, url):
    t0 = time.perf_counter()
    with pytest.raises(WeightsError) as err:
        SliceViT(arch=name, pretrained=name, init="center")
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    assert f"{name!r} are not in the local cache" in msg and "unreachable (offline)" in msg
    assert url in msg and f"huggingface-cli download timm/{name}" in msg


def test_unreachable_hub_is_detected_without_offline_flags(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("NEUROVIT_OFFLINE", raising=False)
    assert hub_reachable(timeout=1.0) is False  # the connection is refused (as on a machine without internet)
    with pytest.raises(WeightsError, match=r"'vit_small_patch16_224\.dino' are not in the local cache"):
        load_2d_state_dict("vit_small_patch16_224.dino")


def test_unknown_name(tmp_path):
    with pytest.raises(
        WeightsError, match=r"'vit_tiny3d\.dino' is neither an existing file nor a timm model"
    ):
        load_2d_state_dict("vit_tiny3d.dino")


def test_corrupt_and_foreign_files(tmp_path):
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"cannot read pretrained weights .*broken\.pth"):
        load_2d_state_dict(tmp_path / "broken.pth")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(WeightsError, match=r"cannot read pretrained weights .*broken\.safetensors"):
        load_2d_state_dict(tmp_path / "broken.safetensors")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "resnet.pth")
    with pytest.raises(
        WeightsError, match=r"resnet\.pth does not look like a ViT checkpoint: no 'pos_embed'"
    ):
        load_2d_state_dict(tmp_path / "resnet.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match=r"list\.pth does not hold a state dict"):
        load_2d_state_dict(tmp_path / "list.pth")


def test_dino_checkpoint_without_the_requested_network(tmp_path):
    ckpt = dino_training_checkpoint(vit_state(), vit_state())
    del ckpt["student"]
    torch.save(ckpt, tmp_path / "checkpoint.pth")
    with pytest.raises(
        WeightsError, match=r"DINO training checkpoint without a 'student' dict \(has: \['teacher'\]\)"
    ):
        load_2d_state_dict(tmp_path / "checkpoint.pth", which="student")


def test_wrong_model_size_reports_shape_mismatch(tmp_path):
    torch.save(vit_state(TINY_ARCH), tmp_path / "tiny.pth")
    with pytest.raises(WeightsError, match=r"tiny\.pth: shape mismatch for \S+: checkpoint .* vs model"):
        SliceViT(arch=TINY_ARCH, embed_dim=48, pretrained=str(tmp_path / "tiny.pth"), init="center")


def test_transfer_strategy_needs_weights_and_scratch_needs_none(tmp_path):
    with pytest.raises(ModelConfigError, match="init='center' transfers 2D weights: set pretrained"):
        SliceViT(arch=TINY_ARCH, init="center")
    # scratch never reads `pretrained` (an ablation config may keep it set)
    model = SliceViT(arch=TINY_ARCH, pretrained=str(tmp_path / "absent.pth"), init="scratch")
    assert model.transfer_report.copied == []


def test_sockets_really_are_disabled():
    with pytest.raises(OSError, match="network disabled"):
        socket.create_connection(("huggingface.co", 443), timeout=1)


def test_online_path_downloads_through_timm(monkeypatch):
    """When the hub answers and nothing is cached, the weights come from timm.create_model(pretrained=True)."""
    calls = []

    def fake_create_model(name, pretrained=False, **kwargs):
        calls.append((name, pretrained, kwargs))
        torch.manual_seed(3)
        return build_vit2d("vit_small_patch16_224")

    monkeypatch.setattr(pretrained_mod, "hub_reachable", lambda: True)
    monkeypatch.setattr(timm, "create_model", fake_create_model)
    sd = load_2d_state_dict("vit_small_patch16_224.dino")
    assert calls == [("vit_small_patch16_224.dino", True, {"num_classes": 0, "cache_dir": None})]
    assert sd["pos_embed"].shape == (1, 197, 384)

    def failing_create_model(name, pretrained=False, **kwargs):
        raise RuntimeError("HTTP 503")

    monkeypatch.setattr(timm, "create_model", failing_create_model)
    with pytest.raises(
        WeightsError,
        match=r"downloading pretrained weights for 'vit_small_patch16_224\.dino' failed: HTTP 503",
    ):
        load_2d_state_dict("vit_small_patch16_224.dino")
