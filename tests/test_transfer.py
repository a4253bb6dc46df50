"""2D→3D transfer: the kernel definitions, and the token identities that specify `center` and `average`."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from neurovit.errors import WeightsError
from neurovit.models import (
    ARCHS,
    TINY_ARCH,
    ModelConfigError,
    SliceViT,
    collapse_rgb,
    inflate_patch_kernel,
    transfer_2d_to_3d,
)

ATOL, RTOL = 1e-5, 1e-5  # float32
ATOL64 = 1e-9  # float64: the identities are exact up to rounding


def random_vit2d(
    arch: str, img_size: int = 112, patch_size: int | None = None, seed: int = 0
) -> VisionTransformer:
    """A real timm 2D ViT (RGB input, no head) with every parameter randomised, biases and norms included."""
    torch.manual_seed(seed)
    if arch == TINY_ARCH:
        s = ARCHS[arch]
        vit = VisionTransformer(
            img_size=img_size,
            patch_size=patch_size or s.patch_size,
            num_classes=0,
            embed_dim=s.embed_dim,
            depth=s.depth,
            num_heads=s.num_heads,
        )
    else:
        kw = {"patch_size": patch_size} if patch_size else {}
        vit = timm.create_model(arch, pretrained=False, img_size=img_size, num_classes=0, **kw)
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return vit.eval()


def tokens_2d(vit: VisionTransformer, grey: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Final normed tokens and every block's patch-token map of a 2D ViT on a grey image replicated to RGB."""
    rgb = grey.expand(-1, 3, -1, -1)
    with torch.no_grad():
        maps = vit.forward_intermediates(rgb, indices=len(vit.blocks), intermediates_only=True)
        return vit.forward_features(rgb), maps


def tokens_3d(model: SliceViT, block: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    with torch.no_grad():
        return model.encoder.forward_layers(model.pad_block(block), list(range(len(model.encoder.blocks))))


def assert_tokens_equal(a: tuple, b: tuple) -> None:
    """Final normed tokens (B, 1+N, E) and every block's (B, E, g, g) patch-token map agree."""
    tol = {"atol": ATOL64, "rtol": ATOL64} if a[0].dtype == torch.float64 else {"atol": ATOL, "rtol": RTOL}
    torch.testing.assert_close(a[0], b[0], **tol)
    assert len(a[1]) == len(b[1])
    for x, y in zip(a[1], b[1]):
        torch.testing.assert_close(
            x, y, **(tol if x.dtype == torch.float64 else {"atol": 1e-4, "rtol": 1e-4})
        )


# --- the kernel definitions -------------------------------------------------------------------------------


def test_inflate_average_and_center_definitions():
    w = torch.randn(8, 1, 4, 4)
    avg = inflate_patch_kernel(w, 5, "average")
    assert avg.shape == (8, 1, 5, 4, 4)
    for d in range(5):
        torch.testing.assert_close(avg[:, :, d], w / 5)
    cen = inflate_patch_kernel(w, 4, "center")
    torch.testing.assert_close(cen[:, :, 2], w)  # D // 2 for an even depth too
    assert cen[:, :, [0, 1, 3]].abs().sum() == 0


def test_inflated_conv3d_equals_conv2d():
    """center: conv3d(block) = conv2d(slice D//2); average: conv3d(depth-constant block) = conv2d(slice)."""
    w, x = torch.randn(8, 1, 4, 4), torch.randn(2, 1, 5, 8, 8)
    torch.testing.assert_close(
        F.conv3d(x, inflate_patch_kernel(w, 5, "center"), stride=(5, 4, 4))[:, :, 0],
        F.conv2d(x[:, :, 2], w, stride=4),
    )
    const = x[:, :, :1].expand(-1, -1, 5, -1, -1)
    torch.testing.assert_close(
        F.conv3d(const, inflate_patch_kernel(w, 5, "average"), stride=(5, 4, 4))[:, :, 0],
        F.conv2d(x[:, :, 0], w, stride=4),
    )


def test_inflate_errors():
    with pytest.raises(ModelConfigError, match="cannot inflate a kernel with strategy 'scratch'"):
        inflate_patch_kernel(torch.randn(8, 1, 4, 4), 5, "scratch")
    with pytest.raises(
        ModelConfigError, match=r"expected a 2D patch kernel \(E, C, p, p\), got shape \(8, 4, 4\)"
    ):
        inflate_patch_kernel(torch.randn(8, 4, 4), 5, "center")


@pytest.mark.parametrize("in_chans", [1, 2, 4])
def test_collapse_rgb_keeps_the_response_to_replicated_grey(in_chans):
    """Σ over RGB (C=1) or its C-th share per channel: grey replicated to RGB / to C channels responds equally."""
    w, grey = torch.randn(8, 3, 4, 4), torch.randn(2, 1, 8, 8)
    wc = collapse_rgb(w, in_chans)
    assert wc.shape == (8, in_chans, 4, 4)
    torch.testing.assert_close(
        F.conv2d(grey.expand(-1, in_chans, -1, -1), wc), F.conv2d(grey.expand(-1, 3, -1, -1), w)
    )
    assert collapse_rgb(w, 3) is w  # an RGB input keeps the kernel


# --- the identities (the specification) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "dtype"),
    [
        (TINY_ARCH, torch.float64),
        (TINY_ARCH, torch.float32),
        ("vit_small_patch16_224", torch.float64),
        ("vit_small_patch16_224", torch.float32),
        pytest.param("vit_base_patch16_224", torch.float32, marks=pytest.mark.slow),
    ],
    ids=["tiny-f64", "tiny-f32", "small-f64", "small-f32", "base-f32"],
)
def test_transfer_identity(arch, dtype):
    """center: 3D tokens = 2D tokens of the centre slice alone; average: = 2D tokens of a depth-constant block.

    float64 shows the identities are exact (1e-9); float32 that they hold at working precision (final tokens
    1e-5, the un-normalised block outputs 1e-4).
    """
    vit = random_vit2d(arch, img_size=112).to(dtype)  # same 7×7 token grid as a padded 100×100 block
    model = SliceViT(arch=arch, block_depth=5, img_size=100).eval().to(dtype)
    torch.manual_seed(1)
    block = torch.randn(1, 1, 5, 100, 100, dtype=dtype)  # slices differ: only the centre one may matter
    for strategy, x in (("center", block), ("average", block[:, :, :1].expand(-1, -1, 5, -1, -1))):
        report = transfer_2d_to_3d(model, vit.state_dict(), strategy)
        assert report.strategy == strategy and "blocks.0.attn.qkv.weight" in report.copied
        assert not report.resampled
        assert_tokens_equal(tokens_3d(model, x), tokens_2d(vit, model.pad_block(x)[:, :, 2]))


def test_center_identity_through_pos_embed_resampling():
    """A 224 px 2D model (14×14 grid) → 7×7 grid: same tokens as timm's own 112 px model from that checkpoint."""
    vit224 = random_vit2d(TINY_ARCH, img_size=224)
    model = SliceViT(arch=TINY_ARCH).eval()
    report = transfer_2d_to_3d(model, vit224.state_dict(), "center")
    assert report.resampled["pos_embed"] == "(1, 197, 96) → (1, 50, 96)"
    ref = random_vit2d(TINY_ARCH, img_size=112, seed=5)
    ref.load_state_dict(checkpoint_filter_fn(vit224.state_dict(), ref))
    block = torch.randn(1, 1, 5, 100, 100)
    assert_tokens_equal(tokens_3d(model, block), tokens_2d(ref, model.pad_block(block)[:, :, 2]))


def test_center_identity_with_resampled_patch_size():
    """patch_size=10: the 16×16 kernel is resampled like timm does it (no padding, 10×10 tokens)."""
    vit16 = random_vit2d(TINY_ARCH, img_size=160)  # 10×10 grid at patch 16
    model = SliceViT(arch=TINY_ARCH, patch_size=10).eval()
    report = transfer_2d_to_3d(model, vit16.state_dict(), "center")
    assert report.resampled == {"patch_embed.proj.weight": "(16, 16) → (10, 10)"}
    ref = random_vit2d(TINY_ARCH, img_size=100, patch_size=10, seed=5)
    ref.load_state_dict(checkpoint_filter_fn(vit16.state_dict(), ref))
    block = torch.randn(1, 1, 5, 100, 100)
    assert_tokens_equal(tokens_3d(model, block), tokens_2d(ref, block[:, :, 2]))


@pytest.mark.parametrize("strategy", ["center", "average"])
def test_2d_baseline_equals_the_2d_vit_on_the_centre_slice(strategy):
    vit = random_vit2d(TINY_ARCH, img_size=112)
    model = SliceViT(arch=TINY_ARCH, mode="2d").eval()
    transfer_2d_to_3d(model, vit.state_dict(), strategy)
    block = torch.randn(1, 1, 5, 100, 100)  # non-constant depth: the baseline only sees slice 2
    assert_tokens_equal(tokens_3d(model, block), tokens_2d(vit, model.pad_block(block)[:, :, 0]))


def test_grey_to_multichannel_identity():
    vit = random_vit2d(TINY_ARCH, img_size=112)
    model = SliceViT(arch=TINY_ARCH, in_chans=2).eval()
    transfer_2d_to_3d(model, vit.state_dict(), "center")
    grey = torch.randn(1, 1, 5, 100, 100).expand(-1, 2, -1, -1, -1)
    assert_tokens_equal(tokens_3d(model, grey), tokens_2d(vit, model.pad_block(grey)[:, :1, 2]))


# --- scratch and failure modes ------------------------------------------------------------------------------


def test_scratch_leaves_the_init_untouched():
    model = SliceViT(arch=TINY_ARCH)
    before = copy.deepcopy(model.state_dict())
    report = transfer_2d_to_3d(model, random_vit2d(TINY_ARCH).state_dict(), "scratch")
    assert report.copied == [] and "no weights transferred" in report.summary()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("decoder", ["unetr", "light"])
def test_center_copies_everything_but_the_patch_kernel(decoder):
    vit = random_vit2d(TINY_ARCH)
    model = SliceViT(arch=TINY_ARCH, decoder=decoder)
    decoder_before = copy.deepcopy(model.decoder.state_dict())
    report = transfer_2d_to_3d(model, vit.state_dict(), "center")
    sd2, sd3 = vit.state_dict(), model.encoder.state_dict()
    assert sorted(report.copied) == sorted(sd3)
    assert all(torch.equal(sd3[k], sd2[k]) for k in sd3 if k != "patch_embed.proj.weight")
    assert all(torch.equal(v, model.decoder.state_dict()[k]) for k, v in decoder_before.items())
    assert "54 tensors copied" in report.summary() and str(report) == report.summary()


def test_heads_are_dropped_and_reported():
    sd = dict(
        random_vit2d(TINY_ARCH).state_dict(),
        **{"head.weight": torch.randn(10, 96), "head.bias": torch.zeros(10)},
    )
    report = transfer_2d_to_3d(SliceViT(arch=TINY_ARCH), sd, "average")
    assert report.dropped == ["head.weight", "head.bias"]


def test_key_mismatches_are_reported_and_leave_the_model_untouched():
    model = SliceViT(arch=TINY_ARCH)
    before = copy.deepcopy(model.state_dict())
    sd = random_vit2d(TINY_ARCH).state_dict()
    missing = {k: v for k, v in sd.items() if k != "blocks.1.mlp.fc1.weight"}
    with pytest.raises(WeightsError, match=r"missing keys \(1\): blocks\.1\.mlp\.fc1\.weight"):
        transfer_2d_to_3d(model, missing, "center", source="my.pth")
    with pytest.raises(WeightsError, match=r"my\.pth does not match .* unexpected keys \(1\): dist_token"):
        transfer_2d_to_3d(model, dict(sd, dist_token=torch.zeros(1, 1, 96)), "center", source="my.pth")
    narrow = VisionTransformer(img_size=112, num_classes=0, embed_dim=48, depth=4, num_heads=3).state_dict()
    with pytest.raises(
        WeightsError, match=r"shape mismatch for \S+: checkpoint \(.*48.*\) vs model \(.*96.*\)"
    ):
        transfer_2d_to_3d(model, narrow, "center")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_strategy_and_model():
    with pytest.raises(ModelConfigError, match="unknown init strategy 'mean'"):
        transfer_2d_to_3d(SliceViT(arch=TINY_ARCH), {}, "mean")  # type: ignore[arg-type]
    with pytest.raises(ModelConfigError, match="expected a ViT3dEncoder or a model with an .encoder"):
        transfer_2d_to_3d(torch.nn.Linear(2, 2), {}, "center")
    with pytest.raises(ModelConfigError, match="init 'center' needs a 2D state dict"):
        transfer_2d_to_3d(SliceViT(arch=TINY_ARCH), None, "center")
