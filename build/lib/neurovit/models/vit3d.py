"""3D-block ViT encoder: timm's VisionTransformer with the patch embedding replaced by a Conv3d block embedding."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint

from neurovit.models.archs import ModelConfigError


class BlockEmbed(nn.Module):
    """Block embedding: Conv3d, kernel = stride = (D, p, p), maps (B, C, D, H, W) to (B, (H/p)(W/p), E) tokens.

    The kernel spans the whole block depth, so the token grid is the 2D grid of a 2D ViT and the
    transformer blocks are unchanged; tokens are in row-major grid order like timm's PatchEmbed.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_chans: int = 1,
        embed_dim: int = 768,
        block_depth: int = 5,
        bias: bool = True,
        dynamic_img_pad: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if dynamic_img_pad:
            raise ModelConfigError("BlockEmbed does not pad; pad the block before the encoder")
        self.img_size = _pair(img_size)
        self.patch_size = _pair(patch_size)
        if any(s % p for s, p in zip(self.img_size, self.patch_size)):
            raise ModelConfigError(
                f"image size {self.img_size} is not a multiple of patch size {self.patch_size}"
            )
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.in_chans = in_chans
        self.block_depth = block_depth
        kernel = (block_depth, *self.patch_size)
        self.proj = nn.Conv3d(
            in_chans, embed_dim, kernel_size=kernel, stride=kernel, bias=bias, device=device, dtype=dtype
        )

    def feat_ratio(self, as_scalar: bool = True) -> int | tuple[int, int]:
        """Downsampling factor of the token grid (the patch size)."""
        return self.patch_size[0] if as_scalar else self.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) → (B, N, E) with N = (H/p)(W/p)."""
        expected = (self.in_chans, self.block_depth, *self.img_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ModelConfigError(
                f"block embedding expects input (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT3dEncoder(VisionTransformer):
    """timm ViT on (B, C, D, H, W) blocks: same parameter names as timm/DINO except a 5D ``patch_embed.proj``.

    ``img_size`` is the (already padded) block side and must be a multiple of ``patch_size``.
    """

    def __init__(
        self,
        img_size: int = 112,
        block_depth: int = 5,
        in_chans: int = 1,
        patch_size: int = 16,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=0,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            drop_path_rate=drop_path_rate,
            embed_layer=partial(BlockEmbed, block_depth=block_depth),
        )
        self.block_depth = block_depth

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid (H/p, W/p)."""
        return self.patch_embed.grid_size

    def forward_layers(
        self, x: torch.Tensor, layers: Sequence[int]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the blocks up to max(layers): returns the deepest output after the final norm (B, 1+N, E) and
        the patch tokens after each listed block (0-based), as (B, E, H/p, W/p) maps, in ``layers`` order."""
        n = len(self.blocks)
        if not layers or any(not 0 <= i < n for i in layers):
            raise ModelConfigError(f"layers {list(layers)} must be non-empty block indices in [0, {n - 1}]")
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        wanted, taken = set(layers), {}
        for i, blk in enumerate(self.blocks[: max(layers) + 1]):
            x = (
                checkpoint(blk, x, use_reentrant=False)
                if self.grad_checkpointing and self.training
                else blk(x)
            )
            if i in wanted:
                taken[i] = x
        return self.norm(x), [self.to_map(taken[i]) for i in layers]

    def to_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, prefix + N, E) token sequence → (B, E, H/p, W/p) map of its patch tokens."""
        return (
            tokens[:, self.num_prefix_tokens :].transpose(1, 2).reshape(tokens.shape[0], -1, *self.grid_size)
        )

    def forward_intermediates(self, *args, **kwargs):  # type: ignore[override]
        """Not available for 5D input: use forward_layers."""
        raise ModelConfigError("ViT3dEncoder takes (B, C, D, H, W) blocks: use forward_layers(x, layers)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """All tokens after the final norm, (B, 1+N, E) (the class token first)."""
        return self.forward_features(x)


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))
