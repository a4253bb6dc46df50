"""Decoders: registry and interface, the default's unchanged state dict, the light decoder's cost, configs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from neurovit.models import (
    DECODERS,
    TINY_ARCH,
    Decoder,
    DecoderSpec,
    LightDecoder,
    ModelConfigError,
    SliceViT,
    UnetrDecoder2d,
    register_decoder,
)

REPO = Path(__file__).resolve().parents[1]
SMALL_ARCH = "vit_small_patch16_224"

# The default (unetr) decoder's state dict for SliceViT(arch=TINY_ARCH), "name:shape", captured from the code
# before the decoder registry existed: checkpoints written then must load unchanged.
UNETR_TINY_DECODER_KEYS = """
stem.conv1.weight:16x5x3x3 stem.norm1.weight:16 stem.norm1.bias:16 stem.conv2.weight:16x16x3x3
stem.norm2.weight:16 stem.norm2.bias:16 stem.skip.weight:16x5x1x1 skips.0.0.weight:96x32x2x2
skips.0.0.bias:32 skips.0.1.conv1.weight:32x32x3x3 skips.0.1.norm1.weight:32 skips.0.1.norm1.bias:32
skips.0.1.conv2.weight:32x32x3x3 skips.0.1.norm2.weight:32 skips.0.1.norm2.bias:32
skips.0.2.weight:32x32x2x2 skips.0.2.bias:32 skips.0.3.conv1.weight:32x32x3x3 skips.0.3.norm1.weight:32
skips.0.3.norm1.bias:32 skips.0.3.conv2.weight:32x32x3x3 skips.0.3.norm2.weight:32
skips.0.3.norm2.bias:32 skips.0.4.weight:32x32x2x2 skips.0.4.bias:32 skips.0.5.conv1.weight:32x32x3x3
skips.0.5.norm1.weight:32 skips.0.5.norm1.bias:32 skips.0.5.conv2.weight:32x32x3x3
skips.0.5.norm2.weight:32 skips.0.5.norm2.bias:32 skips.1.0.weight:96x64x2x2 skips.1.0.bias:64
skips.1.1.conv1.weight:64x64x3x3 skips.1.1.norm1.weight:64 skips.1.1.norm1.bias:64
skips.1.1.conv2.weight:64x64x3x3 skips.1.1.norm2.weight:64 skips.1.1.norm2.bias:64
skips.1.2.weight:64x64x2x2 skips.1.2.bias:64 skips.1.3.conv1.weight:64x64x3x3 skips.1.3.norm1.weight:64
skips.1.3.norm1.bias:64 skips.1.3.conv2.weight:64x64x3x3 skips.1.3.norm2.weight:64
skips.1.3.norm2.bias:64 skips.2.0.weight:96x128x2x2 skips.2.0.bias:128
skips.2.1.conv1.weight:128x128x3x3 skips.2.1.norm1.weight:128 skips.2.1.norm1.bias:128
skips.2.1.conv2.weight:128x128x3x3 skips.2.1.norm2.weight:128 skips.2.1.norm2.bias:128
ups.0.up.weight:32x16x2x2 ups.0.up.bias:16 ups.0.fuse.conv1.weight:16x32x3x3 ups.0.fuse.norm1.weight:16
ups.0.fuse.norm1.bias:16 ups.0.fuse.conv2.weight:16x16x3x3 ups.0.fuse.norm2.weight:16
ups.0.fuse.norm2.bias:16 ups.0.fuse.skip.weight:16x32x1x1 ups.1.up.weight:64x32x2x2 ups.1.up.bias:32
ups.1.fuse.conv1.weight:32x64x3x3 ups.1.fuse.norm1.weight:32 ups.1.fuse.norm1.bias:32
ups.1.fuse.conv2.weight:32x32x3x3 ups.1.fuse.norm2.weight:32 ups.1.fuse.norm2.bias:32
ups.1.fuse.skip.weight:32x64x1x1 ups.2.up.weight:128x64x2x2 ups.2.up.bias:64
ups.2.fuse.conv1.weight:64x128x3x3 ups.2.fuse.norm1.weight:64 ups.2.fuse.norm1.bias:64
ups.2.fuse.conv2.weight:64x64x3x3 ups.2.fuse.norm2.weight:64 ups.2.fuse.norm2.bias:64
ups.2.fuse.skip.weight:64x128x1x1 ups.3.up.weight:96x128x2x2 ups.3.up.bias:128
ups.3.fuse.conv1.weight:128x256x3x3 ups.3.fuse.norm1.weight:128 ups.3.fuse.norm1.bias:128
ups.3.fuse.conv2.weight:128x128x3x3 ups.3.fuse.norm2.weight:128 ups.3.fuse.norm2.bias:128
ups.3.fuse.skip.weight:128x256x1x1 head.weight:1x16x1x1 head.bias:1
""".split()

# sha256("\n".join(f"{key}:{tuple(shape)}")) of the whole model's state dict, also captured before the change.
STATE_DICT_DIGESTS = {
    "tiny_center": ({"arch": TINY_ARCH}, 147, "a8faeb5b5d8fb556"),
    "tiny_all": ({"arch": TINY_ARCH, "out_slices": "all"}, 147, "8cbb8fffe1e2112b"),
    "tiny_2d": ({"arch": TINY_ARCH, "mode": "2d"}, 147, "acb98aeeb10105ea"),
    "tiny_p10": ({"arch": TINY_ARCH, "patch_size": 10}, 89, "65894c95dc6b1fb5"),
    "small_center": ({"arch": SMALL_ARCH}, 243, "4c3cd4013225c0ea"),
    "small_p8": ({"arch": SMALL_ARCH, "patch_size": 8}, 210, "11e694ceddfa495d"),
}


def meta_model(**kwargs) -> SliceViT:
    with torch.device("meta"):
        return SliceViT(**kwargs)


# --- every registered decoder ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DECODERS))
@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        ({}, (2, 1, 100, 100)),
        ({"out_slices": "all"}, (2, 1, 5, 100, 100)),
        ({"mode": "2d"}, (2, 1, 100, 100)),
    ],
    ids=["center", "all", "2d"],
)
def test_every_decoder_builds_shapes_and_backpropagates(name, kwargs, shape):
    torch.manual_seed(0)
    model = SliceViT(arch=TINY_ARCH, decoder=name, **kwargs)
    assert isinstance(model.decoder, Decoder) and model.decoder_name == name
    assert model.feature_layers == model.decoder.feature_layers
    logits = model(torch.randn(2, 1, 5, 100, 100))
    assert logits.shape == shape
    loss = F.binary_cross_entropy_with_logits(logits, (torch.rand_like(logits) > 0.9).float())
    loss.backward()
    assert torch.isfinite(loss)
    for part in (model.encoder.patch_embed.proj.weight, model.encoder.blocks[-1].mlp.fc2.weight):
        assert part.grad is not None and part.grad.abs().sum() > 0
    no_grad = [k for k, p in model.decoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, no_grad


@pytest.mark.parametrize("name", list(DECODERS))
def test_every_decoder_takes_other_patch_and_block_sizes(name):
    for kwargs, x in (
        ({"patch_size": 10}, torch.randn(1, 1, 5, 100, 100)),  # factors 5·2
        ({"patch_size": 8, "img_size": 60}, torch.randn(1, 1, 5, 60, 60)),  # 3 stages, padded 60 → 64
        ({"block_depth": 3, "img_size": 16, "in_chans": 2}, torch.randn(2, 2, 3, 16, 16)),  # 1×1 token grid
    ):
        model = SliceViT(arch=TINY_ARCH, decoder=name, **kwargs).train()
        assert model(x).shape == (x.shape[0], 1, *x.shape[-2:]), kwargs


# --- the default is unchanged ---------------------------------------------------------------------------


def test_default_decoder_state_dict_keys_are_unchanged():
    model = meta_model(arch=TINY_ARCH)
    assert isinstance(model.decoder, UnetrDecoder2d) and model.decoder_name == "unetr"
    got = [f"{k}:{'x'.join(map(str, v.shape))}" for k, v in model.decoder.state_dict().items()]
    assert got == UNETR_TINY_DECODER_KEYS
    assert model.feature_layers == [0, 1, 2, 3] and model.decoder.factors == [2, 2, 2, 2]


@pytest.mark.parametrize("name", list(STATE_DICT_DIGESTS))
def test_default_model_state_dicts_are_unchanged(name):
    kwargs, count, digest = STATE_DICT_DIGESTS[name]
    sd = meta_model(**kwargs).state_dict()
    rows = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sd.items())
    assert (len(sd), hashlib.sha256(rows.encode()).hexdigest()[:16]) == (count, digest)


def test_old_checkpoint_state_dict_loads_into_the_default_model():
    """A state dict of the default model loads strictly, and explicit feature_size=16 is the same model."""
    torch.manual_seed(0)
    old = SliceViT(arch=TINY_ARCH, feature_size=16, feature_layers=[0, 1, 2, 3])
    new = SliceViT(arch=TINY_ARCH)
    new.load_state_dict(old.state_dict(), strict=True)
    x = torch.randn(1, 1, 5, 100, 100)
    with torch.no_grad():
        torch.testing.assert_close(new.eval()(x), old.eval()(x))


def test_old_decoder_module_still_imports():
    from neurovit.models import decoder as old_module

    assert old_module.UnetrDecoder2d is UnetrDecoder2d and old_module.upsample_factors(16) == [2, 2, 2, 2]


# --- the light decoder is cheap -------------------------------------------------------------------------


@pytest.mark.parametrize("arch", [TINY_ARCH, SMALL_ARCH])
@pytest.mark.parametrize("out_slices", ["center", "all"])
def test_light_costs_at_most_a_third_of_unetr_per_output_voxel(arch, out_slices):
    """Counted as model_stats counts (FlopCounterMode on the meta device), per voxel a block predicts."""
    from neurovit.benchmarks.model_stats import model_stats

    unetr = model_stats(arch=arch, out_slices=out_slices, decoder="unetr")
    light = model_stats(arch=arch, out_slices=out_slices, decoder="light")
    assert light["out_voxels"] == unetr["out_voxels"] == (5 if out_slices == "all" else 1) * 100 * 100
    assert light["enc_flops"] == unetr["enc_flops"]
    assert light["dec_flops_per_voxel"] <= unetr["dec_flops_per_voxel"] / 3
    assert light["dec_params"] < unetr["dec_params"]
    if arch == TINY_ARCH:  # the decoder dominates the tiny model: the whole model is > 3x cheaper too
        assert light["flops_per_voxel"] <= unetr["flops_per_voxel"] / 3


def test_light_decoder_structure_and_arguments():
    model = meta_model(arch=TINY_ARCH, decoder="light")
    dec = model.decoder
    assert isinstance(dec, LightDecoder) and dec.feature_layers == [1, 3] == model.feature_layers
    assert dec.widths == {"full": 16, "token": [4, 8, 16, 32, 64]} and len(dec.raw) == len(dec.fuse) == 1
    small = meta_model(arch=SMALL_ARCH, decoder="light").decoder
    assert small.widths == {"full": 16, "token": [8, 16, 32, 64, 128]} and small.feature_layers == [5, 11]
    every = meta_model(arch=TINY_ARCH, decoder="light", out_slices="all").decoder
    assert every.widths["full"] == 32 and every.head.out_channels == 5  # wider when it predicts all slices
    one = meta_model(arch=TINY_ARCH, decoder="light", decoder_args={"width": 8, "layers": 1, "convs": 2})
    assert one.decoder.widths["full"] == 8 and one.feature_layers == [3] and len(one.decoder.raw) == 2
    picked = meta_model(arch=TINY_ARCH, decoder="light", feature_layers=[0, 2, 3])
    assert picked.feature_layers == [0, 2, 3] and picked.decoder.num_inputs == 3
    p10 = meta_model(arch=TINY_ARCH, decoder="light", patch_size=10).decoder
    assert p10.factors == [5, 2] and [m[0].stride for m in p10.up] == [(5, 5), (2, 2)]


# --- registry and errors --------------------------------------------------------------------------------


def test_decoder_errors():
    with pytest.raises(ModelConfigError, match=r"unknown decoder 'fancy'; registered: unetr, light"):
        SliceViT(arch=TINY_ARCH, decoder="fancy")
    with pytest.raises(
        ModelConfigError,
        match=r"decoder 'light' has no argument\(s\) feature_sise; it takes width, token_width, convs",
    ):
        SliceViT(arch=TINY_ARCH, decoder="light", decoder_args={"feature_sise": 8})
    with pytest.raises(ModelConfigError, match="feature_size is the unetr decoder's width"):
        SliceViT(arch=TINY_ARCH, decoder="light", feature_size=16)
    with pytest.raises(ModelConfigError, match="feature_layers is given both"):
        SliceViT(arch=TINY_ARCH, feature_layers=[0, 1, 2, 3], decoder_args={"feature_layers": [0, 1, 2, 3]})
    with pytest.raises(
        ModelConfigError,
        match=r"feature_layers must list 2 non-decreasing block indices in \[0, 3\], got \[3, 1\]",
    ):
        SliceViT(arch=TINY_ARCH, decoder="light", feature_layers=[3, 1])
    with pytest.raises(ModelConfigError, match="cannot import decoder 'neurovit.models.nothing.Here'"):
        SliceViT(arch=TINY_ARCH, decoder="neurovit.models.nothing.Here")
    with pytest.raises(ModelConfigError, match="is not a decoder class"):
        SliceViT(arch=TINY_ARCH, decoder="torch.nn.Linear")


class MeanDecoder(Decoder):
    """A minimal decoder from outside the package: last token map, 1×1 conv, nearest upsampling."""

    def __init__(self, spec: DecoderSpec, layer: int) -> None:
        super().__init__()
        self.feature_layers, self.patch = [layer], spec.patch_size
        self.head = nn.Conv2d(spec.embed_dim, spec.out_slices, 1)

    @classmethod
    def from_spec(cls, spec: DecoderSpec, layer: int = -1) -> MeanDecoder:
        return cls(spec, layer % spec.num_layers)

    def forward(self, tokens, raw):
        return F.interpolate(self.head(tokens[-1]), scale_factor=self.patch, mode="nearest")


def test_a_new_decoder_needs_no_other_file():
    """By dotted path, or registered under a name: SliceViT builds it with the encoder's DecoderSpec."""
    x = torch.randn(1, 1, 5, 100, 100)
    by_path = SliceViT(arch=TINY_ARCH, decoder=f"{__name__}.MeanDecoder", decoder_args={"layer": 2})
    assert by_path.feature_layers == [2] and by_path(x).shape == (1, 1, 100, 100)
    register_decoder("mean-test")(MeanDecoder)
    try:
        model = SliceViT(arch=TINY_ARCH, decoder="mean-test", out_slices="all")
        assert model.feature_layers == [3] and model(x).shape == (1, 1, 5, 100, 100)
        with pytest.raises(ModelConfigError, match="already registered"):
            register_decoder("mean-test")(LightDecoder)
    finally:
        DECODERS.pop("mean-test")


# --- configs ---------------------------------------------------------------------------------------------


def _cli_parser():
    """The part of LightningCLI's parser that builds the model: SegmentationModule's typed arguments."""
    from jsonargparse import ArgumentParser

    from neurovit.lit.module import SegmentationModule

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(SegmentationModule, "model")
    return parser


def test_lightning_style_config_selects_the_decoder():
    parser = _cli_parser()
    net = {
        "class_path": "neurovit.models.SliceViT",
        "init_args": {"arch": TINY_ARCH, "decoder": "light", "decoder_args": {"width": 4}},
    }
    module = parser.instantiate(parser.parse_object({"model": {"net": net}})).model
    assert isinstance(module.net.decoder, LightDecoder) and module.net.decoder.widths["full"] == 4
    default = {"class_path": "neurovit.models.SliceViT", "init_args": {"arch": TINY_ARCH}}
    module = parser.instantiate(parser.parse_object({"model": {"net": default}})).model
    assert isinstance(module.net.decoder, UnetrDecoder2d)


def test_fastdecoder_yaml_row_selects_light():
    """base.yaml's net + demo.yaml's + fastdecoder.yaml's init_args (the order `neurovit fit` merges them)."""
    rows = [
        yaml.safe_load((REPO / "experiments" / f).read_text())
        for f in ("base.yaml", "demo.yaml", "fastdecoder.yaml")
    ]
    init_args: dict = {}
    for row in rows:
        init_args.update(row["model"]["net"].get("init_args", {}))
    assert init_args["decoder"] == "light"
    init_args.update({"block_depth": 5, "img_size": 100})  # the ${data.*} interpolations
    parser = _cli_parser()
    net = {"class_path": rows[0]["model"]["net"]["class_path"], "init_args": init_args}
    module = parser.instantiate(parser.parse_object({"model": {"net": net}})).model
    assert module.net.arch == TINY_ARCH and isinstance(module.net.decoder, LightDecoder)


# --- the training comparison script ---------------------------------------------------------------------


def test_decoder_comparison_script_runs_end_to_end(tiny_dataset, tmp_path, monkeypatch, capsys):
    """Every decoder: 2 training steps on 32 px blocks, val Dice, FLOPs, a 6 × 48 × 48 stack timed (~5 s on CPU)."""
    from neurovit.benchmarks import decoders as bench

    monkeypatch.setenv("WANDB_MODE", "disabled")
    args = "--device cpu --steps 2 --stack 6 48 48 --repeats 1 -- --data.block_size 32 --data.batch_size 2"
    bench.main([str(tiny_dataset), "--out", str(tmp_path / "runs"), *args.split()])
    out = capsys.readouterr().out
    table = out[out.index("decoders: 2 training steps each") :]
    for name in DECODERS:
        assert (tmp_path / "runs" / name / "checkpoints" / "last.ckpt").is_file()
        row = next(line for line in table.splitlines() if line.startswith(name))
        dice = float(row.split()[1])
        assert 0.0 <= dice <= 1.0
    assert "stack→mask on a 6x48x48 stack" in table
