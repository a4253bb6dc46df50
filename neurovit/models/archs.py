"""Model sizes by timm name (an optional ``.tag`` such as ``.dino`` names pretrained weights) plus a tiny CPU size."""

from __future__ import annotations

from dataclasses import dataclass

from timm.models.vision_transformer import VisionTransformer

from neurovit.errors import NeurovitError

TINY_ARCH = "neurovit_tiny_patch16"


class ModelConfigError(NeurovitError, ValueError):
    """A model configuration or input that cannot work (unknown arch, bad block shape, bad strategy, ...)."""


@dataclass(frozen=True)
class ArchSpec:
    """Transformer size of a ViT: patch size p, token width E, number of blocks and attention heads."""

    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int


ARCHS: dict[str, ArchSpec] = {
    # neurovit's own size for CPU tests and demos (not a timm name; no pretrained weights exist)
    TINY_ARCH: ArchSpec(patch_size=16, embed_dim=96, depth=4, num_heads=3),
    "vit_tiny_patch16_224": ArchSpec(patch_size=16, embed_dim=192, depth=12, num_heads=3),
    "vit_small_patch16_224": ArchSpec(patch_size=16, embed_dim=384, depth=12, num_heads=6),
    "vit_small_patch8_224": ArchSpec(patch_size=8, embed_dim=384, depth=12, num_heads=6),
    "vit_base_patch16_224": ArchSpec(patch_size=16, embed_dim=768, depth=12, num_heads=12),
    "vit_base_patch8_224": ArchSpec(patch_size=8, embed_dim=768, depth=12, num_heads=12),
}


def resolve_arch(arch: str) -> tuple[str, ArchSpec]:
    """Split ``name[.tag]`` and return (name, its ArchSpec); unknown names raise ModelConfigError."""
    name = arch.split(".", 1)[0]
    if name not in ARCHS:
        raise ModelConfigError(f"unknown arch {arch!r}; known: {', '.join(sorted(ARCHS))}")
    return name, ARCHS[name]


def build_vit2d(
    arch: str, img_size: int = 224, patch_size: int | None = None, in_chans: int = 3, *,
    dynamic_img_size: bool = False, drop_path_rate: float = 0.0,
) -> VisionTransformer:
    """A plain timm 2D VisionTransformer (no classifier head) of the given size, randomly initialised.

    ``dynamic_img_size`` lets it take inputs of other sizes (DINO's small local crops) by resampling the
    position embedding on the fly; the state dict is the same either way.
    """
    _, spec = resolve_arch(arch)
    return VisionTransformer(
        img_size=img_size,
        patch_size=patch_size or spec.patch_size,
        in_chans=in_chans,
        num_classes=0,
        embed_dim=spec.embed_dim,
        depth=spec.depth,
        num_heads=spec.num_heads,
        dynamic_img_size=dynamic_img_size,
        drop_path_rate=drop_path_rate,
    )
