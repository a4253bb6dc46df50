"""Models: the 3D-block ViT (SliceViT), 2D→3D weight transfer, pretrained 2D weight loading, the decoders."""

from neurovit.models.archs import ARCHS, TINY_ARCH, ArchSpec, ModelConfigError, build_vit2d, resolve_arch
from neurovit.models.decoders import (
    DECODERS,
    Decoder,
    DecoderSpec,
    LightDecoder,
    UnetrDecoder2d,
    build_decoder,
    register_decoder,
    upsample_factors,
)
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
from neurovit.models.unet3d import UNet3d
from neurovit.models.vit3d import BlockEmbed, ViT3dEncoder

__all__ = [
    "ARCHS",
    "DECODERS",
    "STRATEGIES",
    "TINY_ARCH",
    "ArchSpec",
    "BlockEmbed",
    "Decoder",
    "DecoderSpec",
    "LightDecoder",
    "ModelConfigError",
    "SliceViT",
    "Strategy",
    "TransferReport",
    "UNet3d",
    "UnetrDecoder2d",
    "ViT3dEncoder",
    "build_decoder",
    "build_vit2d",
    "collapse_rgb",
    "inflate_patch_kernel",
    "load_2d_state_dict",
    "load_checkpoint_file",
    "normalize_state_dict",
    "register_decoder",
    "resolve_arch",
    "transfer_2d_to_3d",
    "upsample_factors",
]
