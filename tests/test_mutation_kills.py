"""Targeted tests that kill the mutants `tests/mutation.py` found surviving the rest of the suite.

Each test pins a behaviour the broader tests left open: exact messages (users act on them), defaults,
report text, dtype handling, and the normaliser's sampling plan. The mutants they kill are named in the
comments (mutmut's names, `python tests/mutation.py MODULE` lists them); equivalent mutants are documented
in tests/mutation_equivalent.txt instead.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from neurovit.data.normalise import FittedNormaliser, Normaliser, Preprocessing, count_nonfinite
from neurovit.errors import NeurovitError, WeightsError
from neurovit.models import ModelConfigError, collapse_rgb, inflate_patch_kernel, transfer_2d_to_3d
from neurovit.models.transfer import TransferReport, map_2d_to_3d, resample_pos_embed
from neurovit.models.vit3d import ViT3dEncoder

# ============================================================================ neurovit/models/transfer.py
E, P, DEPTH = 16, 8, 3  # a 1-block ViT of width 16 on 32 px images (4×4 tokens): milliseconds to build


def encoder(**kw) -> ViT3dEncoder:
    torch.manual_seed(0)
    return ViT3dEncoder(img_size=32, block_depth=DEPTH, patch_size=P, embed_dim=E, depth=1, num_heads=2, **kw)


def state_dict_2d(img_size: int = 32) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    vit = VisionTransformer(img_size=img_size, patch_size=P, num_classes=0, embed_dim=E, depth=1, num_heads=2)
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return vit.state_dict()


def test_transfer_into_a_bare_encoder_with_the_default_strategy_and_source():
    # x__encoder_of__mutmut_2 (a ViT3dEncoder itself), x_transfer_2d_to_3d__mutmut_1..4 (defaults)
    enc, sd = encoder(), state_dict_2d()
    report = transfer_2d_to_3d(enc, sd)
    assert (report.strategy, report.source) == ("center", "state dict")
    assert torch.equal(enc.pos_embed, sd["pos_embed"]) and torch.equal(enc.blocks[0].mlp.fc1.weight,
                                                                       sd["blocks.0.mlp.fc1.weight"])
    w = enc.patch_embed.proj.weight
    torch.testing.assert_close(w[:, :, DEPTH // 2], sd["patch_embed.proj.weight"].sum(1, keepdim=True))


def test_the_source_is_reported():
    # x_map_2d_to_3d__mutmut_1/2/5/7, x_transfer_2d_to_3d__mutmut_13/15
    enc, sd = encoder(), state_dict_2d()
    assert map_2d_to_3d(enc, sd, "average")[1].source == "state dict"
    report = transfer_2d_to_3d(enc, sd, "average", source="my.pth")
    assert report.source == "my.pth" and report.summary().startswith("init 'average' from my.pth: ")
    assert transfer_2d_to_3d(enc, None, "scratch", source="x.pth").source == "x.pth"


def test_report_summaries_exactly():
    # xǁTransferReportǁsummary__mutmut_4/6/8/11..16
    full = TransferReport("center", "my.pth", copied=["a", "b"],
                          resampled={"pos_embed": "(1, 17, 8) → (1, 5, 8)", "patch_embed.proj.weight": "(16, 16) → (8, 8)"},
                          dropped=["head.weight", "head.bias"])
    assert full.summary() == ("init 'center' from my.pth: 2 tensors copied; resampled pos_embed (1, 17, 8) → "
                              "(1, 5, 8); patch_embed.proj.weight (16, 16) → (8, 8); dropped 2 2D-only keys")
    assert TransferReport("average", copied=["a"]).summary() == "init 'average' from state dict: 1 tensors copied"
    assert str(TransferReport("scratch")) == "init 'scratch': no weights transferred (random init)"


def test_a_low_precision_checkpoint_is_inflated_in_the_model_dtype():
    # x_map_2d_to_3d__mutmut_38 (.to(dtype=None)): bf16 weights are summed and divided in float32, not bf16
    enc = encoder()
    sd = {k: v.to(torch.bfloat16) for k, v in state_dict_2d().items()}
    transfer_2d_to_3d(enc, sd, "average")
    w32 = sd["patch_embed.proj.weight"].float()
    expected = (w32.sum(1, keepdim=True) / 1).unsqueeze(2).repeat(1, 1, DEPTH, 1, 1) / DEPTH
    assert enc.patch_embed.proj.weight.dtype == torch.float32
    torch.testing.assert_close(enc.patch_embed.proj.weight.detach(), expected, rtol=1e-6, atol=1e-7)


def _message(exc_info) -> str:
    return str(exc_info.value)


def test_key_mismatch_messages_exactly():
    # x_map_2d_to_3d__mutmut_25/30/35 and x__listed__mutmut_4..8/11 (the list, its ", " and "… (+N more)")
    enc, sd = encoder(), state_dict_2d()
    keys = sorted(enc.state_dict())
    assert len(keys) == 18
    with pytest.raises(WeightsError) as e:
        transfer_2d_to_3d(enc, {}, "center", source="my.pth")
    assert _message(e) == (f"my.pth does not match the ViT encoder: missing keys (18): {', '.join(keys[:12])} "
                           "… (+6 more)")
    with pytest.raises(WeightsError) as e:  # exactly 12: all listed, no "more"
        transfer_2d_to_3d(enc, {k: sd[k] for k in keys[12:]}, "center", source="my.pth")
    assert _message(e) == f"my.pth does not match the ViT encoder: missing keys (12): {', '.join(keys[:12])}"
    with pytest.raises(WeightsError) as e:
        transfer_2d_to_3d(enc, dict(sd, dist_token=torch.zeros(1, 1, E)), "center", source="my.pth")
    assert _message(e) == "my.pth does not match the ViT encoder: unexpected keys (1): dist_token"
    both = {k: v for k, v in sd.items() if k != "norm.bias"} | {"dist_token": torch.zeros(1, 1, E)}
    with pytest.raises(WeightsError) as e:
        transfer_2d_to_3d(enc, both, "center", source="my.pth")
    assert _message(e) == ("my.pth does not match the ViT encoder: missing keys (1): norm.bias; "
                           "unexpected keys (1): dist_token")


def test_shape_error_messages_exactly():
    # x_map_2d_to_3d__mutmut_44/45 (a 3D kernel), 97/98 (the size hint)
    enc, sd = encoder(), state_dict_2d()
    kernel3d = dict(sd, **{"patch_embed.proj.weight": torch.zeros(E, 3, 1, P, P)})
    with pytest.raises(WeightsError) as e:
        transfer_2d_to_3d(enc, kernel3d, "center", source="my.pth")
    assert _message(e) == ("my.pth: patch_embed.proj.weight has shape (16, 3, 1, 8, 8); "
                           "expected a 2D kernel (E, I, p, p)")
    with pytest.raises(WeightsError) as e:
        transfer_2d_to_3d(enc, dict(sd, **{"norm.weight": torch.ones(E + 1)}), "center")
    assert _message(e) == ("state dict: shape mismatch for norm.weight: checkpoint (17,) vs model (16,) "
                           "(is the checkpoint for a different model size?)")


def test_model_and_strategy_error_messages_exactly():
    # x__encoder_of__mutmut_13..16, x_transfer_2d_to_3d__mutmut_8
    with pytest.raises(ModelConfigError) as e:
        transfer_2d_to_3d(torch.nn.Linear(2, 2), {}, "center")
    assert _message(e) == ("expected a ViT3dEncoder or a model with an .encoder, got Linear: 2D ViT weights "
                           "(init strategy center/average) go into a ViT encoder only; use init strategy 'scratch'")
    with pytest.raises(ModelConfigError) as e:
        transfer_2d_to_3d(encoder(), {}, "mean")  # type: ignore[arg-type]
    assert _message(e) == "unknown init strategy 'mean'; use one of average, center, scratch"


def test_kernel_error_messages_exactly():
    # x_collapse_rgb__mutmut_3/4, x_inflate_patch_kernel__mutmut_7
    with pytest.raises(ModelConfigError) as e:
        collapse_rgb(torch.zeros(8, 4, 4), 1)
    assert _message(e) == "expected a 2D patch kernel (E, I, p, p), got shape (8, 4, 4)"
    with pytest.raises(ModelConfigError) as e:
        inflate_patch_kernel(torch.zeros(8, 1, 4, 4), 0, "center")
    assert _message(e) == "block depth must be >= 1, got 0"


def test_resample_pos_embed_defaults_prefix_tokens_and_errors():
    # x_resample_pos_embed__mutmut_1 (default 1 class token), 18 (prefix count passed on), 9/10 (message)
    torch.manual_seed(2)
    pos = torch.randn(1, 1 + 16, 8)
    torch.testing.assert_close(resample_pos_embed(pos, (2, 3)),
                               resample_abs_pos_embed(pos, [2, 3], [4, 4], num_prefix_tokens=1))
    no_prefix = torch.randn(1, 16, 8)
    out = resample_pos_embed(no_prefix, (2, 3), num_prefix_tokens=0)
    assert out.shape == (1, 6, 8)
    torch.testing.assert_close(out, resample_abs_pos_embed(no_prefix, [2, 3], [4, 4], num_prefix_tokens=0))
    with pytest.raises(WeightsError) as e:
        resample_pos_embed(torch.zeros(1, 11, 8), (2, 2))
    assert _message(e) == "position embedding of shape (1, 11, 8) is not a square token grid"


# ============================================================================ neurovit/data/normalise.py
def test_count_nonfinite_counts_every_slab():
    # x_count_nonfinite__mutmut_2..22
    vol = np.zeros((40, 3, 5), np.float32)
    vol[0, 0, 0], vol[17, 2, 4], vol[39, 1, 1] = np.nan, np.inf, -np.inf
    assert count_nonfinite(vol) == 3 and count_nonfinite(vol, slab=7) == 3
    assert count_nonfinite(vol.astype(np.complex64)) == 3
    assert count_nonfinite(np.zeros((40, 3, 5), np.uint16)) == 0
    assert count_nonfinite(np.zeros((4, 3), np.float64)) == 0


def test_count_nonfinite_reads_nothing_of_an_integer_stack():
    # x_count_nonfinite__mutmut_2 (np.dtype(None) is float64): "0 at once for integer types", no whole-brain read
    class IntegerStack:
        shape, dtype, ndim = (4096, 4096, 4096), np.uint16, 3

        def __getitem__(self, key):
            raise AssertionError(f"read {key!r}")

    assert count_nonfinite(IntegerStack()) == 0


def test_nonfinite_voxels_are_left_out_of_the_percentiles_and_map_to_zero():
    # x__sample__mutmut_6/8, xǁFittedNormaliserǁ__call____mutmut_13/14
    vol = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    vol[1, 1, 1], vol[2, 2, 2] = np.nan, np.inf
    lo, scale = Normaliser((0.0, 100.0)).range(vol)
    assert (lo, scale) == (0.0, 59.0)
    out = Normaliser((0.0, 100.0))(vol)
    assert out[1, 1, 1] == 0.0 and out[2, 2, 2] == 0.0 and np.isfinite(out).all()


def test_a_stack_without_finite_voxels_is_refused_and_one_finite_voxel_is_enough():
    # x__sample__mutmut_12..16
    with pytest.raises(NeurovitError) as e:
        Normaliser().range(np.full((2, 3, 3), np.nan, np.float32))
    assert str(e.value) == "the stack has no finite voxels (all NaN or infinite): nothing to normalise"
    one = np.full((2, 3, 3), np.nan, np.float32)
    one[1, 2, 2] = 5.0
    assert Normaliser().range(one) == (5.0, 1e-6)


def test_normalised_output_is_float32_for_any_input_dtype():
    # xǁFittedNormaliserǁ__call____mutmut_5/7
    f = FittedNormaliser(1.0, 2.0)
    for raw in (np.arange(6, dtype=np.float64), np.arange(6, dtype=np.int64), [0, 1, 2]):
        out = f(raw)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, (np.arange(len(out), dtype=np.float32) - 1) / 2)


def test_the_scale_floor_is_tiny():
    # xǁNormaliserǁrange__mutmut_17: a narrow intensity range keeps its own scale
    vol = np.linspace(0.0, 0.01, 1000, dtype=np.float64).reshape(10, 10, 10)
    lo, scale = Normaliser((0.0, 100.0)).range(vol)
    assert lo == 0.0 and scale == pytest.approx(0.01)
    assert Normaliser().range(np.full((3, 3, 3), 7.0)) == (7.0, 1e-6)


def test_percentiles_must_be_strictly_increasing_and_are_stored_as_float_tuples():
    # xǁNormaliserǁ__post_init____mutmut_6/17/18/26/27
    with pytest.raises(NeurovitError, match="percentiles"):
        Normaliser((50.0, 50.0))
    n = Normaliser([5, 95], clip=[0, 1])  # type: ignore[arg-type]
    assert n.percentiles == (5.0, 95.0) and type(n.percentiles) is tuple
    assert n.clip == (0.0, 1.0) and type(n.clip) is tuple
    assert n == Normaliser((5.0, 95.0), clip=(0.0, 1.0))


def test_normaliser_and_preprocessing_dicts_exactly():
    # xǁNormaliserǁto_dict__mutmut_4/5/8/9, from_dict__mutmut_10/13/15/18/19/25/26/28..31,
    # xǁPreprocessingǁto_dict__mutmut_3, from_dict__mutmut_9
    n = Normaliser((2.0, 98.0), clip=(-1.0, 2.0), sample_voxels=12_345)
    assert n.to_dict() == {"percentiles": [2.0, 98.0], "clip": [-1.0, 2.0], "sample_voxels": 12_345}
    assert Normaliser().to_dict() == {"percentiles": [1.0, 99.8], "clip": None, "sample_voxels": 2_000_000}
    assert Normaliser.from_dict(n.to_dict()) == n
    assert Normaliser.from_dict({}) == Normaliser()
    assert Preprocessing().to_dict() == {"voxel_size_zyx_um": None, "normalisation": Normaliser().to_dict()}
    assert Preprocessing.from_dict(Preprocessing().to_dict()) == Preprocessing()
    assert Preprocessing.from_dict({}) == Preprocessing()


def test_a_stack_of_exactly_sample_voxels_voxels_gets_exact_percentiles():
    # x__raw_sample__mutmut_6 (n < sample_voxels): with more than 64 planes, sampling would skip some
    vol = np.zeros((100, 2, 5), np.float32)
    vol[1] = 1.0  # plane 1 is not among 64 evenly spaced planes of 100
    assert Normaliser((0.0, 100.0), sample_voxels=1000).range(vol) == (0.0, 1.0)


def test_large_non_3d_arrays_are_sampled_every_kth_voxel():
    # x__raw_sample__mutmut_13..23: n > sample_voxels, not 3D: every (n // sample_voxels)-th voxel, in order
    img = np.arange(10_000, dtype=np.float64).reshape(100, 100)
    assert Normaliser((0.0, 100.0), sample_voxels=1000).range(img) == (0.0, 9990.0)  # stride 10
    small = np.arange(1500, dtype=np.float64).reshape(30, 50)
    assert Normaliser((0.0, 100.0), sample_voxels=1000).range(small) == (0.0, 1499.0)  # stride 1


class RecordingStack:
    """A lazy 3D stack that records which planes and in-plane strides are read; whole reads are refused."""

    dtype, ndim = np.float32, 3

    def __init__(self, shape):
        self.shape = shape
        self.reads: list[tuple[int, int | None, int | None]] = []

    def __getitem__(self, key):
        z, ys, xs = key
        assert isinstance(z, int), f"whole-volume read {key!r}"
        self.reads.append((z, ys.step, xs.step))
        return np.full(self.shape[1:], z, dtype=np.float32)[ys, xs]


@pytest.mark.parametrize(
    ("shape", "sample_voxels", "planes", "stride"),
    [
        ((200, 64, 64), 10_000, 64, 6),  # 64 planes (not 50), stride ceil(sqrt(64·64 / 156))
        ((200, 20, 20), 10_000, 64, 2),  # the plane count follows the depth, not the height
        ((64, 19, 20), 1000, 64, 6),  # 1000 // 64 = 15 voxels a plane (integer division)
        ((64, 10, 40), 1000, 64, 6),  # H·W, not W·W
        ((200, 4, 4), 3000, 64, 1),  # a stride of 1 when the planes are small
        ((100, 10, 10), 50, 64, 10),  # fewer voxels than planes: one voxel a plane
    ],
)
def test_large_stacks_are_sampled_on_evenly_spaced_planes_with_an_in_plane_stride(shape, sample_voxels, planes,
                                                                                 stride):
    # x__raw_sample__mutmut_32/41/47/48/49/54/57/58/59
    stack = RecordingStack(shape)
    lo, scale = Normaliser((0.0, 100.0), sample_voxels=sample_voxels).range(stack)
    zs = [z for z, _, _ in stack.reads]
    assert len(zs) == len(set(zs)) == planes and zs[0] == 0 and zs[-1] == shape[0] - 1
    assert {(ys, xs) for _, ys, xs in stack.reads} == {(stride, stride)}
    assert (lo, scale) == (0.0, float(shape[0] - 1))
    assert math.isclose(stride, max(1, math.ceil(math.sqrt(shape[1] * shape[2] / max(1, sample_voxels // planes)))))
