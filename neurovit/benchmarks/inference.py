"""Benchmark: whole-volume inference (`predict_volume`) vs the paper's naive stacked loop, and peak memory.

1. Throughput (voxels/s) on a synthetic stack (default 64 × 512 × 512): the naive loop predicts every
   centre slice block by block (one block per forward pass, non-overlapping tiles) and stacks the
   results; `predict_volume` batches windows across slices (`--batch`) with overlap-blending. The naive
   loop is timed on the first `--naive-slices` slices and its per-slice rate extrapolated (it is the same
   work for every slice).
2. Agreement: Dice of both against the labels of the demo volumes (same model), which must stay within 0.01.
3. Peak memory (RSS growth, measured in a fresh process per size) of `neurovit predict`'s streamed path as
   the stack grows: it should follow the output size, not several float32 copies of the stack.

    python -m neurovit.benchmarks.inference [--ckpt demo_out/run/checkpoints/last.ckpt] [--shape 64 512 512]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from neurovit.inference import predict_volume, robust_normaliser, slice_blocks


@torch.inference_mode()
def naive_stacked_loop(net, volume: np.ndarray, depth: int, roi: int, normalise, n_slices: int | None = None):
    """The paper's procedure: for each slice z, each non-overlapping roi×roi tile of its centred block, one
    forward pass; returns the stacked probabilities of the first `n_slices` slices."""
    n_z, ny, nx = volume.shape
    n_slices = n_z if n_slices is None else min(n_slices, n_z)
    out = np.zeros((n_slices, ny, nx), dtype=np.float32)
    vol = torch.from_numpy(normalise(volume))
    for z in range(n_slices):
        block = slice_blocks(vol, z, z + 1, depth)[0]  # (D, Y, X)
        for y0 in range(0, ny, roi):
            for x0 in range(0, nx, roi):
                tile = torch.zeros(depth, roi, roi)
                part = block[:, y0:y0 + roi, x0:x0 + roi]
                tile[:, : part.shape[1], : part.shape[2]] = part
                prob = torch.sigmoid(net(tile[None, None]))[0, 0]
                out[z, y0:y0 + roi, x0:x0 + roi] = prob[: part.shape[1], : part.shape[2]].numpy()
    return out


def _model(ckpt: str | None, arch: str):
    if ckpt and Path(ckpt).is_file():
        from neurovit.predict import load_model

        m = load_model(ckpt, "cpu")
        return m.net, f"checkpoint {ckpt}"
    from neurovit.models import SliceViT

    torch.manual_seed(0)
    return SliceViT(arch=arch).eval(), f"untrained {arch} (no checkpoint; accuracy check skipped)"


def _memory_child(shape: tuple[int, int, int], ckpt: str | None, arch: str) -> None:
    """Runs in a fresh process: predict a stack of `shape` through the streamed path, print RSS growth."""
    import tempfile
    import threading

    import tifffile

    net, _ = _model(ckpt, arch)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.tif"
        tifffile.imwrite(src, rng.integers(90, 400, size=shape, dtype=np.uint16))
        from neurovit.data.tiff import read_stack

        image = read_stack(src)
        out = tifffile.memmap(Path(tmp) / "out.tif", shape=shape, dtype=np.float32)
        net(torch.zeros(16, 1, net.block_depth, net.img_size, net.img_size))  # warm-up: allocator, kernels
        before = _rss_mib()
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss_mib())
                time.sleep(0.005)

        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        with torch.inference_mode():
            predict_volume(net, image, block_depth=net.block_depth, roi_size=net.img_size, sw_batch_size=16,
                           z_chunk=4, normalise=robust_normaliser(image), out=out)
        out.flush()
        done.set()
        watcher.join()
    print(json.dumps({"growth_mib": max(peak[0], _rss_mib()) - before}))


def _rss_mib() -> float:
    """Resident set size of this process now (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="demo_out/run/checkpoints/last.ckpt")
    ap.add_argument("--arch", default="neurovit_tiny_patch16")
    ap.add_argument("--shape", nargs=3, type=int, default=(64, 512, 512))
    ap.add_argument("--naive-slices", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--data", default="demo_out/data", help="dataset for the accuracy check")
    ap.add_argument("--memory-sizes", nargs="*", type=int, default=[16, 32, 64], help="slices of 256x256 stacks")
    ap.add_argument("--memory-child", nargs=3, type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        _memory_child(tuple(args.memory_child), args.ckpt, args.arch)
        return
    net, what = _model(args.ckpt, args.arch)
    depth, roi = net.block_depth, net.img_size
    print(f"model: {what}; block {depth}x{roi}x{roi}; torch threads {torch.get_num_threads()}")
    rng = np.random.default_rng(0)
    vol = rng.integers(90, 400, size=tuple(args.shape), dtype=np.uint16)
    norm = robust_normaliser(vol)
    n_vox = int(np.prod(args.shape))

    t0 = time.perf_counter()
    naive_stacked_loop(net, vol, depth, roi, norm, args.naive_slices)
    t_naive = (time.perf_counter() - t0) / args.naive_slices * args.shape[0]
    print(f"\n1. whole-volume inference, stack {tuple(args.shape)} (z, y, x), CPU")
    print(f"   naive stacked loop (batch 1, no overlap): {n_vox / t_naive / 1e3:9.1f} kvoxel/s "
          f"({t_naive:.0f} s, extrapolated from {args.naive_slices} slices)")
    for overlap in sorted({args.overlap, 0.0}, reverse=True):
        t0 = time.perf_counter()
        with torch.inference_mode():
            predict_volume(net, vol, block_depth=depth, roi_size=roi, overlap=overlap, sw_batch_size=args.batch,
                           z_chunk=8, normalise=norm)
        t_fast = time.perf_counter() - t0
        print(f"   predict_volume (batch {args.batch}, overlap {overlap}): {n_vox / t_fast / 1e3:9.1f} kvoxel/s "
              f"({t_fast:.0f} s) = {t_naive / t_fast:.2f}x the naive loop")
    from neurovit.models import SliceViT

    torch.manual_seed(0)
    allnet = SliceViT(arch=args.arch, block_depth=depth, img_size=roi, out_slices="all").eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        predict_volume(allnet, vol, block_depth=depth, roi_size=roi, overlap=0.0,
                       sw_batch_size=args.batch, z_chunk=8, normalise=norm)
    t_all = time.perf_counter() - t0
    print(f"   all-slices model, blocks every {depth // 2 + 1} slices, overlap 0 (speed only, untrained): "
          f"{n_vox / t_all / 1e3:9.1f} kvoxel/s ({t_all:.0f} s) = {t_naive / t_all:.2f}x the naive loop")

    data = Path(args.data)
    if "checkpoint" in what and (data / "dataset.yaml").is_file():
        from neurovit.data.folder import open_dataset
        from neurovit.data.tiff import read_stack
        from neurovit.metrics import dice

        ds = open_dataset(data)
        d_naive, d_fast = [], []
        for r in ds.volumes("val"):
            img, lab = read_stack(r.image), read_stack(r.label) > 0
            nm = robust_normaliser(img)
            d_naive.append(dice(naive_stacked_loop(net, img, depth, roi, nm) > 0.5, lab))
            fast = predict_volume(net, img, block_depth=depth, roi_size=roi, overlap=args.overlap,
                                  sw_batch_size=args.batch, normalise=nm)
            d_fast.append(dice(fast > 0.5, lab))
        print(f"\n2. accuracy on {len(d_fast)} demo validation volumes: Dice naive {np.mean(d_naive):.4f}, "
              f"predict_volume {np.mean(d_fast):.4f} (difference {np.mean(d_fast) - np.mean(d_naive):+.4f})")

    print("\n3. peak memory growth of streamed prediction (fresh process per size)")
    for z in args.memory_sizes:
        shape = (z, 256, 256)
        cmd = [sys.executable, "-m", "neurovit.benchmarks.inference", "--memory-child", *map(str, shape),
               "--ckpt", str(args.ckpt), "--arch", args.arch]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        growth = json.loads(res.stdout.strip().splitlines()[-1])["growth_mib"]
        out_mib = np.prod(shape) * 4 / 2**20
        print(f"   stack {shape}: input {np.prod(shape) * 2 / 2**20:6.1f} MiB, output {out_mib:6.1f} MiB, "
              f"RSS growth {growth:7.1f} MiB ({growth / out_mib:.2f}x the output)")


if __name__ == "__main__":
    main()
