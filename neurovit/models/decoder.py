"""Compatibility module: the UNETR-style decoder and its helpers now live in ``neurovit.models.decoders``."""

from neurovit.models.decoders import (
    ConvBlock,
    TokenUp,
    UnetrDecoder2d,
    UpBlock,
    default_feature_layers,
    upsample_factors,
)

__all__ = ["ConvBlock", "TokenUp", "UnetrDecoder2d", "UpBlock", "default_feature_layers", "upsample_factors"]
