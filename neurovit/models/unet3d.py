"""UNet3d: the plain 3D U-Net baseline (MONAI's BasicUNet) behind the same block → slice-logits contract as SliceViT.

Ablation row "does the inflated ViT beat a plain 3D U-Net at equal budget?" (experiments/unet3d.yaml).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from neurovit.models.archs import ModelConfigError

# BasicUNet max-pools by 2 four times: a side must be at least 2**4 for the bottleneck to keep one voxel, and
# its instance norm needs more than one bottleneck voxel, so H and W are at least 2 * 2**4 (z, y, x)
MIN_SIDES = (16, 32, 32)
# features ≈ the tiny SliceViT's parameter count (1.91 M with the unetr decoder): MONAI's pattern
# (f, f, 2f, 4f, 8f, f) with f = 18 gives 1.82 M
DEFAULT_FEATURES = (18, 18, 36, 72, 144, 18)


class UNet3d(nn.Module):
    """Block (B, C, D, H, W) float → centre-slice logits (B, 1, H, W), or (B, 1, D, H, W) if out_slices="all".

    The network is MONAI's ``BasicUNet`` (3D, one output channel, instance norm, LeakyReLU, transposed-conv
    upsampling; ``features`` are its six widths), unchanged: no home-made layers.

    z pooling: BasicUNet max-pools every axis by 2 four times, so every side must be at least 16 (a 5-slice
    block would reach size 0 at the third pooling, and BasicUNet has no anisotropic pooling). A block shallower
    than 16 slices is padded symmetrically in z to 16 (``pad_mode`` "replicate": edge slices repeated, as
    whole-volume inference does at the ends of a stack; "reflect" cannot pad 5 slices to 16; "constant":
    zeros, i.e. background after normalisation), and the logits of the real slices (the centre slice, D // 2,
    or all D) are cropped back. H and W shorter than 32 (never with the 100 px blocks) are padded to 32 the
    same way: a 16 × 16 × 16 input would leave a single bottleneck voxel, which instance norm refuses.
    The price of the z padding is compute: the full-resolution levels, which dominate, convolve 16 slices instead
    of 5 (about 3×): 14.5 GFLOP per 5 × 100 × 100 block with the default features, vs 1.36 for the tiny SliceViT
    (unetr decoder; 0.16 with the light one). The alternative, DynUNet with anisotropic strides (no z
    downsampling at the first levels), would need H and W padded to multiples of 16 (100 → 112) too, since it
    concatenates skips without MONAI's odd-size padding, and is another architecture (nnU-Net's strided
    convolutions); BasicUNet is the plain 3D U-Net the ablation asks for, so it stays.
    Odd in-plane sides are fine: BasicUNet's UpCat pads the upsampled map by one (replicate) where max-pooling
    floored an odd side (100 → 50 → 25 → 12 → 6 and back).

    Attributes read by the training module and inference: ``block_depth``, ``img_size``, ``out_slices``. There is
    no ``encoder``: layer-wise lr decay does not apply, and only ``init.strategy: scratch`` makes sense.
    """

    def __init__(
        self,
        block_depth: int = 5,
        img_size: int = 100,
        in_chans: int = 1,
        out_slices: Literal["center", "all"] = "center",
        features: Sequence[int] = DEFAULT_FEATURES,
        pad_mode: Literal["replicate", "constant"] = "replicate",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if out_slices not in ("center", "all") or pad_mode not in ("replicate", "constant"):
            raise ModelConfigError(f"bad option: out_slices={out_slices!r}, pad_mode={pad_mode!r}")
        if block_depth < 1 or img_size < 1 or in_chans < 1:
            raise ModelConfigError(
                f"block_depth, img_size and in_chans must be >= 1, got {block_depth}, {img_size}, {in_chans}"
            )
        features = tuple(int(f) for f in features)
        if len(features) != 6 or min(features) < 1:
            raise ModelConfigError(
                f"features are BasicUNet's six widths (five encoder levels, then the last decoder level), "
                f"e.g. {list(DEFAULT_FEATURES)}; got {list(features)}"
            )
        self.block_depth, self.img_size, self.in_chans = block_depth, img_size, in_chans
        self.out_slices, self.pad_mode, self.features = out_slices, pad_mode, features
        from monai.networks.nets import BasicUNet  # here: `import neurovit.models` stays free of monai's nets

        self.unet = BasicUNet(
            spatial_dims=3, in_channels=in_chans, out_channels=1, features=features, dropout=dropout
        )

    @staticmethod
    def _pads(side: int, min_side: int) -> tuple[int, int]:
        total = max(0, min_side - side)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: (B, 1, H, W) for the centre slice, or (B, 1, D, H, W) for out_slices="all"."""
        if x.ndim != 5 or x.shape[1] != self.in_chans or x.shape[2] != self.block_depth:
            raise ModelConfigError(
                f"UNet3d expects blocks (B, {self.in_chans}, {self.block_depth}, H, W), got {tuple(x.shape)}"
            )
        d, h, w = x.shape[2:]
        pads = [self._pads(s, m) for s, m in zip((d, h, w), MIN_SIDES)]
        if any(lo or hi for lo, hi in pads):
            flat = [p for lo_hi in reversed(pads) for p in lo_hi]  # F.pad order: x, y, z
            x = F.pad(x, flat, mode=self.pad_mode)
        logits = self.unet(x)
        (z0, _), (y0, _), (x0, _) = pads
        logits = logits[:, :, :, y0 : y0 + h, x0 : x0 + w]
        if self.out_slices == "all":
            return logits[:, :, z0 : z0 + d]
        return logits[:, :, z0 + d // 2]
