"""UNETR-style 2D decoder: transformer token maps from several depths + a full-resolution conv path → logits.

Levels k = 0 (full resolution, side g·p) … S (token grid, side g), where the patch size p = f_1·f_2·…·f_S
is split into prime factors, largest first (16 → 2·2·2·2, 10 → 5·2). Going from level k+1 to level k
upsamples by a transposed conv with kernel = stride = f_{S-k}, so every size is exact for any patch size.
Channels are ch_k = feature_size·2^k (the token level keeps the ViT width E).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from neurovit.models.archs import ModelConfigError


def upsample_factors(patch_size: int) -> list[int]:
    """Prime factors of the patch size, largest first: the per-stage upsampling factors (16 → [2, 2, 2, 2])."""
    if patch_size < 2:
        raise ModelConfigError(f"patch size must be >= 2, got {patch_size}")
    factors, n, f = [], patch_size, 2
    while n > 1:
        while n % f == 0:
            factors.append(f)
            n //= f
        f += 1
    return sorted(factors, reverse=True)


def default_feature_layers(depth: int, stages: int) -> list[int]:
    """Evenly spaced 0-based block indices ending at the last block: round(depth·k/S) − 1 for k = 1..S."""
    return [max(round(depth * k / stages) - 1, 0) for k in range(1, stages + 1)]


class ConvBlock(nn.Module):
    """Residual conv block: y = act(x' + norm(conv3(act(norm(conv3(x)))))), x' = x or a 1×1 conv of x."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.norm1 = nn.InstanceNorm2d(out_ch, affine=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.norm2 = nn.InstanceNorm2d(out_ch, affine=True)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        return self.act(self.norm2(self.conv2(y)) + self.skip(x))


class TokenUp(nn.Sequential):
    """Token map → skip features: per factor f, ConvTranspose2d(kernel = stride = f) then a ConvBlock."""

    def __init__(self, in_ch: int, out_ch: int, factors: Sequence[int]) -> None:
        layers: list[nn.Module] = []
        for i, f in enumerate(factors):
            layers += [
                nn.ConvTranspose2d(in_ch if i == 0 else out_ch, out_ch, f, stride=f),
                ConvBlock(out_ch, out_ch),
            ]
        super().__init__(*layers)


class UpBlock(nn.Module):
    """Decoder stage: y = ConvBlock([ConvTranspose2d_f(x), skip]) (upsample ×f, concatenate, fuse)."""

    def __init__(self, in_ch: int, out_ch: int, factor: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, factor, stride=factor)
        self.fuse = ConvBlock(2 * out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.up(x), skip], dim=1))


class UnetrDecoder2d(nn.Module):
    """S token maps (B, E, g, g), shallow → deep, + raw block (B, C_raw, g·p, g·p) → logits (B, out, g·p, g·p).

    Token map k (k = 1..S−1) is upsampled to level k as a skip; the deepest map is the bottleneck; the raw
    block (its D slices as channels) passes a full-resolution ConvBlock, the level-0 skip that keeps
    1–3 px neurites.
    """

    def __init__(
        self, embed_dim: int, raw_chans: int, patch_size: int, out_channels: int = 1, feature_size: int = 16
    ) -> None:
        super().__init__()
        self.factors = upsample_factors(patch_size)
        s = self.num_stages = len(self.factors)
        ch = [feature_size * 2**k for k in range(s)] + [embed_dim]
        self.stem = ConvBlock(raw_chans, ch[0])
        self.skips = nn.ModuleList(TokenUp(embed_dim, ch[k], self.factors[: s - k]) for k in range(1, s))
        # ups[k] goes from level k+1 to level k
        self.ups = nn.ModuleList(UpBlock(ch[k + 1], ch[k], self.factors[s - 1 - k]) for k in range(s))
        self.head = nn.Conv2d(ch[0], out_channels, 1)

    def forward(self, tokens: Sequence[torch.Tensor], raw: torch.Tensor) -> torch.Tensor:
        if len(tokens) != self.num_stages:
            raise ModelConfigError(
                f"decoder needs {self.num_stages} token maps (one per stage), got {len(tokens)}"
            )
        x = tokens[-1]
        for k in reversed(range(self.num_stages)):
            skip = self.stem(raw) if k == 0 else self.skips[k - 1](tokens[k - 1])
            x = self.ups[k](x, skip)
        return self.head(x)
