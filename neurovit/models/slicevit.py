"""SliceViT: segment the centre slice of a (B, C, D, H, W) block with a 3D-block ViT and a chosen decoder."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from neurovit.models.archs import ModelConfigError, resolve_arch
from neurovit.models.decoders import DecoderSpec, build_decoder
from neurovit.models.pretrained import load_2d_state_dict
from neurovit.models.transfer import STRATEGIES, Strategy, TransferReport, transfer_2d_to_3d
from neurovit.models.vit3d import ViT3dEncoder


class SliceViT(nn.Module):
    """Block (B, C, D, H, W) float → centre-slice logits (B, 1, H, W), or (B, 1, D, H, W) if out_slices="all".

    Block side vs patch size (100 is not a multiple of 16): by default H and W are zero-padded symmetrically
    to the next multiple of p and the logits cropped back (100 → 112, 7×7 tokens; pad_mode="reflect" mirrors
    instead). ``patch_size`` overrides p; the pretrained p×p kernel is then resampled with timm's
    resample_patch_embed (p = 10 tiles 100 exactly with 10×10 tokens, p = 20 gives 5×5). The 2D position
    embedding is resampled (bicubic) to the token grid either way.
    mode="2d" is the 2D-ViT baseline: the same model on the centre slice alone (an encoder of block depth 1).
    Pretrained 2D weights (``pretrained``: timm ``name.tag`` or a checkpoint file) are loaded and transferred
    in the constructor with strategy ``init``, so missing weights fail before any training.
    ``decoder`` names a decoder of ``neurovit.models.decoders.DECODERS`` ("unetr", the UNETR-style default;
    "light", 1/10–1/14 of unetr's decoder FLOPs per output voxel for ViT-S and tiny, about 1/4 for all
    slices) or a decoder class's dotted import path; ``decoder_args`` are its keyword arguments (e.g.
    {"width": 32}). ``feature_size`` (unetr's width, default 16) and ``feature_layers`` (the encoder blocks
    the decoder reads) stay top-level arguments.
    """

    def __init__(
        self,
        arch: str = "vit_small_patch16_224",
        block_depth: int = 5,
        img_size: int = 100,
        in_chans: int = 1,
        patch_size: int | None = None,
        mode: Literal["3d", "2d"] = "3d",
        out_slices: Literal["center", "all"] = "center",
        pretrained: str | None = None,
        init: Strategy = "scratch",
        pretrained_key: Literal["teacher", "student"] = "teacher",
        pad_mode: Literal["constant", "reflect"] = "constant",
        feature_size: int | None = None,
        feature_layers: list[int] | None = None,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        drop_path_rate: float = 0.0,
        decoder: str = "unetr",
        decoder_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _, spec = resolve_arch(arch)
        if (
            mode not in ("3d", "2d")
            or out_slices not in ("center", "all")
            or pad_mode not in ("constant", "reflect")
        ):
            raise ModelConfigError(
                f"bad option: mode={mode!r}, out_slices={out_slices!r}, pad_mode={pad_mode!r}"
            )
        if mode == "2d" and out_slices == "all":
            raise ModelConfigError(
                "out_slices='all' needs mode='3d' (the 2D baseline sees only the centre slice)"
            )
        if block_depth < 1 or img_size < 1 or in_chans < 1:
            raise ModelConfigError(
                f"block_depth, img_size and in_chans must be >= 1, got {block_depth}, {img_size}, {in_chans}"
            )
        # load before building anything, so that missing weights fail fast
        state_dict_2d = self._load_2d(pretrained, init, pretrained_key)
        self.arch, self.mode, self.out_slices, self.pad_mode = arch, mode, out_slices, pad_mode
        self.block_depth, self.img_size, self.in_chans = block_depth, img_size, in_chans
        self.patch_size = p = patch_size or spec.patch_size
        self.padded_size = math.ceil(img_size / p) * p
        enc_depth = 1 if mode == "2d" else block_depth
        self.encoder = ViT3dEncoder(
            img_size=self.padded_size,
            block_depth=enc_depth,
            in_chans=in_chans,
            patch_size=p,
            embed_dim=embed_dim or spec.embed_dim,
            depth=depth or spec.depth,
            num_heads=num_heads or spec.num_heads,
            drop_path_rate=drop_path_rate,
        )
        self.decoder_name = decoder
        self.decoder = build_decoder(
            decoder,
            DecoderSpec(
                embed_dim=self.encoder.embed_dim,
                grid_size=tuple(self.encoder.grid_size),
                patch_size=p,
                num_layers=len(self.encoder.blocks),
                in_chans=in_chans,
                in_slices=enc_depth,
                out_slices=block_depth if out_slices == "all" else 1,
            ),
            self._decoder_args(decoder, decoder_args, feature_size, feature_layers),
        )
        self.feature_layers: list[int] = list(self.decoder.feature_layers)
        self.transfer_report: TransferReport = transfer_2d_to_3d(
            self.encoder, state_dict_2d, init, source=str(pretrained)
        )

    @staticmethod
    def _load_2d(
        pretrained: str | None, init: str, pretrained_key: Literal["teacher", "student"]
    ) -> dict[str, torch.Tensor] | None:
        """The 2D state dict that strategy ``init`` needs (None for scratch, which never reads ``pretrained``)."""
        if init not in STRATEGIES:
            raise ModelConfigError(f"unknown init strategy {init!r}; use one of {', '.join(STRATEGIES)}")
        if init == "scratch":
            return None
        if not pretrained:
            raise ModelConfigError(
                f"init={init!r} transfers 2D weights: set pretrained to a timm name (e.g. "
                "'vit_small_patch16_224.dino') or a checkpoint file, or use init='scratch'"
            )
        return load_2d_state_dict(pretrained, which=pretrained_key)

    @staticmethod
    def _decoder_args(
        decoder: str, args: dict[str, Any] | None, feature_size: int | None, feature_layers: list[int] | None
    ) -> dict[str, Any]:
        """decoder_args plus the top-level feature_size (unetr only) and feature_layers; conflicts raise."""
        out = dict(args or {})
        for name, value in (("feature_size", feature_size), ("feature_layers", feature_layers)):
            if value is None or (name == "feature_layers" and not value):
                continue
            if name == "feature_size" and decoder != "unetr":
                raise ModelConfigError(
                    f"feature_size is the unetr decoder's width; decoder {decoder!r} takes its widths from "
                    "decoder_args (e.g. decoder_args={'width': 16})"
                )
            if name in out:
                raise ModelConfigError(f"{name} is given both as an argument and in decoder_args")
            out[name] = list(value) if name == "feature_layers" else value
        return out

    @property
    def _pads(self) -> tuple[int, int]:
        total = self.padded_size - self.img_size
        return total // 2, total - total // 2

    def pad_block(self, x: torch.Tensor) -> torch.Tensor:
        """Pad (B, C, D, H, W) to H = W = padded_size (symmetric; zeros or mirror); the 2D mode keeps slice D//2 only."""
        expected = (self.in_chans, self.block_depth, self.img_size, self.img_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ModelConfigError(
                f"SliceViT expects blocks (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        if self.mode == "2d":
            c = self.block_depth // 2
            x = x[:, :, c : c + 1]
        lo, hi = self._pads
        if lo == hi == 0:
            return x
        b, c, d, h, w = x.shape
        return F.pad(x.reshape(b, c * d, h, w), (lo, hi, lo, hi), mode=self.pad_mode).reshape(
            b, c, d, h + lo + hi, w + lo + hi
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: (B, 1, H, W) for the centre slice, or (B, 1, D, H, W) for out_slices="all"."""
        xp = self.pad_block(x)
        final, tokens = self.encoder.forward_layers(xp, self.feature_layers)
        # bottleneck: the deepest layer after the final norm (as in UNETR)
        tokens[-1] = self.encoder.to_map(final)
        logits = self.decoder(tokens, xp.flatten(1, 2))
        lo, _ = self._pads
        logits = logits[..., lo : lo + self.img_size, lo : lo + self.img_size]
        return logits.unsqueeze(1) if self.out_slices == "all" else logits
