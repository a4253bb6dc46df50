"""Benchmark: stack → mask throughput of whole-volume prediction per decoder, with model-FLOPs utilisation.

For each (decoder, out_slices) row an untrained SliceViT of `--arch` (weights do not change the work)
predicts a random uint16 stack of `--shape` with `predict_volume` (normalised chunk by chunk on the
host, sliding windows batched ×`--batch`, `neurovit predict`'s defaults otherwise), and the mask is
thresholded. Reported: voxels/s of stack → mask, forward FLOPs per output voxel (torch's FLOP counter on
one block), achieved FLOP/s and MFU against a peak measured in the same run (a large matrix product in
the same precision: fp32 on CPU, bf16 on GPU with `--bf16`). The first row is the baseline of the ratios.

    python -m neurovit.benchmarks.throughput                     # CPU, tiny, fp32
    python -m neurovit.benchmarks.throughput --device cuda --bf16 --compile --shape 128 2048 2048
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """FLOP/s of an n×n×n matrix product (median of 5 after a warm-up): the machine's practical peak."""
    from neurovit.benchmarks.common import synchronize

    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    synchronize(device)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / float(np.median(times))


def block_flops(net, depth: int, size: int) -> tuple[float, int]:
    """(forward FLOPs of one block, output voxels it predicts)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 1, depth, size, size, device=next(net.parameters()).device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        y = net(x)
    return float(counter.get_total_flops()), int(np.prod(y.shape[-3:] if y.ndim == 5 else y.shape[-2:]))


@torch.no_grad()  # not torch.set_grad_enabled(False): that would leak into the caller (the tests)
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="neurovit_tiny_patch16")
    ap.add_argument("--decoders", nargs="+", default=["unetr", "light"])
    ap.add_argument("--out-slices", nargs="+", default=["center", "all"])
    ap.add_argument("--shape", nargs=3, type=int, default=(16, 512, 512))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--repeats", type=int, default=2, help="timed passes per row (median); one warm-up first")
    args = ap.parse_args(argv)

    from neurovit.benchmarks.common import synchronize
    from neurovit.inference import predict_volume
    from neurovit.models import SliceViT

    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    peak = matmul_peak(device, dtype, 8192 if device.type == "cuda" else 2048)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{where}; {'bf16' if args.bf16 else 'fp32'}{', compiled' if args.compile else ''}; stack "
          f"{tuple(args.shape)} uint16; batch {args.batch}; overlap {args.overlap}; matmul peak "
          f"{peak / 1e12:.1f} TFLOP/s")
    rng = np.random.default_rng(0)
    vol = rng.integers(90, 400, size=tuple(args.shape), dtype=np.uint16)
    lo, scale = 90.0, 310.0

    def normalise(x):
        return (np.asarray(x, np.float32) - lo) / scale

    n_vox = vol.size
    head = f"{'decoder':<8}{'slices':<8}{'GFLOP/block':>12}{'kFLOP/voxel':>12}{'Mvoxel/s':>10}{'vs first':>9}{'MFU':>7}"
    print(head)
    first = None
    for dec in args.decoders:
        for out in args.out_slices:
            torch.manual_seed(0)
            net = SliceViT(arch=args.arch, out_slices=out, decoder=dec).eval().to(device)
            flops, per_block = block_flops(net, net.block_depth, net.img_size)
            run = torch.compile(net) if args.compile else net
            out_arr = np.empty(vol.shape, np.float32)

            def once(arr=out_arr, model=run, depth=net.block_depth, size=net.img_size):
                predict_volume(model, vol, block_depth=depth, roi_size=size, overlap=args.overlap,
                               sw_batch_size=args.batch, z_chunk=8, normalise=normalise, out=arr, device=device,
                               autocast=torch.bfloat16 if args.bf16 else None)
                synchronize(device)
                return arr > 0.5

            once()  # warm-up (and compilation)
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                once()
                times.append(time.perf_counter() - t0)
            t = float(np.median(times))
            rate = n_vox / t
            # work actually done: blocks run × FLOPs per block (windows overlap; all-slices blocks are strided)
            achieved = rate * flops / per_block * _work_factor(vol.shape, net, args.overlap)
            first = first or rate
            print(f"{dec:<8}{out:<8}{flops / 1e9:>12.2f}{flops / per_block / 1e3:>12.1f}{rate / 1e6:>10.3g}"
                  f"{rate / first:>8.2f}x{achieved / peak:>7.1%}")


def _work_factor(shape, net, overlap: float) -> float:
    """Output voxels computed by the forward passes per voxel of the stack (window overlap, z stride)."""
    from monai.inferers.utils import _get_scan_interval, dense_patch_slices

    roi = (net.img_size, net.img_size)
    interval = _get_scan_interval(tuple(shape[1:]), roi, 2, (overlap, overlap))
    windows = len(dense_patch_slices(tuple(shape[1:]), roi, interval))
    plane = windows * roi[0] * roi[1] / (shape[1] * shape[2])
    if getattr(net, "out_slices", "center") == "all":
        stride = net.block_depth // 2 + 1
        return plane * net.block_depth / stride
    return plane


if __name__ == "__main__":
    main()
