"""Whole-volume prediction: stacked slice predictions, awkward stack shapes, `neurovit predict`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurovit.cli import main
from neurovit.data.synth import SynthConfig, synthesize_dataset
from neurovit.data.tiff import read_stack, read_voxel_size, write_stack
from neurovit.inference import predict_volume, slice_blocks
from neurovit.models import TINY_ARCH, SliceViT

REPO = Path(__file__).resolve().parents[1]


def test_slice_blocks_repeat_edge_slices():
    vol = torch.arange(4.0)[:, None, None].expand(4, 2, 2)
    blocks = slice_blocks(vol, 0, 4, 5)
    assert blocks[:, :, 0, 0].tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 3], [1, 2, 3, 3, 3]]


def test_predict_volume_equals_stacked_per_slice_predictions():
    torch.manual_seed(0)
    net = SliceViT(arch=TINY_ARCH, block_depth=3, img_size=32).eval()
    vol = torch.rand(6, 32, 32)
    prob = predict_volume(net, vol.numpy(), block_depth=3, roi_size=32, z_chunk=4, sw_batch_size=2)
    with torch.no_grad():
        naive = np.stack([torch.sigmoid(net(slice_blocks(vol, z, z + 1, 3)[:, None]))[0, 0].numpy()
                          for z in range(6)])
    np.testing.assert_allclose(prob, naive, atol=1e-5)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    import os

    tmp = tmp_path_factory.mktemp("predict")
    synthesize_dataset(tmp / "ds", SynthConfig(n_volumes=3, shape=(8, 40, 40), seed=2), progress=False)
    old = os.environ.get("WANDB_MODE")
    os.environ["WANDB_MODE"] = "disabled"
    try:
        rc = main(["fit", "--config", str(REPO / "experiments/base.yaml"), "--config", str(REPO / "experiments/demo.yaml"),
                   "--data.data_dir", str(tmp / "ds"), "--data.block_size", "32", "--data.batch_size", "2",
                   "--data.blocks_per_epoch", "2", "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0",
                   "--trainer.default_root_dir", str(tmp / "run"), "--trainer.enable_progress_bar", "false"])
    finally:
        if old is None:
            os.environ.pop("WANDB_MODE", None)
        else:
            os.environ["WANDB_MODE"] = old
    assert rc == 0
    return tmp / "run" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("shape, traced", [((3, 37, 75), False), ((9, 70, 33), False), ((2, 24, 20), True)])
def test_predict_awkward_stacks(checkpoint, tmp_path, shape, traced, capsys):
    rng = np.random.default_rng(0)
    stack = tmp_path / "in" / "odd.tif"
    write_stack(stack, rng.integers(100, 400, size=shape).astype(np.uint16), voxel_size=(2.0, 0.5, 0.5))
    out = tmp_path / "out"
    assert main(["predict", "--ckpt", str(checkpoint), "--input", str(stack.parent), "--out", str(out),
                 "--save", "both", "--threshold", "0.0", "--device", "cpu", *([] if traced else ["--no-trace"])]) == 0
    prob = read_stack(out / "odd_prob.tif")
    assert prob.shape == shape and prob.dtype == np.float32
    assert 0.0 <= float(prob.min()) and float(prob.max()) <= 1.0
    assert read_voxel_size(out / "odd_prob.tif") == pytest.approx((2.0, 0.5, 0.5))
    assert read_stack(out / "odd_mask.tif").shape == shape
    if traced:  # threshold 0: everything is foreground, so the tree is not empty
        swc = (out / "odd.swc").read_text()
        assert "units: um" in swc and len([ln for ln in swc.splitlines() if not ln.startswith("#")]) > 0
    else:
        assert not (out / "odd.swc").exists()
    assert not list(out.glob(".*tmp"))  # no temporary files left behind
    assert "odd.tif" in capsys.readouterr().out


def test_predict_compile_compiles_once_for_all_stacks(checkpoint, tmp_path, monkeypatch):
    compiled = []

    def fake_compile(net, **kwargs):  # stands in for torch.compile (a real compile takes a minute on CPU)
        calls = []

        def wrapped(x):
            calls.append(x.shape)
            return net(x)

        wrapped.calls = calls
        compiled.append(wrapped)
        return wrapped

    monkeypatch.setattr(torch, "compile", fake_compile)
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        write_stack(tmp_path / "in" / f"{name}.tif", rng.integers(100, 400, size=(3, 40, 40)).astype(np.uint16))
    assert main(["predict", "--ckpt", str(checkpoint), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--device", "cpu", "--no-trace", "--compile", "--z-stride", "2"]) == 0
    assert len(compiled) == 1 and len(compiled[0].calls) >= 2  # one compiled network served both stacks
    assert (tmp_path / "out" / "a_prob.tif").is_file() and (tmp_path / "out" / "b_prob.tif").is_file()


def test_predict_rejects_non_positive_stride_and_batch(tmp_path, capsys):
    for flag, value in (("--z-stride", "0"), ("--batch-size", "-2"), ("--z-stride", "two")):
        with pytest.raises(SystemExit) as exc:
            main(["predict", "--ckpt", str(tmp_path / "m.ckpt"), "--input", str(tmp_path), "--out", str(tmp_path),
                  flag, value])
        assert exc.value.code == 2
        assert f"argument {flag}: expected a whole number >= 1, got '{value}'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_predict_errors_are_clear(checkpoint, tmp_path, capsys):
    rc = main(["predict", "--ckpt", str(tmp_path / "none.ckpt"), "--input", str(tmp_path), "--out", str(tmp_path)])
    assert rc == 2 and "none.ckpt not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    rc = main(["predict", "--ckpt", str(checkpoint), "--input", str(tmp_path / "empty"), "--out", str(tmp_path)])
    assert rc == 2 and "contains no image volumes (.ome.tif" in capsys.readouterr().err


class _IdentityAllSlices(torch.nn.Module):
    """A stand-in all-slices model: the logit of every slice is its input."""

    out_slices = "all"

    def forward(self, x):  # (B, 1, D, H, W) → (B, 1, D, H, W)
        return x


@pytest.mark.parametrize("n_z, stride", [(11, 3), (4, 5), (7, 1)])
def test_all_slices_models_cover_every_slice_once_averaged(n_z, stride):
    vol = torch.randn(n_z, 20, 23)
    prob = predict_volume(_IdentityAllSlices(), vol.numpy(), block_depth=5, roi_size=16, overlap=0.5,
                          z_stride=stride, z_chunk=2, sw_batch_size=4)
    # every prediction of slice z is sigmoid(vol[z]) (edge repeats are dropped), so their mean is too
    np.testing.assert_allclose(prob, torch.sigmoid(vol).numpy(), atol=1e-5)


class _CentreIndexAllSlices(torch.nn.Module):
    """Every slice of a block predicts its block's centre index (the input holds z in every voxel)."""

    out_slices = "all"

    def forward(self, x):
        return x[:, :, 2:3].expand_as(x).clone()


def test_all_slices_weighted_mean_streams_into_a_prefilled_output():
    n_z, depth, stride = 9, 5, 3
    vol = np.broadcast_to(np.arange(n_z, dtype=np.float32)[:, None, None], (n_z, 8, 8)).copy()
    out = np.full(vol.shape, np.nan, dtype=np.float32)  # e.g. a reused buffer: nothing of it may survive
    predict_volume(_CentreIndexAllSlices(), vol, block_depth=depth, roi_size=8, z_stride=stride, z_chunk=1, out=out)
    # blocks centred at 0, 3, 6 (6 + 2 reaches the last slice); slice z gets sigmoid(c) from block c with weight 1 + min(d, D - 1 - d)
    expected = np.zeros(n_z)
    for z in range(n_z):
        num = den = 0.0
        for c in (0, 3, 6):
            d = z - c + depth // 2
            if 0 <= d < depth:
                w = 1 + min(d, depth - 1 - d)
                num, den = num + w / (1 + np.exp(-c)), den + w
        expected[z] = num / den
    np.testing.assert_allclose(out[:, 4, 4], expected, rtol=1e-6)
    assert not np.isnan(out).any()


def test_module_z_stride_sets_the_number_of_blocks(tmp_path):
    from neurovit.lit.module import SegmentationModule

    class Counting(_IdentityAllSlices):
        block_depth, img_size = 5, 16

        def __init__(self):
            super().__init__()
            self.blocks = 0

        def forward(self, x):
            self.blocks += len(x)
            return x

    vol = torch.randn(10, 16, 16)
    for stride, centres in ((5, 3), (3, 4), (None, 4), (1, 10)):  # None: D // 2 + 1 = 3; 5: 0, 5 and 9
        net = Counting()
        SegmentationModule(net, z_stride=stride).predict_probabilities(vol)
        assert net.blocks == centres, stride
    # `neurovit predict --z-stride` (predict_stack's z_stride) overrides the module's setting
    from neurovit.predict import predict_stack

    write_stack(tmp_path / "s.tif", np.random.default_rng(0).integers(0, 9, size=(10, 16, 16)).astype(np.uint16))
    module = SegmentationModule(Counting(), z_stride=3)
    predict_stack(module, tmp_path / "s.tif", tmp_path / "out", trace=False, progress=False, z_stride=5)
    assert module.net.blocks == 3 and (tmp_path / "out" / "s_prob.tif").is_file()


def test_blocks_carry_labels_of_every_slice(tmp_path):
    from neurovit.data.datamodule import NeuronDataModule

    synthesize_dataset(tmp_path / "ds", SynthConfig(n_volumes=3, shape=(8, 40, 40), seed=4), progress=False)
    dm = NeuronDataModule(str(tmp_path / "ds"), block_depth=5, block_size=24, batch_size=4, blocks_per_epoch=8)
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["label_all"].shape == (4, 1, 5, 24, 24)
    torch.testing.assert_close(b["label_all"][:, :, 2], b["label"])  # the centre slice is the target
    from neurovit.lit.module import SegmentationModule

    module = SegmentationModule(SliceViT(arch=TINY_ARCH, img_size=24, out_slices="all"))
    loss = module.training_step(b, 0)  # the loss uses all D slices' labels
    loss.backward()
    assert torch.isfinite(loss) and module.net.decoder.head.weight.grad is not None
