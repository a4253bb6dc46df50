"""Benchmark: training throughput (blocks/s) of SliceViT sizes vs MONAI's UNETR, and DataModule throughput.

1. One training step = forward + Dice/BCE loss + backward + AdamW step on a batch of D × S × S blocks
   (default 5 × 100 × 100), same device and precision for every model. The baseline is MONAI's UNETR
   (2D, the D slices as input channels, S padded to a multiple of 16, ViT width/depth of the compared size).
2. DataModule: blocks/s that `NeuronDataModule` delivers (sampling + augmentation) with 0 and N workers,
   against the tiny model's training rate — the loader must not be the bottleneck.
On a GPU the model FLOPs utilisation (achieved FLOP/s ÷ the device's bf16 peak) is printed too.

    python -m neurovit.benchmarks.train [--sizes tiny small base] [--batch 8] [--steps 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from neurovit.benchmarks.common import synchronize
from neurovit.benchmarks.levers import eager_attention
from neurovit.models import SliceViT

SIZES = {"tiny": "neurovit_tiny_patch16", "small": "vit_small_patch16_224", "base": "vit_base_patch16_224"}
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 FLOP/s


def unetr_like(arch: str, depth: int, size: int) -> torch.nn.Module:
    """MONAI UNETR (2D) with the ViT width/depth/heads of `arch`, D slices as channels, centre-slice output."""
    from monai.networks.nets import UNETR

    from neurovit.models.archs import resolve_arch

    _, spec = resolve_arch(arch)
    padded = -(-size // 16) * 16
    net = UNETR(in_channels=depth, out_channels=1, img_size=(padded, padded), feature_size=16,
                hidden_size=spec.embed_dim, mlp_dim=4 * spec.embed_dim, num_heads=spec.num_heads, spatial_dims=2)
    net.num_layers = spec.depth

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.pad = net, padded - size

        def forward(self, x):  # (B, 1, D, S, S) → (B, 1, S, S)
            x = torch.nn.functional.pad(x[:, 0], (0, self.pad, 0, self.pad))
            return self.net(x)[..., :size, :size]

    return Wrapped()


def flops_per_block(net: torch.nn.Module, depth: int, size: int) -> float:
    """Forward FLOPs of one block (torch FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 1, depth, size, size, device=next(net.parameters()).device)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(x)
    return float(fc.get_total_flops())


def train_rate(net: torch.nn.Module, batch: int, depth: int, size: int, steps: int, device, precision: str) -> float:
    """Blocks per second of full training steps: batch ÷ the median step time (after one warm-up step)."""
    from monai.losses import DiceCELoss

    net = net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    x = torch.randn(batch, 1, depth, size, size, device=device)
    y = (torch.rand(batch, 1, size, size, device=device) > 0.97).float()
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step():
        with autocast:
            loss = loss_fn(net(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up: allocator, kernels, optimizer state
    times = []
    for _ in range(steps):
        synchronize(device)
        t0 = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return batch / float(np.median(times))


def data_rate(workers: int, batches: int, depth: int, size: int, batch: int) -> float:
    """Blocks per second from NeuronDataModule on a small synthetic dataset (made on the fly)."""
    import tempfile
    from pathlib import Path

    from neurovit.data.datamodule import NeuronDataModule
    from neurovit.data.synth import SynthConfig, synthesize_dataset

    with tempfile.TemporaryDirectory() as tmp:
        synthesize_dataset(Path(tmp) / "ds", SynthConfig(n_volumes=4, shape=(32, 128, 128), split=(1.0, 0, 0)),
                           progress=False)
        dm = NeuronDataModule(str(Path(tmp) / "ds"), block_depth=depth, block_size=size, batch_size=batch,
                              blocks_per_epoch=batch * batches, num_workers=workers)
        dm.setup("fit")
        loader = dm.train_dataloader()
        it = iter(loader)
        next(it)  # start workers
        t0 = time.perf_counter()
        n = sum(len(b["image"]) for b in it)
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["tiny", "small", "base"], choices=list(SIZES))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5, help="timed steps (the median counts)")
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default=None, help="default: bf16 on GPU, fp32 on CPU")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--unfused", nargs="*", default=["small"], choices=list(SIZES),
                    help="sizes also timed with eager (unfused) attention, to measure the SDPA lever")
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    print(f"device: {name}; precision {precision}; batch {args.batch} of {args.depth}x{args.size}x{args.size} "
          f"blocks; torch threads {torch.get_num_threads()}")
    print(f"\n1. training throughput\n{'model':<30}{'blocks/s':>10}{'GFLOP/blk':>11}{'vs UNETR':>10}"
          + ("{:>8}".format("MFU") if peak else ""))
    tiny_rate = None
    for size in args.sizes:
        arch = SIZES[size]
        rates = {}
        builds = [("SliceViT", lambda a=arch: SliceViT(arch=a, block_depth=args.depth, img_size=args.size)),
                  ("MONAI UNETR", lambda a=arch: unetr_like(a, args.depth, args.size))]
        if size in args.unfused:  # the fused-attention lever: the same SliceViT with timm's eager attention
            builds.insert(1, ("SliceViT eager-attn", lambda a=arch: eager_attention(
                SliceViT(arch=a, block_depth=args.depth, img_size=args.size))))
        for label, build in builds:
            torch.manual_seed(0)
            net = build()
            fl = flops_per_block(net.to(device), args.depth, args.size)
            rates[label] = (train_rate(net, args.batch, args.depth, args.size, args.steps, device, precision), fl)
            del net
        base_rate = rates["MONAI UNETR"][0]
        for label, (rate, fl) in rates.items():
            mfu = f"{3 * fl * rate / peak:8.1%}" if peak else ""
            print(f"{label + ' ' + size:<30}{rate:>10.2f}{fl / 1e9:>11.2f}{rate / base_rate:>9.2f}x{mfu}")
        if size == "tiny":
            tiny_rate = rates["SliceViT"][0]
    print("\n2. DataModule throughput (sampling + augmentation)")
    for w in sorted({0, args.workers}):
        r = data_rate(w, 8, args.depth, args.size, args.batch)
        extra = f" = {r / tiny_rate:.1f}x the tiny model's training rate" if tiny_rate else ""
        print(f"   {w} workers: {r:8.1f} blocks/s{extra}")


if __name__ == "__main__":
    main()
