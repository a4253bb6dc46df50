"""Parameter count and forward FLOPs per block of each SliceViT configuration and decoder (CPU, a few seconds).

    python -m neurovit.benchmarks.model_stats [--depth 5] [--size 100] [--archs tiny small base]
                                              [--decoders unetr light]

FLOPs come from torch.utils.flop_counter.FlopCounterMode (2 per multiply-add; convolutions, matmuls and
attention; norms and activations are not counted) for one (1, 1, D, H, W) block, traced on the meta device
(shapes only, so the numbers are exact and the script is fast on a busy CPU). timm's fused attention is switched
off while counting so that the attention matmuls are seen as matmuls.

Per output voxel: the block's FLOPs ÷ the voxels it predicts (H·W for the centre slice, D·H·W for
out_slices="all"; the cropped size, not the padded one). Per volume voxel: ÷ the voxels whole-volume inference
advances per block (H·W centre; (D//2 + 1)·H·W for "all" with the default z_stride), in-plane overlap aside.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from neurovit.models import DECODERS, TINY_ARCH, SliceViT

ARCH_NAMES = {"tiny": TINY_ARCH, "small": "vit_small_patch16_224", "base": "vit_base_patch16_224"}


def configs(archs: list[str], decoders: list[str] | None = None) -> list[tuple[str, dict]]:
    """(label, SliceViT kwargs): 3D centre, 3D all-slices and 2D per size and decoder, plus the patch-size
    choices for 100 px blocks (ViT-S)."""
    out = []
    for a in archs:
        for dec in decoders or ["unetr"]:
            base = {"arch": ARCH_NAMES[a], "decoder": dec}
            out += [
                (f"{a} 3d", base),
                (f"{a} 3d all", {**base, "out_slices": "all"}),
                (f"{a} 2d", {**base, "mode": "2d"}),
            ]
            if a == "small":
                out += [(f"{a} 3d p{p}", {**base, "patch_size": p}) for p in (10, 8, 20)]
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


def output_slices(model: SliceViT) -> int:
    """Slices a block's forward pass predicts: 1 (centre) or D (out_slices="all")."""
    return model.block_depth if model.out_slices == "all" else 1


def block_stride(model: SliceViT) -> int:
    """Slices whole-volume inference advances per block: 1 (centre) or D//2 + 1 (all, the default z_stride)."""
    return model.block_depth // 2 + 1 if model.out_slices == "all" else 1


def model_stats(depth: int = 5, size: int = 100, **kwargs) -> dict[str, float]:
    """Params and FLOPs of SliceViT(block_depth=depth, img_size=size, **kwargs), built on the meta device:
    keys enc_params, dec_params, enc_flops, dec_flops, flops, out_voxels, flops_per_voxel (total per output
    voxel), dec_flops_per_voxel, flops_per_volume_voxel; plus the model itself under "model"."""
    with torch.device("meta"):  # no weight init either: parameters are shapes only
        model = SliceViT(block_depth=depth, img_size=size, **kwargs).eval()
    enc_flops, total = count_flops(model, torch.zeros(1, model.in_chans, depth, size, size))
    out_voxels = output_slices(model) * size * size
    return {
        "model": model,
        "enc_params": sum(p.numel() for p in model.encoder.parameters()),
        "dec_params": sum(p.numel() for p in model.decoder.parameters()),
        "enc_flops": enc_flops,
        "dec_flops": total - enc_flops,
        "flops": total,
        "out_voxels": out_voxels,
        "flops_per_voxel": total / out_voxels,
        "dec_flops_per_voxel": (total - enc_flops) / out_voxels,
        "flops_per_volume_voxel": total / (block_stride(model) * size * size),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=5, help="block depth D (slices)")
    parser.add_argument("--size", type=int, default=100, help="block side H = W in pixels")
    parser.add_argument("--archs", nargs="+", default=list(ARCH_NAMES), choices=list(ARCH_NAMES))
    parser.add_argument("--decoders", nargs="+", default=list(DECODERS), choices=list(DECODERS))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    header = (
        f"{'config':<14}{'decoder':>8}{'patch':>6}{'padded':>7}{'tokens':>7}{'enc Mparam':>11}{'dec Mparam':>11}"
        f"{'enc GFLOP':>10}{'dec GFLOP':>10}{'GFLOP':>8}{'kFLOP/out-vox':>14}{'dec kFLOP/out-vox':>18}"
        f"{'kFLOP/vol-vox':>14}"
    )
    print(f"SliceViT per {args.depth}x{args.size}x{args.size} block (forward, batch 1)")
    print(header)
    print("-" * len(header))
    t0 = time.perf_counter()
    rows: dict[tuple[str, str], dict] = {}
    for label, kwargs in configs(args.archs, args.decoders):
        s = rows[label, kwargs["decoder"]] = model_stats(args.depth, args.size, **kwargs)
        model = s["model"]
        gh, gw = model.encoder.grid_size
        print(
            f"{label:<14}{kwargs['decoder']:>8}{model.patch_size:>6}{model.padded_size:>7}{f'{gh}x{gw}':>7}"
            f"{s['enc_params'] / 1e6:>11.2f}{s['dec_params'] / 1e6:>11.2f}{s['enc_flops'] / 1e9:>10.3f}"
            f"{s['dec_flops'] / 1e9:>10.3f}{s['flops'] / 1e9:>8.3f}{s['flops_per_voxel'] / 1e3:>14.1f}"
            f"{s['dec_flops_per_voxel'] / 1e3:>18.1f}{s['flops_per_volume_voxel'] / 1e3:>14.1f}"
        )
    others = [d for d in args.decoders if d != "unetr"]
    if "unetr" in args.decoders and others:
        print("\nunetr ÷ decoder, FLOPs per output voxel (decoder alone / whole model)")
        for label, dec in rows:
            if dec == "unetr":
                continue
            ref, s = rows[label, "unetr"], rows[label, dec]
            print(
                f"{label:<14}{dec:>8}{ref['dec_flops'] / s['dec_flops']:>8.1f}x"
                f"{ref['flops'] / s['flops']:>8.2f}x"
            )
    print(
        f"({time.perf_counter() - t0:.1f} s; p16 pads {args.size} px to the next multiple of 16 and crops the logits;"
        " pN resamples the 16x16 kernel to NxN; out-vox: voxels a block predicts, vol-vox: voxels per block in"
        " whole-volume inference)"
    )


if __name__ == "__main__":
    main()
