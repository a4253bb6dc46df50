"""Targeted tests that kill the mutants `tests/mutation.py` found surviving the rest of the suite.

Each test pins a behaviour the broader tests left open: exact messages (users act on them), defaults,
report text, dtype handling, the normaliser's sampling plan, and the volume layer's formats, voxel sizes
and atomic outputs. The mutants they kill are named in the
comments (mutmut's names, `python tests/mutation.py MODULE` lists them); equivalent mutants are documented
in tests/mutation_equivalent.txt instead.
"""

from __future__ import annotations

import json
import math
import os
import sys
import types

import numpy as np
import pytest
import tifffile
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from neurovit.data.normalise import FittedNormaliser, Normaliser, Preprocessing, count_nonfinite
from neurovit.data.tiff import TiffNotFoundError, read_stack
from neurovit.data.volumes import (
    FORMATS,
    VolumeFormat,
    check_voxel_size,
    create_output,
    existing_file,
    find_format,
    list_volumes,
    open_volume,
    reserve_file,
    spacing_differs,
    volume_stem,
    write_volume,
)
from neurovit.errors import NeurovitError, TiffError, VolumeError, WeightsError
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


# ============================================================================ neurovit/data/volumes.py
FAKE_READER = "neurovit_test_fake_reader"  # a throw-away module holding a registered format's reader


def register_fake_format(monkeypatch, suffix: str, array) -> None:
    """Register format "fake" (suffix `suffix`) whose reader returns `array`, through the FORMATS registry
    (the documented way to add a format); monkeypatch removes it again after the test."""
    reader = types.ModuleType(FAKE_READER)
    reader.read = lambda path, level: (array, None, {"format": "fake"})
    monkeypatch.setitem(sys.modules, FAKE_READER, reader)
    monkeypatch.setitem(FORMATS, "fake", VolumeFormat("fake", (suffix,), f"{FAKE_READER}:read"))


def zyx_ramp(shape=(4, 6, 8), dtype=np.uint16) -> np.ndarray:
    z, y, x = np.indices(shape)
    return (100 * z + 10 * y + x).astype(dtype)


def hidden_tmp_files(folder, name: str) -> list:
    return [p for p in folder.iterdir() if p.name.startswith(f".{name}.") and p.name.endswith(".tmp")]


def test_volumes_the_longest_matching_suffix_wins_for_a_registered_format(tmp_path, monkeypatch):
    """A registered ".zyx.tif" beats ".tif" although it sorts after it."""
    # x__all_suffixes__mutmut_3/5 (suffixes tried in alphabetical order)
    register_fake_format(monkeypatch, ".zyx.tif", np.zeros((2, 3, 4), np.uint8))
    assert find_format("cell.zyx.tif").name == "fake" and volume_stem("cell.zyx.tif") == "cell"
    assert find_format("cell.ome.tif").name == "tiff" and volume_stem("cell.ome.tif") == "cell"
    (tmp_path / "cell.zyx.tif").write_bytes(b"")
    assert open_volume(tmp_path / "cell.zyx.tif").format == "fake"


def test_volumes_a_bare_suffix_is_no_volume_name_and_other_names_lose_their_last_suffix():
    """".tif" alone is not a TIFF name; names of no known format keep their full stem minus one suffix."""
    # x__match__mutmut_5 (len(name) >= len(suffix)), x_volume_stem__mutmut_6 (unmatched names)
    with pytest.raises(VolumeError, match="unknown image format"):
        find_format(".tif")
    assert volume_stem(".tif") == ".tif" and volume_stem(".ome.zarr") == ".ome"
    assert volume_stem("notes.txt") == "notes" and volume_stem("run/archive.tar.gz") == "archive.tar"


def test_volumes_unknown_format_message_exactly():
    """The message lists every supported suffix, comma separated, and how to convert."""
    # x_find_format__mutmut_6/7/8, x_supported_suffixes__mutmut_2
    with pytest.raises(VolumeError) as e:
        find_format("stack.nrrd")
    assert str(e.value) == ("stack.nrrd: unknown image format; supported: .ome.tif, .ome.tiff, .ome.zarr, .tif, "
                            ".tiff, .v3dpbd, .v3draw, .zarr (convert other formats to OME-TIFF, e.g. with Fiji or "
                            "bioformats2raw)")


def test_volumes_formats_that_cannot_write_or_create_say_so_exactly(tmp_path):
    """Writing .v3dpbd or creating a chunked .v3draw output is refused with the format's note, writing nothing."""
    # xǁVolumeFormatǁfunction__mutmut_7
    with pytest.raises(VolumeError) as e:
        write_volume(tmp_path / "a.v3dpbd", zyx_ramp())
    assert str(e.value) == ("v3dpbd: cannot write this format. Convert it with Vaa3D (File > Save as .v3draw) "
                            "or Fiji first.")
    with pytest.raises(VolumeError) as e:
        create_output(tmp_path / "a.v3draw", (2, 3, 4), np.uint8)
    assert str(e.value) == "v3draw: cannot create this format."
    assert list(tmp_path.iterdir()) == []


def test_volumes_voxel_size_errors_name_the_file_exactly(tmp_path):
    """check_voxel_size names `what` ("voxel_size" by default); write, create and open name the file."""
    # x_check_voxel_size__mutmut_1/2, x_write_volume__mutmut_7/9, x_create_output__mutmut_7/9,
    # x_open_volume__mutmut_41/43
    rule = "must be three positive numbers (z, y, x) in µm, got"
    with pytest.raises(VolumeError) as e:
        check_voxel_size((1, 2))
    assert str(e.value) == f"voxel_size {rule} (1, 2)"
    path = tmp_path / "s.tif"
    with pytest.raises(VolumeError) as e:
        write_volume(path, zyx_ramp(), voxel_size=(1, 0, 1))
    assert str(e.value) == f"{path}: voxel size {rule} (1, 0, 1)"
    with pytest.raises(VolumeError) as e:
        create_output(path, (2, 3, 4), np.uint8, voxel_size=(1.0, -1.0))
    assert str(e.value) == f"{path}: voxel size {rule} (1.0, -1.0)"
    assert list(tmp_path.iterdir()) == []
    write_volume(path, zyx_ramp())
    with pytest.raises(VolumeError) as e:
        open_volume(path, voxel_size=(0, 1, 1))
    assert str(e.value) == f"{path}: voxel size {rule} (0, 1, 1)"


def test_volumes_writing_without_a_voxel_size_records_one_micrometre(tmp_path):
    """voxel_size=None writes 1 µm on every axis (the default), and it reads back as from the file."""
    # x_write_volume__mutmut_11/13/14/15, x_open_volume__mutmut_52/54/55
    v = open_volume(write_volume(tmp_path / "s.tif", zyx_ramp(), voxel_size=None))
    assert v.voxel_size == pytest.approx((1.0, 1.0, 1.0)) and v.metadata["voxel_size_from"] == "file"


@pytest.mark.parametrize("name", ["s.ome.tif", "s.ome.tiff", "S.OME.TIFF"])
def test_volumes_an_ome_tiff_reads_as_ome_tiff_with_its_voxel_size(tmp_path, name):
    """Any-case .ome.tif / .ome.tiff names read with format "ome-tiff" and the OME-XML physical sizes."""
    # x__read_tiff__mutmut_6/7, x_open_volume__mutmut_52/54/55
    tifffile.imwrite(tmp_path / name, zyx_ramp(), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0})
    v = open_volume(tmp_path / name)
    assert v.format == "tiff" and v.metadata == {"format": "ome-tiff", "voxel_size_from": "file"}
    assert v.voxel_size == pytest.approx((2.0, 0.5, 0.5))


@pytest.mark.parametrize("name", ["s.tif", "s.tiff", "S.TIF"])
def test_volumes_a_plain_tiff_reads_as_tiff(tmp_path, name):
    """.tif / .tiff names read with format "tiff" (not "ome-tiff")."""
    # x__read_tiff__mutmut_13/16/17
    v = open_volume(write_volume(tmp_path / name, zyx_ramp(), voxel_size=(3.0, 0.5, 0.5)))
    assert v.metadata == {"format": "tiff", "voxel_size_from": "file"}
    assert v.voxel_size == pytest.approx((3.0, 0.5, 0.5)) and v.name == name[0]


def test_volumes_tiff_writer_options_reach_the_writer(tmp_path):
    """write_volume(..., compression="zlib") writes a deflate-compressed TIFF that reads back the same."""
    # x_write_volume__mutmut_22, x__write_tiff__mutmut_7
    path = write_volume(tmp_path / "z.tif", zyx_ramp(), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    np.testing.assert_array_equal(open_volume(path).read(), zyx_ramp())


def test_volumes_ome_zarr_writer_options_and_pyramid_levels_pass_through(tmp_path):
    """n_levels and chunks reach the OME-Zarr writer; open_volume(level=1) reads the half-size level."""
    # x_write_volume__mutmut_22, x__write_omezarr__mutmut_7, x__read_omezarr__mutmut_4,
    # x_open_volume__mutmut_18/19
    data = zyx_ramp((4, 6, 8))
    path = write_volume(tmp_path / "b.ome.zarr", data, voxel_size=(2.0, 0.5, 0.5), n_levels=2, chunks=(2, 4, 4))
    full = open_volume(path)
    assert full.metadata["levels"] == 2 and full.metadata["chunks"] == (2, 4, 4)
    np.testing.assert_array_equal(full.read(), data)
    half = open_volume(path, level=1)
    assert half.shape == (4, 3, 4) and half.metadata["level"] == 1
    assert half.voxel_size == pytest.approx((2.0, 1.0, 1.0))


def test_volumes_a_nested_list_is_written_as_an_array(tmp_path):
    """Anything without .shape (a nested list) is converted with np.asarray before it is written."""
    # x_write_volume__mutmut_26/28/29
    data = zyx_ramp((2, 3, 4))
    v = open_volume(write_volume(tmp_path / "l.ome.zarr", data.tolist()))
    np.testing.assert_array_equal(v.read(), data)


class SlabOnlyStack:
    """A lazy (Z, Y, X) source (like a whole-brain stack) that serves slabs but refuses to be read whole."""

    dtype, ndim = np.dtype(np.uint16), 3

    def __init__(self, data: np.ndarray):
        self.data, self.shape = data, data.shape

    def __getitem__(self, key):
        return self.data[key]

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("the whole stack was read into memory")


def test_volumes_a_lazy_source_is_written_to_ome_zarr_slab_by_slab(tmp_path):
    """An array with .shape goes to the writer as it is, so OME-Zarr copies it slab by slab."""
    # x_write_volume__mutmut_27/30/34/35
    data = zyx_ramp((6, 4, 5))
    path = write_volume(tmp_path / "lazy.ome.zarr", SlabOnlyStack(data), chunks=(2, 4, 5))
    np.testing.assert_array_equal(open_volume(path).read(), data)


def test_volumes_ome_zarr_folders_are_volumes_and_zarr_files_are_not(tmp_path):
    """list_volumes takes an OME-Zarr folder and skips a plain file named *.zarr."""
    # x_is_volume_path__mutmut_10
    write_volume(tmp_path / "b.ome.zarr", zyx_ramp())
    (tmp_path / "c.zarr").write_bytes(b"x")
    (tmp_path / "a.tif").write_bytes(b"x")
    assert [p.name for p in list_volumes(tmp_path)] == ["a.tif", "b.ome.zarr"]


def test_volumes_missing_volume_messages_exactly(tmp_path):
    """A missing OME-Zarr is "no such folder", a missing TIFF "no such file"."""
    # x_open_volume__mutmut_8/10/11
    for name, what in (("b.ome.zarr", "folder"), ("b.zarr", "folder"), ("b.tif", "file")):
        with pytest.raises(VolumeError) as e:
            open_volume(tmp_path / name)
        assert str(e.value) == f"{tmp_path / name}: no such {what}"


@pytest.mark.parametrize(("shape", "why"), [
    ((4, 5), "expected a 3D (Z, Y, X) grey-scale stack, got shape (4, 5)"),
    ((0, 4, 5), "empty stack (shape (0, 4, 5))"),
])
def test_volumes_a_reader_giving_no_3d_stack_is_refused_by_name(tmp_path, monkeypatch, shape, why):
    """open_volume checks every format's array: 3D and non-empty, else a one-line error naming the file."""
    # x_open_volume__mutmut_31/32/36/37
    register_fake_format(monkeypatch, ".fake", np.zeros(shape, np.uint8))
    path = tmp_path / "s.fake"
    path.write_bytes(b"")
    with pytest.raises(VolumeError) as e:
        open_volume(path)
    assert str(e.value) == f"{path}: {why}"


def test_volumes_existing_file_messages_and_error_types(tmp_path):
    """A missing path raises `missing` (else `error`), a folder `error`; both name the path and expectation."""
    # x_existing_file__mutmut_4/5/6
    missing, folder, present = tmp_path / "m.tif", tmp_path / "d.tif", tmp_path / "p.tif"
    folder.mkdir()
    present.write_bytes(b"x")
    assert existing_file(present, "a stack") == present
    with pytest.raises(VolumeError) as e:
        existing_file(str(missing), "expected a stack")
    assert type(e.value) is VolumeError and str(e.value) == f"{missing}: no such file; expected a stack"
    with pytest.raises(TiffNotFoundError) as e:
        existing_file(missing, "expected a stack", TiffError, TiffNotFoundError)
    assert str(e.value) == f"{missing}: no such file; expected a stack"
    with pytest.raises(TiffError) as e:
        existing_file(folder, "expected a stack", TiffError, TiffNotFoundError)
    assert type(e.value) is TiffError and str(e.value) == f"{folder}: is a folder, not a file; expected a stack"
    with pytest.raises(FileNotFoundError):  # what the TIFF reader's users catch
        read_stack(missing)


def test_volumes_a_tiff_output_goes_into_new_nested_folders_with_imagej_calibration(tmp_path):
    """create_output makes missing parent folders and writes spacing, unit "um" and axes ZYX for Fiji."""
    # x__create_tiff__mutmut_1/3/5 (mkdir parents), 39 (unit "UM"), 49 (the output's path)
    path = tmp_path / "a" / "b" / "p.tif"
    out = create_output(path, (3, 4, 5), np.uint16, voxel_size=(2.0, 0.25, 0.5))
    assert out.path == path
    out.array[:] = zyx_ramp((3, 4, 5))
    assert out.commit() == path
    with tifffile.TiffFile(path) as tif:
        meta = tif.imagej_metadata
        assert (meta["spacing"], meta["unit"], tif.series[0].axes) == (2.0, "um", "ZYX")
    v = open_volume(path)
    assert v.voxel_size == pytest.approx((2.0, 0.25, 0.5))
    np.testing.assert_array_equal(v.read(), zyx_ramp((3, 4, 5)))
    assert [p.name for p in path.parent.iterdir()] == ["p.tif"]


def test_volumes_a_tiff_output_may_have_a_long_name(tmp_path):
    """A 200-character output name works (its temporary name must stay within the 255-byte name limit)."""
    # x__create_tiff__mutmut_9 (token_hex(None): a 64-digit random part makes the temporary name too long)
    path = tmp_path / ("n" * 196 + ".tif")
    with create_output(path, (2, 3, 4), np.uint8) as out:
        out.array[:] = 7
        out.commit()
    assert open_volume(path).read().min() == 7 and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_volumes_a_tiff_output_is_allocated_up_front_under_a_hidden_temporary_name(tmp_path):
    """Until commit the output is `.NAME.<random>.tmp` with all its blocks allocated (no SIGBUS on a full disk)."""
    # x_reserve_file__mutmut_1/2/6/7/14 (through create_output), x__create_tiff__mutmut_49
    path = tmp_path / "p.tif"
    out = create_output(path, (2, 64, 64), np.uint8)
    [tmp] = hidden_tmp_files(tmp_path, "p.tif")
    st = os.stat(tmp)
    assert st.st_blocks * 512 >= st.st_size > 2 * 64 * 64 and not path.exists()
    out.array[:] = 1
    assert out.commit() == path and not tmp.exists() and open_volume(path).read().sum() == 2 * 64 * 64


def test_volumes_reserve_file_allocates_every_block_without_growing_the_file(tmp_path):
    """reserve_file turns a sparse file into an allocated one of the same size."""
    # x_reserve_file__mutmut_1/2/6/7 (skipped on Linux), 14 (size None), 22 (offset 1 grows the file)
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as fh:
        fh.truncate(1 << 20)
    if os.stat(path).st_blocks:
        pytest.skip("this filesystem does not make sparse files")
    reserve_file(path)
    st = os.stat(path)
    assert st.st_size == 1 << 20 and st.st_blocks * 512 >= 1 << 20


def test_volumes_a_tiff_output_that_cannot_be_created_raises_the_real_error(tmp_path, monkeypatch):
    """When the temporary file cannot even be created, that error (here PermissionError) reaches the caller."""
    # x__create_tiff__mutmut_41/42 (the clean-up of a file never created raised FileNotFoundError instead)
    def refuse(path, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(tifffile, "memmap", refuse)
    with pytest.raises(PermissionError):
        create_output(tmp_path / "p.tif", (2, 3, 4), np.uint8)
    assert list(tmp_path.iterdir()) == []


def test_volumes_commit_and_abort_happen_once(tmp_path):
    """A second commit returns the path again without error; abort after commit keeps the output."""
    # xǁVolumeOutputǁcommit__mutmut_2/3, xǁVolumeOutputǁabort__mutmut_2/3
    path = tmp_path / "p.tif"
    out = create_output(path, (2, 3, 4), np.uint8)
    out.array[:] = 3
    assert out.commit() == path and out.done is True
    assert out.commit() == path
    out.abort()
    assert open_volume(path).read().min() == 3
    aborted = create_output(tmp_path / "q.tif", (2, 3, 4), np.uint8)
    aborted.abort()
    assert aborted.done is True and hidden_tmp_files(tmp_path, "q.tif") == []
    aborted.abort()
    assert [p.name for p in tmp_path.iterdir()] == ["p.tif"]
    assert out.state == "committed"
    with pytest.raises(VolumeError) as info:
        aborted.commit()  # never a path to a file that is not there
    assert str(info.value) == (f"{tmp_path / 'q.tif'}: this output was aborted and its partial data removed; "
                               "nothing to commit")
    assert aborted.state == "aborted" and [p.name for p in tmp_path.iterdir()] == ["p.tif"]


def test_volumes_abort_is_harmless_when_the_temporary_file_is_already_gone(tmp_path):
    """Aborting after someone removed the temporary file (e.g. a clean-up of stale files) is not an error."""
    # x__create_tiff__mutmut_47/48
    out = create_output(tmp_path / "q.tif", (2, 3, 4), np.uint8)
    [tmp] = hidden_tmp_files(tmp_path, "q.tif")
    tmp.unlink()
    out.abort()
    assert out.done is True and list(tmp_path.iterdir()) == []


def test_volumes_an_ome_zarr_output_is_filled_then_committed(tmp_path):
    """create_output(.ome.zarr) fills a hidden chunked store (shape, dtype, chunks, voxel size as asked)
    that appears under the path only at commit."""
    # x__create_omezarr__mutmut_2..14, 16..20, x_create_output__mutmut_18 (chunks reach the writer)
    path = tmp_path / "p.ome.zarr"
    out = create_output(path, (4, 6, 8), np.uint16, voxel_size=(2.0, 0.5, 0.25), chunks=(2, 3, 4))
    assert out.path == path
    out.array[:] = zyx_ramp((4, 6, 8))
    assert not path.exists() and len(hidden_tmp_files(tmp_path, "p.ome.zarr")) == 1
    assert out.commit() == path
    v = open_volume(path)
    assert v.dtype == np.uint16 and v.metadata["chunks"] == (2, 3, 4)
    assert v.voxel_size == pytest.approx((2.0, 0.5, 0.25))
    np.testing.assert_array_equal(v.read(), zyx_ramp((4, 6, 8)))
    assert [p.name for p in tmp_path.iterdir()] == ["p.ome.zarr"]


def test_volumes_an_ome_zarr_label_output_keeps_thin_structures_in_its_pyramid(tmp_path):
    """labels=True builds the pyramid with 2x2 maxima (a one-voxel neurite survives), the default with means."""
    # x__create_omezarr__mutmut_1 (labels defaults to True), 21 (labels=None), x_create_output__mutmut_18
    for labels in (False, True):
        path = tmp_path / f"{labels}.ome.zarr"
        out = create_output(path, (1, 2, 514), np.uint8, **({"labels": True} if labels else {}))
        out.array[0, 0, 0] = 1
        out.commit()
        assert open_volume(path, level=1).read()[0, 0, 0] == int(labels)
        meta = json.loads((path / ".zattrs").read_text())["multiscales"][0]["metadata"]
        assert meta["labels"] is labels


def test_volumes_an_aborted_ome_zarr_output_leaves_nothing(tmp_path):
    """An exception inside `with create_output(...)` removes the temporary OME-Zarr folder."""
    # x__create_omezarr__mutmut_15
    with pytest.raises(RuntimeError), create_output(tmp_path / "p.ome.zarr", (2, 3, 4), np.uint8) as out:
        out.array[:] = 1
        raise RuntimeError("boom")
    assert out.done is True and list(tmp_path.iterdir()) == []


def test_volumes_spacing_differs_only_beyond_the_tolerance_and_needs_matching_axes():
    """Exactly the tolerance is not a difference; voxel sizes of different lengths are an error."""
    # x_spacing_differs__mutmut_6 (>=), 9/12/13 (zip not strict)
    assert not spacing_differs((1.25, 1.0, 0.75), (1.0, 1.0, 1.0), tolerance=0.25)
    assert spacing_differs((1.25, 1.0, 0.75), (1.0, 1.0, 1.0), tolerance=0.2)
    with pytest.raises(ValueError):
        spacing_differs((1.0, 1.0), (1.0, 1.0, 1.0))


# ============================================================================ neurovit/trace.py
import time  # noqa: E402

from neurovit.data.swc import BASAL, SOMA, Morphology, read_swc  # noqa: E402
from neurovit.trace import TeasarParams, TraceError, binarize, skeleton_to_morphology, trace, trace_to_swc  # noqa: E402

NO_EDGES = np.empty((0, 2), np.int64)


def trace_bar(shape=(4, 8, 24), z=(1, 3), y=(2, 4), x=(3, 15)) -> np.ndarray:
    """A boolean volume holding one straight bar along x (a few voxels thick)."""
    vol = np.zeros(shape, bool)
    vol[z[0]:z[1], y[0]:y[1], x[0]:x[1]] = True
    return vol


def test_trace_to_swc_in_um_scales_x_y_z_and_radius_and_says_so(tmp_path):
    """units="um": x, y, z are multiplied by vx, vy, vz (of the given voxel_size) and radii by vx; the header says µm."""
    # x_trace_to_swc__mutmut_9..19 (units/um branch, voxel_size lookup), 23..32 (the µm coordinates line)
    vol, vs = trace_bar(), (2.0, 0.5, 0.25)
    vox = trace(vol, voxel_size=vs)
    m = trace_to_swc(vol, tmp_path / "um.swc", units="um", voxel_size=vs)
    assert m.units == "um"
    np.testing.assert_allclose(m.xyz, vox.xyz * [0.25, 0.5, 2.0])
    np.testing.assert_allclose(m.radius, vox.radius * 0.25)
    text = (tmp_path / "um.swc").read_text()
    assert ("# coordinates: µm of the image (x = column, y = row, z = slice times the voxel size); "
            "radius: µm (x-voxels times vx)") in text.splitlines()
    assert "voxel indices" not in text and "# traced by neurovit.trace: kimimaro TEASAR" in text
    back = read_swc(tmp_path / "um.swc")
    assert back.units == "um"
    np.testing.assert_allclose(back.xyz, m.xyz, atol=1e-3)


def test_trace_to_swc_in_um_defaults_to_one_micron_voxels(tmp_path):
    """Without voxel_size, units="um" uses (1, 1, 1): the µm coordinates equal the voxel indices."""
    # x_trace_to_swc__mutmut_20/21/22 (default voxel size changed)
    vol = trace_bar()
    m = trace_to_swc(vol, tmp_path / "d.swc", units="um")
    np.testing.assert_allclose(m.xyz, trace(vol).xyz)
    np.testing.assert_allclose(m.radius, trace(vol).radius)


def test_trace_to_swc_rejects_unknown_units_naming_them(tmp_path):
    """A units value other than "voxel"/"um" is a TraceError quoting it."""
    # x_trace_to_swc__mutmut_36
    with pytest.raises(TraceError, match=r"^units must be 'voxel' or 'um', got 'mm'$"):
        trace_to_swc(trace_bar(), tmp_path / "x.swc", units="mm")


def test_trace_to_swc_source_comes_from_the_tracer_the_keyword_or_the_file_name(tmp_path):
    """The SWC's source line: the traced source, else the `source` keyword, else the output file's stem."""
    # x_trace__mutmut_80, x_trace_to_swc__mutmut_37..43
    def bare(volume, **kw):  # a tracer that does not record its source
        return Morphology(np.zeros((1, 3)), [1.0], [BASAL], [-1], units="voxel")

    assert trace(trace_bar(), source="in.tif").source == "in.tif"
    trace_to_swc(trace_bar(), tmp_path / "a.swc", source="in.tif")
    assert "# source: in.tif" in (tmp_path / "a.swc").read_text().splitlines()
    trace_to_swc(trace_bar(), tmp_path / "stem.swc")
    assert "# source: stem" in (tmp_path / "stem.swc").read_text().splitlines()
    m = trace_to_swc(trace_bar(), tmp_path / "b.swc", tracer=bare, source="given.tif")
    assert m.source == "given.tif" and "# source: given.tif" in (tmp_path / "b.swc").read_text().splitlines()
    assert trace_to_swc(trace_bar(), tmp_path / "c.swc", tracer=bare).source == "c"


def test_trace_header_records_defaults_shape_and_timing():
    """The header lines name the volume shape, the default min_size/join_distance/soma_radius, every TEASAR
    parameter (booleans as words) and the real elapsed time."""
    # x__header__mutmut_3/4/5/10, x_trace__mutmut_2/3/4 (defaults), 85 (min_size), 102 (shape), 103 (time)
    t0 = time.perf_counter()
    m = trace(trace_bar())
    elapsed = time.perf_counter() - t0
    h = m.header
    assert h[1] == "volume shape (z, y, x): [4, 8, 24]; voxel_size_zyx: [1.0, 1.0, 1.0]"
    assert h[2] == "coordinates: voxel indices (x = column, y = row, z = slice); radius: in x-voxels"
    assert h[3] == "min_size: 8 voxels; join_distance: 6 x-voxels; soma_radius: 3 x-voxels"
    assert h[4] == ("teasar (x-voxels): scale=1.5, const=4, pdrf_scale=100000, pdrf_exponent=4, "
                    "soma_detection_threshold=1e+09, soma_acceptance_threshold=1e+09, soma_invalidation_scale=2, "
                    "soma_invalidation_const=1, fix_branching=False")
    seconds = float(h[5].rsplit("(", 1)[1].split()[0])
    assert h[5].startswith(f"result: {len(m)} nodes, 1 trees (") and 0 <= seconds <= elapsed + 0.01


def test_trace_of_only_dust_is_empty_and_says_so():
    """Foreground that is all below min_size gives an empty Morphology whose header says why."""
    # x__skeletonize__mutmut_67/68 (the no-skeleton return), x__header__mutmut_15
    vol = np.zeros((4, 6, 10), np.float32)
    vol[2, 2, 2:5] = 1.0  # 3 voxels < min_size 8
    m = trace(vol)
    assert len(m) == 0 and m.xyz.shape == (0, 3)
    assert m.header[-1] == "empty: no foreground above threshold (after removing small components)"


def test_trace_min_size_keeps_components_of_exactly_min_size_voxels():
    """min_size drops components with fewer voxels: an 8-voxel line survives the default 8, a 7-voxel one not."""
    # x__skeletonize__mutmut_31 (dust min_size+1), 33 (min_size-2), x_trace__mutmut_2 (default 9)
    for n, kept in ((8, True), (7, False)):
        vol = np.zeros((3, 3, 12), bool)
        vol[1, 1, 2:2 + n] = True
        assert (len(trace(vol)) > 0) is kept
        assert len(trace(vol, min_size=n + 1)) == 0


def test_trace_rejects_each_negative_size_on_its_own():
    """A negative min_size or join_distance alone is a TraceError showing both values."""
    # x_trace__mutmut_10 (or → and), 15 (message)
    with pytest.raises(TraceError, match=r"^min_size and join_distance must be >= 0, got -1 and 6.0$"):
        trace(trace_bar(), min_size=-1)
    with pytest.raises(TraceError, match=r"got 8 and -1.0$"):
        trace(trace_bar(), join_distance=-1.0)


def test_binarize_threshold_is_inclusive_with_default_one_half_and_rejects_text():
    """binarize: ``>=`` the threshold (0.5 by default) is foreground; a non-numeric volume is a TraceError."""
    # x_binarize__mutmut_1 (default 1.5), 14 (>), 9/13 (dtype check and message)
    vol = np.array([0.49, 0.5, 1.0, 1.6]).reshape(1, 1, 4)
    assert binarize(vol).ravel().tolist() == [False, True, True, True]
    assert binarize(vol, 1.0).ravel().tolist() == [False, False, True, True]
    with pytest.raises(TraceError, match=r"^expected a numeric or boolean volume, got dtype <U1$"):
        binarize(np.full((1, 1, 2), "a"))


def test_trace_anisotropy_scales_z_and_y_gaps_into_x_voxels():
    """join_distance is in x-voxels: a 5-row gap with vy/vx = 2 is 10 x-voxels (not joined at 6), and a
    z gap of 2 slices with vz/vx = 4 is 8 x-voxels (not joined); with isotropic voxels both are joined."""
    # x_trace__mutmut_22/23 (z anisotropy), 25/26 (y anisotropy)
    vs = (2.0, 1.0, 0.5)
    ygap = np.zeros((4, 16, 30), bool)
    ygap[1:3, 3:5, 3:25] = True
    ygap[1:3, 8:10, 3:25] = True
    assert len(trace(ygap, voxel_size=vs).roots) == 2
    assert len(trace(ygap).roots) == 1
    zgap = np.zeros((7, 8, 30), bool)
    zgap[2, 2:5, 3:25] = True
    zgap[4, 2:5, 3:25] = True
    assert len(trace(zgap, voxel_size=vs).roots) == 2
    assert len(trace(zgap).roots) == 1


def test_trace_keeps_the_first_foreground_plane_and_centres_on_the_volume_border():
    """The crop never cuts foreground: a bar from x=3 to 14 gives nodes at x 3 and 14; a bar touching the
    volume's x borders gets nodes exactly on them (kimimaro's fix_borders)."""
    # x__foreground_box__mutmut_24 (start + margin), 27 (start >= 1)
    m = trace(trace_bar())
    assert (m.xyz[:, 0].min(), m.xyz[:, 0].max()) == (3.0, 14.0)
    assert m.xyz[:, 1].min() == 2.0 and m.xyz[:, 2].min() == 1.0
    m = trace(trace_bar(shape=(4, 6, 20), x=(0, 20)))
    assert (m.xyz[:, 0].min(), m.xyz[:, 0].max()) == (0.0, 19.0)


def test_skeleton_to_morphology_types_only_a_thick_root_as_soma():
    """Only roots with radius >= soma_radius are soma (the threshold itself included); thick children stay dendrite."""
    # x_skeleton_to_morphology__mutmut_52 (|), 53/54 (parent <= 0 / < 1), 55 (>)
    pts = np.array([[0.0, 0, 0], [0, 0, 1], [0, 0, 2]])
    m = skeleton_to_morphology(pts, np.array([[0, 1], [1, 2]]), np.array([3.0, 3.0, 1.0]), join_distance=0.0,
                               soma_radius=3.0)
    assert m.types.tolist() == [SOMA, BASAL, BASAL] and m.parent.tolist() == [-1, 0, 1]


def test_skeleton_to_morphology_single_node():
    """A one-node skeleton is one root (no parent lookup beyond the node)."""
    # x__order_forest__mutmut_85
    m = skeleton_to_morphology(np.zeros((1, 3)), NO_EDGES, np.array([1.0]), join_distance=6.0, soma_radius=3.0)
    assert m.parent.tolist() == [-1] and m.types.tolist() == [BASAL]


def test_skeleton_loop_drops_its_longest_edge():
    """A skeleton cycle is broken at its longest edge (edge lengths are real distances)."""
    # x__spanning_forest__mutmut_15 (|a + b|), 16 (zero lengths)
    pts = np.array([[0.0, 0, 0], [0, 0, 1], [0, 0, 10]])  # a=0, b=1, c=10 in x
    m = skeleton_to_morphology(pts, np.array([[0, 1], [1, 2], [0, 2]]), np.array([2.0, 1.0, 1.0]),
                               join_distance=0.0, soma_radius=3.0)
    assert m.xyz[:, 0].tolist() == [0.0, 1.0, 10.0] and m.parent.tolist() == [-1, 0, 1]


def test_fragments_are_joined_by_their_closest_pair():
    """Fragments are joined at the shortest gap, never by the longer candidate gaps."""
    # x__spanning_forest__mutmut_60/61 (gap length), 73 (big - gap)
    pts = np.array([[0.0, 0, 10], [0, 0, 11], [0, 0, 12], [0, 0, 14], [0, 0, 15]])
    m = skeleton_to_morphology(pts, np.array([[0, 1], [1, 2], [3, 4]]), np.array([3.0, 1, 1, 1, 1]),
                               join_distance=5.0, soma_radius=3.0)
    assert m.xyz[:, 0].tolist() == [10.0, 11.0, 12.0, 14.0, 15.0] and m.parent.tolist() == [-1, 0, 1, 2, 3]


def test_gap_edges_never_replace_a_short_skeleton_edge():
    """Even with a skeleton shorter than one x-voxel, a gap edge costs more than every skeleton edge."""
    # x__spanning_forest__mutmut_65 (big = total - 1)
    pts = np.array([[0.0, 0, 0], [0, 0, 1.5], [0, 0, 0.75]])  # b (fragment 2) between the ends of a-c
    m = skeleton_to_morphology(pts, np.array([[0, 1]]), np.array([2.0, 1.0, 0.5]), join_distance=1.0,
                               soma_radius=3.0)
    assert m.xyz[1, 0] == 1.5 and m.parent[1] == 0  # the skeleton edge a-c is kept
    assert len(m.roots) == 1


def test_join_distance_zero_never_joins_and_small_positive_distances_do():
    """join_distance 0 keeps even touching fragments apart; 1.0 joins fragments exactly 1 apart; two
    single-node fragments are joined."""
    # x__spanning_forest__mutmut_23 (or), 24 (>= 0), 25 (> 1), 27 (n > 2)
    pts = np.array([[0.0, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 2]])
    edges, radii = np.array([[0, 1], [2, 3]]), np.array([2.0, 1, 1, 1])
    assert len(skeleton_to_morphology(pts, edges, radii, join_distance=0.0, soma_radius=3.0).roots) == 2
    two = np.array([[0.0, 0, 0], [0, 0, 1]])
    m = skeleton_to_morphology(two, NO_EDGES, np.array([2.0, 1.0]), join_distance=1.0, soma_radius=3.0)
    assert m.parent.tolist() == [-1, 0]


def test_fix_branching_reaches_kimimaro():
    """TeasarParams.fix_branching is passed on (kimimaro's own default, True, gives another skeleton)."""
    # x__skeletonize__mutmut_23 (argument dropped: kimimaro defaults to True), 14 (None: True is ignored)
    vol = np.zeros((5, 30, 40), bool)
    vol[1:4, 13:16, 2:38] = True
    vol[1:4, 2:28, 25:28] = True
    a, b = trace(vol), trace(vol, teasar=TeasarParams(fix_branching=True))
    assert len(a) != len(b) or not np.array_equal(a.xyz, b.xyz)


def test_trace_prints_no_progress_bar(capfd):
    """Tracing is quiet: kimimaro's progress bar is off."""
    # x__skeletonize__mutmut_35 (progress=True), 22 (argument dropped: kimimaro defaults to progress=True)
    trace(trace_bar())
    out, err = capfd.readouterr()
    assert out == "" and err == ""
