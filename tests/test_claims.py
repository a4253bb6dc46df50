"""Claims the README makes that the other tests did not back: learning-rate schedules and parameter groups,
image/label alignment under augmentation, and sliding-window blending with models that see neighbours."""

from __future__ import annotations

import math

import numpy as np
import pytest
from torch import nn

from neurovit.data.blocks import BlockDataset, Volume
from neurovit.data.volumes import write_volume
from neurovit.inference import predict_volume
from neurovit.lit.module import SegmentationModule
from neurovit.models import TINY_ARCH, SliceViT


def lrs(module: SegmentationModule, steps: list[int]) -> list[float]:
    """The base group's learning rate at each step (the scheduler stepped as Lightning does)."""
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    out, step = [], 0
    for s in steps:
        while step < s:
            opt.step()
            sched.step()
            step += 1
        out.append(opt.param_groups[0]["lr"] / opt.param_groups[0].get("initial_lr", module.hparams.lr)
                   * module.hparams.lr)
    return out


@pytest.mark.parametrize("schedule, expected", [
    ("cosine", lambda s, w, t: (s + 1) / (w + 1) if s < w else 0.5 * (1 + math.cos(math.pi * (s - w) / (t - w)))),
    ("linear", lambda s, w, t: (s + 1) / (w + 1) if s < w else max(0.0, 1 - (s - w) / (t - w))),
    ("constant", lambda s, w, t: (s + 1) / (w + 1) if s < w else 1.0),
])
def test_warmup_then_schedule_gives_exact_learning_rates(schedule, expected, monkeypatch):
    net = SliceViT(arch=TINY_ARCH, block_depth=3, img_size=32)
    module = SegmentationModule(net, lr=1e-3, warmup_steps=10, schedule=schedule)
    monkeypatch.setattr(SegmentationModule, "_trainer", None, raising=False)  # total = 1000 steps without one
    steps = [0, 5, 9, 10, 11, 500, 999]
    got = lrs(module, steps)
    want = [1e-3 * expected(s, 10, 1000) for s in steps]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)


def test_no_decay_groups_and_layer_decay():
    net = SliceViT(arch=TINY_ARCH, block_depth=3, img_size=32)
    module = SegmentationModule(net, lr=1.0, weight_decay=0.05, layer_decay=0.5)
    groups = module._param_groups()
    by_param = {id(p): g for g in groups for p in g["params"]}
    n = len(net.encoder.blocks)
    for name, p in net.named_parameters():
        g = by_param[id(p)]
        no_decay = p.ndim <= 1 or name.endswith(".bias") or "pos_embed" in name or "cls_token" in name
        assert g["weight_decay"] == (0.0 if no_decay else 0.05), name
        if name.startswith("encoder.blocks."):
            i = int(name.split(".")[2])
            assert g["lr"] == pytest.approx(0.5 ** (n - i)), name  # block i of n: decay^(n + 1 − (i + 1))
        elif name.startswith(("encoder.patch_embed", "encoder.pos_embed", "encoder.cls_token")):
            assert g["lr"] == pytest.approx(0.5 ** (n + 1)), name
        elif not name.startswith("encoder."):
            assert g["lr"] == 1.0, name  # the decoder trains at the full rate
    assert sum(len(g["params"]) for g in groups) == len([p for p in net.parameters() if p.requires_grad])


def test_augmentation_keeps_image_and_label_aligned(tmp_path):
    # an asymmetric pattern: the label is exactly where the image is bright, so any flip or turn that
    # moves one and not the other breaks `label == (image > 0.5)`; intensity jitter keeps the order
    rng = np.random.default_rng(0)
    label = (rng.random((9, 48, 48)) > 0.7).astype(np.uint8)
    label[:, :10, :20] = 1  # a corner block makes flips and turns visible
    write_volume(tmp_path / "img.tif", label.astype(np.uint16) * 1000)
    write_volume(tmp_path / "lab.tif", label)
    vol = Volume("v", tmp_path / "img.tif", tmp_path / "lab.tif")
    ds = BlockDataset([vol], length=64, block_depth=5, block_size=(32, 32), pos_fraction=0.5, augment=True, seed=3)
    plain = BlockDataset([vol], length=64, block_depth=5, block_size=(32, 32), pos_fraction=0.5, augment=False,
                         seed=3)  # the same blocks, not transformed
    flipped = 0
    for key in range(64):
        item = ds[key]
        img, lab = item["image"][0].numpy(), item["label_all"][0].numpy()
        assert ((img > 0.5) == (lab > 0.5)).all(), key
        np.testing.assert_array_equal(item["label"][0].numpy(), lab[2])  # the centre slice's label
        raw = plain[key]["label_all"][0].numpy()
        assert raw.sum() == lab.sum()  # flips and turns move labels, never add or drop one
        flipped += not np.array_equal(lab, raw)
    assert flipped > 32  # the flips and turns did run (each block is left as it is with p ≈ 1/32)


class WindowMean(nn.Module):
    """Every output pixel is the mean of the whole window it is in: the output depends on where windows
    fall, so zero-padding a window inside the image, or blending weights that do not sum to one, show."""

    block_depth, img_size = 3, 32

    def __init__(self, out_slices: str = "center"):
        super().__init__()
        self.out_slices = out_slices

    def forward(self, x):  # (B, 1, D, H, W)
        mean = x.mean(dim=(2, 3, 4), keepdim=True)
        if self.out_slices == "all":
            return mean.expand_as(x).clone()
        return mean[:, :, 0].expand(x.shape[0], 1, x.shape[3], x.shape[4]).clone()


@pytest.mark.parametrize("out_slices", ["center", "all"])
@pytest.mark.parametrize("shape", [(5, 70, 45), (4, 33, 100)])
def test_windows_stay_inside_the_image_and_blending_is_normalised(out_slices, shape):
    vol = np.full(shape, 0.3, np.float32)
    prob = predict_volume(WindowMean(out_slices), vol, block_depth=3, roi_size=32, overlap=0.25, sw_batch_size=4,
                          z_chunk=2)
    np.testing.assert_allclose(prob, 1 / (1 + math.exp(-0.3)), atol=1e-6)  # sigmoid(0.3) everywhere


def test_gaussian_blending_weights_neighbouring_windows():
    # a ramp along x: each window's mean is its centre's value; the blend rises with x (up to small dips
    # where Gaussian weights of three windows cross) and lies between the first and last window means
    # (unnormalised weights, or zero-padded windows, would leave that range)
    x = np.linspace(0, 1, 100, dtype=np.float32)
    vol = np.broadcast_to(x, (3, 40, 100)).copy()
    prob = predict_volume(WindowMean(), vol, block_depth=3, roi_size=32, overlap=0.5, sw_batch_size=8, z_chunk=4)
    logits = np.log(prob / (1 - prob))[1, 20]
    assert (np.diff(logits) >= -0.005).all()
    assert logits.min() >= x[:32].mean() - 1e-5 and logits.max() <= x[-32:].mean() + 1e-5
    assert logits[-1] - logits[0] > 0.5
