"""2D→3D weight transfer: pure functions from a timm-named 2D ViT state dict to a ViT3dEncoder.

Strategies for the block-embedding kernel W3d (E, C, D, p, p) from the 2D kernel W2d (E, C, p, p):
  average: W3d[:, :, d] = W2d / D for every d (I3D inflation: a depth-constant block gives the 2D tokens);
  center:  W3d[:, :, D//2] = W2d, zeros elsewhere (the centre slice alone gives the 2D tokens);
  scratch: nothing is copied; the model keeps its own random init.
Everything else (cls token, position embedding resampled to the 3D token grid, blocks, final norm) is copied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from timm.layers import resample_abs_pos_embed, resample_patch_embed
from torch import nn

from neurovit.errors import WeightsError
from neurovit.models.archs import ModelConfigError
from neurovit.models.vit3d import ViT3dEncoder

Strategy = Literal["average", "center", "scratch"]
STRATEGIES: tuple[str, ...] = ("average", "center", "scratch")

# 2D-only parts of a classifier / DINO checkpoint that the encoder does not have
HEAD_PREFIXES: tuple[str, ...] = ("head.", "head_dist.", "fc_norm.", "pre_logits.", "attn_pool.")
_MAX_LISTED = 12


@dataclass
class TransferReport:
    """What transfer_2d_to_3d did: keys copied, keys resampled (with shapes), 2D-only keys dropped."""

    strategy: str
    source: str = "state dict"
    copied: list[str] = field(default_factory=list)
    resampled: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        """One line for logs (also str(report))."""
        if self.strategy == "scratch":
            return "init 'scratch': no weights transferred (random init)"
        extra = "; ".join(f"{k} {v}" for k, v in self.resampled.items())
        return (
            f"init {self.strategy!r} from {self.source}: {len(self.copied)} tensors copied"
            + (f"; resampled {extra}" if extra else "")
            + (f"; dropped {len(self.dropped)} 2D-only keys" if self.dropped else "")
        )


def collapse_rgb(w2d: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt a (E, I, p, p) kernel to ``in_chans`` inputs: C = I keeps W; otherwise W_c = (Σ_i W_i) / C.

    C = 1 is the RGB→grey sum: a grey image x replicated to RGB gives Σ_i W_i * x, the same response.
    For other C every channel gets the mean share, so a grey block replicated to C channels also matches.
    """
    if w2d.ndim != 4:
        raise ModelConfigError(f"expected a 2D patch kernel (E, I, p, p), got shape {tuple(w2d.shape)}")
    if in_chans == w2d.shape[1]:
        return w2d
    grey = w2d.sum(dim=1, keepdim=True)
    return (grey / in_chans).repeat(1, in_chans, 1, 1)


def inflate_patch_kernel(w2d: torch.Tensor, depth: int, strategy: Strategy) -> torch.Tensor:
    """(E, C, p, p) → (E, C, D, p, p): average W[:, :, d] = W2d / D ∀d; center W[:, :, D//2] = W2d, else 0."""
    if w2d.ndim != 4:
        raise ModelConfigError(f"expected a 2D patch kernel (E, C, p, p), got shape {tuple(w2d.shape)}")
    if depth < 1:
        raise ModelConfigError(f"block depth must be >= 1, got {depth}")
    if strategy == "average":
        return w2d.unsqueeze(2).repeat(1, 1, depth, 1, 1) / depth
    if strategy == "center":
        w3d = w2d.new_zeros(w2d.shape[0], w2d.shape[1], depth, *w2d.shape[2:])
        w3d[:, :, depth // 2] = w2d
        return w3d
    raise ModelConfigError(f"cannot inflate a kernel with strategy {strategy!r}; use 'average' or 'center'")


def resample_pos_embed(pos: torch.Tensor, grid: tuple[int, int], num_prefix_tokens: int = 1) -> torch.Tensor:
    """Resample a (1, prefix + g², E) position embedding to a (gh, gw) grid (bicubic, antialiased; timm's)."""
    n = pos.shape[1] - num_prefix_tokens
    g = math.isqrt(n)
    if g * g != n:
        raise WeightsError(f"position embedding of shape {tuple(pos.shape)} is not a square token grid")
    return resample_abs_pos_embed(
        pos, new_size=list(grid), old_size=[g, g], num_prefix_tokens=num_prefix_tokens
    )


def _encoder_of(model: nn.Module) -> ViT3dEncoder:
    enc = model if isinstance(model, ViT3dEncoder) else getattr(model, "encoder", None)
    if not isinstance(enc, ViT3dEncoder):
        raise ModelConfigError(
            f"expected a ViT3dEncoder or a model with an .encoder, got {type(model).__name__}: 2D ViT weights "
            "(init strategy center/average) go into a ViT encoder only; use init strategy 'scratch'"
        )
    return enc


def _listed(keys: set[str] | list[str]) -> str:
    keys = sorted(keys)
    more = f" … (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def map_2d_to_3d(
    encoder: ViT3dEncoder,
    state_dict_2d: Mapping[str, torch.Tensor],
    strategy: Strategy,
    source: str = "state dict",
) -> tuple[dict[str, torch.Tensor], TransferReport]:
    """The encoder's new state dict from 2D weights, and the report; raises WeightsError on any key mismatch."""
    report = TransferReport(strategy=strategy, source=source)
    target = encoder.state_dict()
    sd: dict[str, torch.Tensor] = {}
    for k, v in state_dict_2d.items():
        if k.startswith(HEAD_PREFIXES) and k not in target:
            report.dropped.append(k)
        else:
            sd[k] = v
    missing, unexpected = set(target) - set(sd), set(sd) - set(target)
    if missing or unexpected:
        parts = [f"missing keys ({len(missing)}): {_listed(missing)}"] if missing else []
        parts += [f"unexpected keys ({len(unexpected)}): {_listed(unexpected)}"] if unexpected else []
        raise WeightsError(f"{source} does not match the ViT encoder: " + "; ".join(parts))

    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        v = v.detach().to(dtype=target[k].dtype)
        if k == "patch_embed.proj.weight":
            if v.ndim != 4:
                raise WeightsError(
                    f"{source}: {k} has shape {tuple(v.shape)}; expected a 2D kernel (E, I, p, p)"
                )
            p = tuple(target[k].shape[-2:])
            if tuple(v.shape[-2:]) != p:
                report.resampled[k] = f"{tuple(v.shape[-2:])} → {p}"
                v = resample_patch_embed(v, list(p))
            v = inflate_patch_kernel(collapse_rgb(v, target[k].shape[1]), target[k].shape[2], strategy)
        elif k == "pos_embed" and v.shape != target[k].shape:
            old = tuple(v.shape)
            v = resample_pos_embed(v, encoder.grid_size, encoder.num_prefix_tokens)
            report.resampled[k] = f"{old} → {tuple(v.shape)}"
        if v.shape != target[k].shape:
            raise WeightsError(
                f"{source}: shape mismatch for {k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
                " (is the checkpoint for a different model size?)"
            )
        out[k] = v
        report.copied.append(k)
    return out, report


def transfer_2d_to_3d(
    model3d: nn.Module,
    state_dict_2d: Mapping[str, torch.Tensor] | None,
    strategy: Strategy = "center",
    source: str = "state dict",
) -> TransferReport:
    """Initialise a ViT3dEncoder (or a model's ``.encoder``) from timm-named 2D ViT weights, in place."""
    if strategy not in STRATEGIES:
        raise ModelConfigError(f"unknown init strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if strategy == "scratch":  # nothing to copy: any network (e.g. the UNet3d baseline) keeps its init
        return TransferReport(strategy=strategy, source=source)
    encoder = _encoder_of(model3d)
    if state_dict_2d is None:
        raise ModelConfigError(f"init {strategy!r} needs a 2D state dict; got None")
    new_sd, report = map_2d_to_3d(encoder, state_dict_2d, strategy, source)
    encoder.load_state_dict(new_sd, strict=True)
    return report
