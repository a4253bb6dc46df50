"""Parameter count and forward FLOPs per block of each SliceViT configuration (CPU, a few seconds).

    python -m neurovit.benchmarks.model_stats [--depth 5] [--size 100] [--archs tiny small base]

FLOPs come from torch.utils.flop_counter.FlopCounterMode (2 per multiply-add; convolutions, matmuls and
attention; norms and activations are not counted) for one (1, 1, D, H, W) block, traced on the meta device
(shapes only, so the numbers are exact and the script is fast on a busy CPU). timm's fused attention is switched
off while counting so that the attention matmuls are seen as matmuls.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from neurovit.models import TINY_ARCH, SliceViT

ARCH_NAMES = {"tiny": TINY_ARCH, "small": "vit_small_patch16_224", "base": "vit_base_patch16_224"}


def configs(archs: list[str]) -> list[tuple[str, dict]]:
    """(label, SliceViT kwargs): 3D and 2D per size, plus the patch-size choices for 100 px blocks."""
    out = []
    for a in archs:
        out += [(f"{a} 3d", {"arch": ARCH_NAMES[a]}), (f"{a} 2d", {"arch": ARCH_NAMES[a], "mode": "2d"})]
        if a == "small":
            out += [(f"{a} 3d p{p}", {"arch": ARCH_NAMES[a], "patch_size": p}) for p in (10, 8, 20)]
    return out


def count_flops(model: SliceViT, x: torch.Tensor) -> tuple[int, int]:
    """(encoder FLOPs, total FLOPs) of one forward pass of a model on the meta device."""
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False  # explicit q·kᵀ and attn·v matmuls, which FlopCounterMode counts on CPU
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x.to("meta"))  # shapes are all FLOPs depend on: no arithmetic on the meta device
    total = counter.get_total_flops()
    decoder = sum(counter.get_flop_counts().get("SliceViT.decoder", {}).values())
    return total - decoder, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=5, help="block depth D (slices)")
    parser.add_argument("--size", type=int, default=100, help="block side H = W in pixels")
    parser.add_argument("--archs", nargs="+", default=list(ARCH_NAMES), choices=list(ARCH_NAMES))
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(1, 1, args.depth, args.size, args.size)
    header = (
        f"{'config':<16}{'patch':>6}{'padded':>8}{'tokens':>8}{'enc Mparam':>12}{'dec Mparam':>12}"
        f"{'enc GFLOP':>11}{'dec GFLOP':>11}{'GFLOP':>9}"
    )
    print(f"SliceViT per {args.depth}x{args.size}x{args.size} block (forward, batch 1)")
    print(header)
    print("-" * len(header))
    t0 = time.perf_counter()
    for label, kwargs in configs(args.archs):
        with torch.device("meta"):  # no weight init either: parameters are shapes only
            model = SliceViT(block_depth=args.depth, img_size=args.size, **kwargs).eval()
        enc_params = sum(p.numel() for p in model.encoder.parameters())
        dec_params = sum(p.numel() for p in model.decoder.parameters())
        enc_flops, total = count_flops(model, x)
        gh, gw = model.encoder.grid_size
        print(
            f"{label:<16}{model.patch_size:>6}{model.padded_size:>8}{f'{gh}x{gw}':>8}{enc_params / 1e6:>12.2f}"
            f"{dec_params / 1e6:>12.2f}{enc_flops / 1e9:>11.3f}{(total - enc_flops) / 1e9:>11.3f}{total / 1e9:>9.3f}"
        )
    print(
        f"({time.perf_counter() - t0:.1f} s; p16 pads {args.size} px to the next multiple of 16 and crops the logits;"
        " pN resamples the 16x16 kernel to NxN)"
    )


if __name__ == "__main__":
    main()
