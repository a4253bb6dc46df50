"""UNet3d, the plain 3D U-Net baseline (MONAI BasicUNet): the block → slice-logits contract, and a fit/predict run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_fit_args

from neurovit.cli import main
from neurovit.inference import predict_volume, slice_blocks
from neurovit.lit.module import SegmentationModule
from neurovit.models import TINY_ARCH, ModelConfigError, SliceViT
from neurovit.models.transfer import transfer_2d_to_3d
from neurovit.models.unet3d import DEFAULT_FEATURES, UNet3d

SMALL = [4, 4, 8, 8, 16, 4]  # a few thousand parameters: shapes and plumbing only


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("depth, h, w", [(5, 100, 100), (3, 64, 64), (4, 37, 45), (2, 17, 30), (1, 8, 8)])
def test_output_shapes_center_and_all(depth, h, w):
    torch.manual_seed(0)
    center = UNet3d(block_depth=depth, img_size=h, features=SMALL).eval()
    every = UNet3d(block_depth=depth, img_size=h, features=SMALL, out_slices="all").eval()
    every.load_state_dict(center.state_dict())
    x = torch.randn(2, 1, depth, h, w)
    with torch.no_grad():
        c, a = center(x), every(x)
    assert c.shape == (2, 1, h, w) and a.shape == (2, 1, depth, h, w)
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a[:, :, depth // 2], c)  # the centre slice of "all" is the "center" output


def test_default_features_match_the_tiny_slicevit_budget():
    unet, vit = UNet3d(), SliceViT(arch=TINY_ARCH)
    assert list(unet.features) == list(DEFAULT_FEATURES)
    assert abs(n_params(unet) / n_params(vit) - 1) < 0.1, (n_params(unet), n_params(vit))
    with torch.no_grad():
        assert unet.eval()(torch.randn(1, 1, 5, 100, 100)).shape == (1, 1, 100, 100)


def test_centre_slice_sees_its_neighbours_locally():
    """3D convolutions: a bump on slice 0 changes the centre-slice logits near the bump, far less elsewhere
    (a per-slice 2D net would change them only through the instance-norm statistics, everywhere alike)."""
    torch.manual_seed(0)
    net = UNet3d(block_depth=3, img_size=64, features=SMALL).eval()
    x = torch.rand(1, 1, 3, 64, 64)
    bumped = x.clone()
    bumped[0, 0, 0, :4, :4] += 1.0
    with torch.no_grad():
        diff = (net(bumped) - net(x)).abs()[0, 0]
    near, far = diff[:8, :8].max().item(), diff[40:, 40:].max().item()
    assert near > 0.05 and near > 10 * far, (near, far)


def test_bad_options_and_blocks_are_refused():
    with pytest.raises(ModelConfigError, match="six widths"):
        UNet3d(features=[8, 16, 32])
    with pytest.raises(ModelConfigError, match="bad option"):
        UNet3d(pad_mode="reflect")  # type: ignore[arg-type]
    with pytest.raises(ModelConfigError, match=r"expects blocks \(B, 1, 5, H, W\)"):
        UNet3d(features=SMALL)(torch.zeros(1, 1, 3, 32, 32))


def test_optimizer_groups_and_scratch_init_without_an_encoder():
    net = UNet3d(block_depth=3, img_size=32, features=SMALL)
    groups = SegmentationModule(net, layer_decay=0.75, lr=1e-3)._param_groups()
    assert {g["lr"] for g in groups} == {1e-3}  # no ViT encoder: layer decay leaves every lr alone
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    assert transfer_2d_to_3d(net, None, "scratch").strategy == "scratch"
    with pytest.raises(ModelConfigError, match="scratch"):
        transfer_2d_to_3d(net, {}, "center")


def test_fit_with_the_unet3d_config_then_load_and_predict(tiny_dataset, tmp_path, monkeypatch):
    from neurovit.predict import load_model, segment

    monkeypatch.setenv("WANDB_MODE", "disabled")
    root = tmp_path / "run"
    # base + demo set SliceViT's arch/mode; unet3d (last) swaps the class and those init_args are dropped
    args = tiny_fit_args(tiny_dataset, root)
    args[args.index("demo") + 1 : args.index("demo") + 1] = ["--config", "unet3d"]  # after demo, before overrides
    assert main(args) == 0
    ckpt = root / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    net_cfg = yaml.safe_load((root / "config.yaml").read_text())["model"]["net"]
    assert net_cfg["class_path"] == "neurovit.models.unet3d.UNet3d"
    assert net_cfg["init_args"]["block_depth"] == 5 and net_cfg["init_args"]["img_size"] == 32

    module = load_model(ckpt)
    assert isinstance(module.net, UNet3d) and (module.block_depth, module.roi_size) == (5, 32)
    assert list(module.net.features) == [8, 12, 32, 72, 160, 8]  # experiments/unet3d.yaml's CPU width
    # one 32 × 32 window per slice: whole-volume inference is exactly the stacked per-slice predictions
    vol = torch.rand(6, 32, 32)
    prob = predict_volume(module.net, vol.numpy(), block_depth=5, roi_size=32, z_chunk=4, sw_batch_size=4)
    with torch.no_grad():
        naive = torch.sigmoid(module.net(slice_blocks(vol, 0, 6, 5)[:, None]))[:, 0].numpy()
    np.testing.assert_allclose(prob, naive, atol=1e-5)
    # the checkpoint's own normaliser, an awkward stack shape
    raw = np.random.default_rng(0).integers(100, 400, size=(7, 40, 45)).astype(np.uint16)
    out = segment(module, raw, voxel_size=(2.0, 1.0, 1.0))
    assert out.shape == raw.shape and out.dtype == np.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0

