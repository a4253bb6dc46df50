"""The 3D-block ViT: block embedding, timm-compatible names, SliceViT shapes, modes, padding, CPU forward/backward."""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models.vision_transformer import VisionTransformer

from neurovit.models import (
    TINY_ARCH,
    BlockEmbed,
    ModelConfigError,
    SliceViT,
    ViT3dEncoder,
    resolve_arch,
    upsample_factors,
)
from neurovit.models.decoders import default_feature_layers


def test_block_embed_is_a_2d_patch_embed_when_depth_is_one():
    """Depth-1 block embedding = timm's PatchEmbed with the same kernel (same token order, row-major grid)."""
    torch.manual_seed(0)
    emb3 = BlockEmbed(img_size=32, patch_size=16, in_chans=2, embed_dim=8, block_depth=1)
    emb2 = PatchEmbed(img_size=32, patch_size=16, in_chans=2, embed_dim=8)
    with torch.no_grad():
        emb2.proj.weight.copy_(emb3.proj.weight[:, :, 0])
        emb2.proj.bias.copy_(emb3.proj.bias)
    x = torch.randn(3, 2, 32, 32)
    torch.testing.assert_close(emb3(x[:, :, None]), emb2(x))


def test_block_embed_shapes_and_errors():
    emb = BlockEmbed(img_size=32, patch_size=16, in_chans=1, embed_dim=8, block_depth=5)
    assert emb.proj.kernel_size == (5, 16, 16) and emb.proj.stride == (5, 16, 16)
    assert emb(torch.randn(2, 1, 5, 32, 32)).shape == (2, 4, 8)
    with pytest.raises(ModelConfigError, match=r"expects input \(B, 1, 5, 32, 32\), got \(2, 1, 4, 32, 32\)"):
        emb(torch.randn(2, 1, 4, 32, 32))
    with pytest.raises(ModelConfigError, match="not a multiple of patch size"):
        BlockEmbed(img_size=100, patch_size=16)


def test_encoder_parameter_names_match_timm():
    """Every parameter has timm's/DINO's name; only the patch kernel gains the depth axis."""
    enc = ViT3dEncoder(
        img_size=32, block_depth=5, in_chans=1, patch_size=16, embed_dim=48, depth=2, num_heads=2
    )
    vit2d = VisionTransformer(img_size=32, patch_size=16, num_classes=0, embed_dim=48, depth=2, num_heads=2)
    sd3, sd2 = enc.state_dict(), vit2d.state_dict()
    assert set(sd3) == set(sd2)
    assert {
        "blocks.1.attn.qkv.weight",
        "blocks.0.norm1.weight",
        "blocks.0.mlp.fc1.weight",
        "cls_token",
    } <= set(sd3)
    assert sd3["patch_embed.proj.weight"].shape == (48, 1, 5, 16, 16)
    assert all(sd3[k].shape == sd2[k].shape for k in sd3 if k != "patch_embed.proj.weight")


def test_forward_layers_returns_maps_and_checkpointing_matches():
    torch.manual_seed(0)
    enc = ViT3dEncoder(img_size=32, block_depth=3, patch_size=16, embed_dim=48, depth=3, num_heads=2).train()
    x = torch.randn(2, 1, 3, 32, 32)
    final, maps = enc.forward_layers(x, [0, 2])
    assert final.shape == (2, 5, 48) and [m.shape for m in maps] == [(2, 48, 2, 2)] * 2
    torch.testing.assert_close(final, enc(x))
    enc.set_grad_checkpointing(True)
    final_ckpt, _ = enc.forward_layers(x, [0, 2])
    torch.testing.assert_close(final_ckpt, final)
    with pytest.raises(ModelConfigError, match=r"block indices in \[0, 2\]"):
        enc.forward_layers(x, [3])


@pytest.mark.parametrize("arch", [TINY_ARCH, "vit_small_patch16_224"])
def test_forward_backward_cpu_on_5x100x100_blocks(arch):
    torch.manual_seed(0)
    model = SliceViT(arch=arch, block_depth=5, img_size=100)
    x = torch.randn(2, 1, 5, 100, 100)
    logits = model(x)
    assert logits.shape == (2, 1, 100, 100)
    loss = F.binary_cross_entropy_with_logits(logits, (torch.rand_like(logits) > 0.9).float())
    loss.backward()
    assert torch.isfinite(loss)
    for name in (
        "encoder.patch_embed.proj.weight",
        "encoder.blocks.0.attn.qkv.weight",
        "decoder.stem.conv1.weight",
        "decoder.head.weight",
    ):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_3d_sees_all_slices_2d_baseline_only_the_centre():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 5, 100, 100)
    x_edit = x.clone()
    x_edit[:, :, 0] += 1.0  # change a non-centre slice
    for mode, changes in (("3d", True), ("2d", False)):
        model = SliceViT(arch=TINY_ARCH, mode=mode).eval()
        with torch.no_grad():
            y, y_edit = model(x), model(x_edit)
        assert y.shape == (1, 1, 100, 100)
        assert (not torch.allclose(y, y_edit)) == changes, mode
    assert SliceViT(arch=TINY_ARCH, mode="2d").encoder.patch_embed.proj.weight.shape[2] == 1


def test_out_slices_all_gives_one_map_per_slice():
    model = SliceViT(arch=TINY_ARCH, out_slices="all")
    assert model(torch.randn(2, 1, 5, 100, 100)).shape == (2, 1, 5, 100, 100)


def test_padding_choice_default_and_reflect():
    """100 px with 16 px patches: symmetric padding to 112 (7×7 tokens), logits cropped back to 100."""
    model = SliceViT(arch=TINY_ARCH)
    assert (model.padded_size, model.encoder.grid_size) == (112, (7, 7))
    x = torch.rand(1, 1, 5, 100, 100) + 1.0
    xp = model.pad_block(x)
    assert xp.shape == (1, 1, 5, 112, 112)
    torch.testing.assert_close(xp[..., 6:106, 6:106], x)
    assert xp[..., :6, :].abs().sum() == 0 and xp[..., 106:, :].abs().sum() == 0
    xr = SliceViT(arch=TINY_ARCH, pad_mode="reflect").pad_block(x)
    torch.testing.assert_close(xr[..., 5, 6:106], x[..., 1, :])  # mirrored about the first row


@pytest.mark.parametrize(
    ("patch", "padded", "grid", "factors"), [(10, 100, 10, [5, 2]), (8, 104, 13, [2, 2, 2])]
)
def test_patch_size_override(patch, padded, grid, factors):
    model = SliceViT(arch=TINY_ARCH, patch_size=patch)
    assert model.padded_size == padded and model.encoder.grid_size == (grid, grid)
    assert model.decoder.factors == factors and len(model.feature_layers) == len(factors)
    assert model(torch.randn(1, 1, 5, 100, 100)).shape == (1, 1, 100, 100)


def test_other_block_sizes_and_channels():
    model = SliceViT(arch=TINY_ARCH, block_depth=3, img_size=64, in_chans=2)
    assert model(torch.randn(1, 2, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_config_and_input_errors():
    with pytest.raises(ModelConfigError, match="unknown arch 'vit_huge_patch14_224'"):
        SliceViT(arch="vit_huge_patch14_224")
    with pytest.raises(ModelConfigError, match="out_slices='all' needs mode='3d'"):
        SliceViT(arch=TINY_ARCH, mode="2d", out_slices="all")
    with pytest.raises(ModelConfigError, match="feature_layers must list 4"):
        SliceViT(arch=TINY_ARCH, feature_layers=[1, 3])
    with pytest.raises(ModelConfigError, match="unknown init strategy 'inflate'"):
        SliceViT(arch=TINY_ARCH, init="inflate")  # type: ignore[arg-type]
    with pytest.raises(
        ModelConfigError, match=r"expects blocks \(B, 1, 5, 100, 100\), got \(1, 1, 5, 96, 96\)"
    ):
        SliceViT(arch=TINY_ARCH)(torch.randn(1, 1, 5, 96, 96))


def test_arch_names_and_decoder_helpers():
    assert resolve_arch("vit_small_patch16_224.dino")[1].embed_dim == 384
    assert resolve_arch("vit_base_patch16_224")[1].depth == 12
    assert (
        upsample_factors(16) == [2, 2, 2, 2]
        and upsample_factors(20) == [5, 2, 2]
        and upsample_factors(7) == [7]
    )
    with pytest.raises(ModelConfigError, match="patch size must be >= 2"):
        upsample_factors(1)
    assert default_feature_layers(12, 4) == [2, 5, 8, 11] and default_feature_layers(4, 4) == [0, 1, 2, 3]
    model = SliceViT(arch=TINY_ARCH, embed_dim=64, depth=2, num_heads=2)
    assert model.encoder.embed_dim == 64 and len(model.encoder.blocks) == 2


def test_configurable_from_yaml_style_dict():
    """Typed constructor arguments: jsonargparse (used by LightningCLI) builds the model from a config dict."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(SliceViT, "model")
    cfg = parser.parse_object({"model": {"arch": TINY_ARCH, "mode": "2d", "patch_size": 10}})
    model = parser.instantiate(cfg).model
    assert isinstance(model, SliceViT) and model.mode == "2d" and model.patch_size == 10
    with pytest.raises(argparse.ArgumentError, match=r"model\.mode"):
        parser.parse_object({"model": {"mode": "4d"}})
