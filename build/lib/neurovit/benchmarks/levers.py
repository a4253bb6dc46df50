"""Benchmark: the inference speed levers one at a time, forward passes of blocks (ms per block).

Baseline: the network in fp32, eager PyTorch, windows batched ×`--batch`. Each lever changes one thing:
batch 1 (what the naive loop does), channels-last memory format in the convolutional decoder, bf16
autocast, timm's eager attention instead of fused scaled-dot-product attention (SDPA), and, with
`--compile`, torch.compile (compilation time printed separately). Rounds are interleaved and the median
counts, so slow drifts of a shared machine hit every row alike. A lever is kept where it is > 1x here.

    python -m neurovit.benchmarks.levers [--ckpt demo_out/allslices/checkpoints/last.ckpt] [--arch ...]
        [--device cpu|cuda] [--batch 32] [--rounds 3] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn

from neurovit.benchmarks.common import bench_model, synchronize


def channels_last(net: nn.Module) -> nn.Module:
    """A copy whose convolutional decoder has channels-last weights (PyTorch then runs its convolutions, and
    passes on their outputs, in channels-last format)."""
    net = copy.deepcopy(net)
    net.decoder.to(memory_format=torch.channels_last)
    return net


def eager_attention(net: nn.Module) -> nn.Module:
    """A copy with timm's eager attention (softmax(QKᵀ)V) instead of fused SDPA."""
    net = copy.deepcopy(net)
    for blk in net.encoder.blocks:
        blk.attn.fused_attn = False
    return net


def ms_per_block(fn, x: torch.Tensor, blocks: int, autocast: torch.dtype | None = None) -> float:
    """Wall time per block of forward passes over about `blocks` blocks (after one warm-up pass)."""
    device = x.device
    with torch.inference_mode(), torch.autocast(device.type, dtype=autocast or torch.float32,
                                                enabled=autocast is not None):
        fn(x)
        synchronize(device)
        t0 = time.perf_counter()
        n = 0
        while n < blocks:
            fn(x)
            n += len(x)
        synchronize(device)
    return (time.perf_counter() - t0) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="demo_out/allslices/checkpoints/last.ckpt")
    ap.add_argument("--arch", default="neurovit_tiny_patch16", help="untrained network when --ckpt is missing")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--blocks", type=int, default=64, help="blocks per timing")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="add torch.compile (slow to compile on CPU)")
    args = ap.parse_args()
    device = torch.device(args.device)
    net, what, _ = bench_model(args.ckpt, args.arch, device=device)
    d, s = net.block_depth, net.img_size
    x = torch.randn(args.batch, 1, d, s, s, device=device)
    x1 = x[:1]
    print(f"{what}; {d}x{s}x{s} blocks; device {device}; torch threads {torch.get_num_threads()}")
    rows: dict[str, tuple] = {
        f"fp32 eager, batch {args.batch} (baseline)": (net, x, None),
        "batch 1": (net, x1, None),
        "channels-last decoder": (channels_last(net), x, None),
        "bf16 autocast": (net, x, torch.bfloat16),
        "eager attention (no SDPA)": (eager_attention(net), x, None),
    }
    if args.compile:
        compiled = torch.compile(net)
        t0 = time.perf_counter()
        with torch.inference_mode():
            compiled(x)
        print(f"torch.compile: {time.perf_counter() - t0:.0f} s to compile")
        rows["torch.compile"] = (compiled, x, None)
    times: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(args.rounds):
        for label, (fn, inp, ac) in rows.items():
            times[label].append(ms_per_block(fn, inp, args.blocks if len(inp) > 1 else max(args.blocks // 4, 1), ac))
    base = float(np.median(times[next(iter(rows))]))
    print(f"\n{'lever':<36}{'ms/block':>10}{'vs baseline':>13}")
    for label, ts in times.items():
        m = float(np.median(ts))
        print(f"{label:<36}{m:>10.2f}{base / m:>12.2f}x")


if __name__ == "__main__":
    main()
