"""Models: the 3D-block ViT (SliceViT), 2D→3D weight transfer, pretrained 2D weight loading, the decoder."""

from neurovit.models.archs import ARCHS, TINY_ARCH, ArchSpec, ModelConfigError, build_vit2d, resolve_arch
from neurovit.models.decoder import UnetrDecoder2d, upsample_factors
from neurovit.models.pretrained import load_2d_state_dict, load_checkpoint_file, normalize_state_dict
from neurovit.models.slicevit import SliceViT
from neurovit.models.transfer import (
    STRATEGIES,
    Strategy,
    TransferReport,
    collapse_rgb,
    inflate_patch_kernel,
    transfer_2d_to_3d,
)
from neurovit.models.vit3d import BlockEmbed, ViT3dEncoder

__all__ = [
    "ARCHS",
    "STRATEGIES",
    "TINY_ARCH",
    "ArchSpec",
    "BlockEmbed",
    "ModelConfigError",
    "SliceViT",
    "Strategy",
    "TransferReport",
    "UnetrDecoder2d",
    "ViT3dEncoder",
    "build_vit2d",
    "collapse_rgb",
    "inflate_patch_kernel",
    "load_2d_state_dict",
    "load_checkpoint_file",
    "normalize_state_dict",
    "resolve_arch",
    "transfer_2d_to_3d",
    "upsample_factors",
]
