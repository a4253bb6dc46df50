"""Benchmark: whole-volume inference (`predict_volume`) vs the paper's naive stacked loop, and peak memory.

1. Throughput (voxels/s) on a synthetic stack (default 64 × 512 × 512, uint16): the naive loop predicts
   every centre slice block by block (one block per forward pass, non-overlapping tiles, zero-padded edge
   tiles) and stacks the results. Against it: `predict_volume` with the same centre-slice model (windows
   batched across slices, the last window shifted inside the image instead of zero-padded) and with an
   all-slices model (a block every `z_stride` slices, overlapping slice predictions averaged). The
   all-slices rows are timed on the whole stack; the two centre-slice rows do the same work for every
   slice and are timed on the first `--naive-slices` / `--centre-slices` slices and extrapolated.
   `--compile` adds a torch.compile row (not in `make bench`: about a minute of compilation on a CPU).
2. Accuracy: Dice of every method against the labels of the demo dataset's held-out volumes (val + test),
   the same checkpoints as in 1. "Equal accuracy" means a Dice no more than 0.01 below the naive loop's.
3. Peak memory growth (a fresh process per model) of the streamed path as the stack grows, split into heap
   (anonymous memory) and memory-mapped file pages, with the marginal growth between the two largest
   stacks: the heap must not grow with the stack (no float32 copies of it), the mapped pages follow the
   output (and input) size.

Checkpoints: `make demo` trains the centre-slice demo model, `make demo-allslices` the all-slices one
(same data and recipe + `experiments/allslices.yaml`, twice the epochs). Without them the script falls
back to untrained models and prints speed only.

    python -m neurovit.benchmarks.inference [--ckpt demo_out/run/checkpoints/last.ckpt]
        [--allslices-ckpt demo_out/allslices/checkpoints/last.ckpt] [--shape 64 512 512] [--data demo_out/data]
        [--compile]
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

from neurovit.benchmarks.common import bench_model, model_normaliser
from neurovit.inference import predict_volume, slice_blocks


@torch.inference_mode()
def naive_stacked_loop(net, volume: np.ndarray, depth: int, roi: int, normalise, n_slices: int | None = None,
                       autocast: torch.dtype | None = None):
    """The paper's procedure: for each slice z, each non-overlapping roi×roi tile of its centred block, one
    forward pass (on the network's device); returns the stacked probabilities of the first `n_slices`
    slices. All-slices models contribute their centre-slice output."""
    device = next(net.parameters(), torch.zeros(0)).device
    n_z, ny, nx = volume.shape
    n_slices = n_z if n_slices is None else min(n_slices, n_z)
    out = np.zeros((n_slices, ny, nx), dtype=np.float32)
    vol = torch.from_numpy(normalise(volume))
    for z in range(n_slices):
        block = slice_blocks(vol, z, z + 1, depth)[0]  # (D, Y, X)
        for y0 in range(0, ny, roi):
            for x0 in range(0, nx, roi):
                tile = torch.zeros(depth, roi, roi, device=device)
                part = block[:, y0:y0 + roi, x0:x0 + roi]
                tile[:, : part.shape[1], : part.shape[2]] = part
                with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                    logits = net(tile[None, None]).float()
                logits = logits[:, :, depth // 2] if logits.ndim == 5 else logits
                prob = torch.sigmoid(logits)[0, 0]
                out[z, y0:y0 + roi, x0:x0 + roi] = prob[: part.shape[1], : part.shape[2]].cpu().numpy()
    return out


def _memory_child(shapes: list[tuple[int, int, int]], ckpt: str | None, arch: str, batch: int, overlap: float,
                  kind: str) -> None:
    """Runs in a fresh process (glibc's mmap threshold fixed by the parent, so freed buffers leave RSS at once):
    predict a stack of each shape in turn through the streamed path; print the peak growths of each, MiB."""
    import tempfile

    import tifffile

    from neurovit.data.tiff import write_stack
    from neurovit.data.volumes import open_volume

    net, _, _ = bench_model(ckpt, arch, kind)
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        net(torch.zeros(batch, 1, net.block_depth, net.img_size, net.img_size))  # warm-up: kernels
    growths = []
    for shape in shapes:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "in.tif"
            write_stack(src, rng.integers(90, 400, size=shape, dtype=np.uint16))
            image = open_volume(src).array
            out = tifffile.memmap(Path(tmp) / "out.tif", shape=shape, dtype=np.float32)

            def run(image=image, out=out) -> None:
                with torch.inference_mode():
                    predict_volume(net, image, block_depth=net.block_depth, roi_size=net.img_size,
                                   sw_batch_size=batch, overlap=overlap, normalise=model_normaliser(net).fit(image), out=out)
                out.flush()

            growths.append(_peak_rss_growth(run))
            del out, image
    print(json.dumps({"growth_mib": growths}))


def _peak_rss_growth(fn) -> dict[str, float]:
    """Peak growth while `fn()` runs, MiB: "total" from the kernel's RSS high-water mark (VmHWM, reset first
    through /proc/self/clear_refs, so no peak is missed), "anon" (heap: arrays, activations) and "file"
    (resident memory-mapped file pages) from samples every 5 ms."""
    import threading

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = _rss_mib()
    peak = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            now = _rss_mib()
            for k in ("anon", "file"):
                peak[k] = max(peak[k], now[k])
            time.sleep(0.005)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        fn()
    finally:
        done.set()
        watcher.join()
    now = _rss_mib()
    growth = {k: max(peak[k], now[k]) - before[k] for k in ("anon", "file")}
    growth["total"] = now["hwm"] - before["total"]
    return growth


def _memory_shapes(args, kind: str) -> list[tuple[int, int, int]]:
    """Stacks of the memory check; the centre-slice model (D/stride more forward passes) gets half the slices."""
    sizes = args.memory_sizes if kind == "all" else [max(z // 2, 2) for z in args.memory_sizes]
    return [(z, args.memory_side, args.memory_side) for z in sizes]


def _rss_mib() -> dict[str, float]:
    """Resident memory of this process (Linux /proc/self/status), MiB: anon, file, total (RSS) and hwm (peak RSS)."""
    fields = {"RssAnon": "anon", "RssFile": "file", "VmRSS": "total", "VmHWM": "hwm"}
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in fields:
                out[fields[key]] = int(line.split()[1]) / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="demo_out/run/checkpoints/last.ckpt", help="centre-slice model")
    ap.add_argument("--allslices-ckpt", default="demo_out/allslices/checkpoints/last.ckpt",
                    help="all-slices model (out_slices: all)")
    ap.add_argument("--arch", default="neurovit_tiny_patch16", help="architecture of the untrained fallbacks")
    ap.add_argument("--shape", nargs=3, type=int, default=(64, 512, 512))
    ap.add_argument("--naive-slices", type=int, default=4, help="slices the naive loop is timed on")
    ap.add_argument("--centre-slices", type=int, default=16,
                    help="slices predict_volume with the centre-slice model is timed on (a multiple of its z chunk, 8)")
    ap.add_argument("--batch", type=int, default=32, help="windows per forward pass of predict_volume")
    ap.add_argument("--overlap", type=float, default=0.25,
                    help="in-plane window overlap of predict_volume (default: neurovit predict's)")
    ap.add_argument("--strides", nargs="+", type=int, default=[3, 5], help="z strides of the all-slices model")
    ap.add_argument("--compile", action="store_true", help="also time the all-slices model under torch.compile "
                    "(about a minute of compilation on a CPU, so not part of `make bench`)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (the memory check stays on CPU)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for every method (GPUs)")
    ap.add_argument("--data", default="demo_out/data", help="dataset for the accuracy check")
    ap.add_argument("--memory-sizes", nargs="*", type=int, default=[16, 64, 128], help="slices of the memory stacks")
    ap.add_argument("--memory-side", type=int, default=256, help="Y = X of the memory stacks")
    ap.add_argument("--memory-child", choices=("center", "all"), default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        kind = args.memory_child
        _memory_child(_memory_shapes(args, kind), args.ckpt if kind == "center" else args.allslices_ckpt,
                      args.arch, args.batch, args.overlap, kind)
        return
    centre, what_c, trained_c = bench_model(args.ckpt, args.arch, "center", args.device)
    allnet, what_a, trained_a = bench_model(args.allslices_ckpt, args.arch, "all", args.device)
    autocast = torch.bfloat16 if args.bf16 else None
    depth, roi = centre.block_depth, centre.img_size
    print(f"centre-slice model: {what_c}\nall-slices model:   {what_a}\nblock {depth}x{roi}x{roi}; "
          f"torch threads {torch.get_num_threads()}; batch {args.batch}; in-plane overlap {args.overlap}")

    def fast(net, vol, norm, stride=None):
        return predict_volume(net, vol, block_depth=depth, roi_size=roi, overlap=args.overlap,
                              sw_batch_size=args.batch, z_chunk=8, normalise=norm, z_stride=stride, autocast=autocast)

    methods = [("predict_volume, same centre-slice model", centre, None)]
    methods += [(f"predict_volume, all-slices model, z stride {s}", allnet, s) for s in args.strides]

    rng = np.random.default_rng(0)
    vol = rng.integers(90, 400, size=tuple(args.shape), dtype=np.uint16)
    norm = model_normaliser(centre).fit(vol)
    n_vox = int(np.prod(args.shape))
    t0 = time.perf_counter()
    naive_stacked_loop(centre, vol, depth, roi, norm, args.naive_slices, autocast)
    t_naive = (time.perf_counter() - t0) / args.naive_slices * args.shape[0]
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"\n1. whole-volume inference, stack {tuple(args.shape)} (z, y, x), {where}"
          + (", bf16 autocast" if args.bf16 else ", fp32"))
    print(f"   {'naive stacked loop (batch 1, no overlap)':<52}{n_vox / t_naive / 1e3:9.1f} kvoxel/s "
          f"{t_naive:6.1f} s  1.00x  (extrapolated from {args.naive_slices} slices)")
    for label, net, stride in methods:
        # the centre-slice model does the same work for every slice: timed on the first slices, extrapolated
        part = vol if stride is not None else vol[: args.centre_slices]
        t0 = time.perf_counter()
        with torch.inference_mode():
            fast(net, part, norm, stride)
        t = (time.perf_counter() - t0) * len(vol) / len(part)
        note = f"  (extrapolated from {len(part)} slices)" if len(part) < len(vol) else ""
        print(f"   {label:<52}{n_vox / t / 1e3:9.1f} kvoxel/s {t:6.1f} s  {t_naive / t:.2f}x{note}")
    if args.compile:  # torch.compile lever: compiled once (warm-up on a few slices), then the whole stack
        stride = args.strides[0]
        compiled = torch.compile(allnet)
        t0 = time.perf_counter()
        with torch.inference_mode():
            fast(compiled, vol[:16], norm, stride)  # two batch sizes: the second compile is shape-dynamic
        t_compile = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.inference_mode():
            fast(compiled, vol, norm, stride)
        t = time.perf_counter() - t0
        label = f"  + torch.compile (z stride {stride})"
        print(f"   {label:<52}{n_vox / t / 1e3:9.1f} kvoxel/s {t:6.1f} s  {t_naive / t:.2f}x  "
              f"(after {t_compile:.0f} s of compilation and warm-up)")

    data = Path(args.data)
    if trained_c and (data / "dataset.yaml").is_file():
        from neurovit.data.folder import open_dataset
        from neurovit.data.volumes import open_volume
        from neurovit.metrics import dice

        ds = open_dataset(data)
        records = ds.volumes("val") + ds.volumes("test")
        rows = {"naive stacked loop, centre-slice model": ("naive", centre, None)}
        rows.update({label: ("fast", net, s) for label, net, s in methods if trained_a or net is centre})
        scores: dict[str, list[float]] = {k: [] for k in rows}
        for r in records:
            img, lab = open_volume(r.image).read(), open_volume(r.label).read() > 0
            for label, (kind, net, stride) in rows.items():
                nm = model_normaliser(net).fit(img)
                with torch.inference_mode():
                    prob = (naive_stacked_loop(net, img, depth, roi, nm, autocast=autocast) if kind == "naive"
                            else fast(net, img, nm, stride))
                scores[label].append(dice(prob > 0.5, lab))
        ref = float(np.mean(scores["naive stacked loop, centre-slice model"]))
        print(f"\n2. accuracy: mean Dice on {len(records)} held-out demo volumes (val + test) of {data}")
        for label, s in scores.items():
            print(f"   {label:<52} Dice {np.mean(s):.4f}  ({np.mean(s) - ref:+.4f} vs the naive loop)  "
                  + " ".join(f"{v:.3f}" for v in s))
    else:
        print("\n2. accuracy: skipped (needs the trained demo checkpoints and dataset: make demo demo-allslices)")

    print("\n3. peak memory growth of streamed prediction (a fresh process per model, sizes in turn; glibc's mmap\n"
          "   threshold fixed so that freed buffers leave RSS at once; the peak RSS is the kernel's high-water mark)")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    for kind in ("center", "all"):
        cmd = [sys.executable, "-m", "neurovit.benchmarks.inference", "--memory-child", kind, "--ckpt", str(args.ckpt),
               "--allslices-ckpt", str(args.allslices_ckpt), "--arch", args.arch, "--batch", str(args.batch),
               "--overlap", str(args.overlap), "--memory-side", str(args.memory_side),
               "--memory-sizes", *map(str, args.memory_sizes)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        growths = json.loads(res.stdout.strip().splitlines()[-1])["growth_mib"]
        name = "centre-slice" if kind == "center" else "all-slices"
        outs = []
        for shape, g in zip(_memory_shapes(args, kind), growths):
            outs.append(np.prod(shape) * 4 / 2**20)
            print(f"   {name} model, stack {shape}: input {np.prod(shape) * 2 / 2**20:6.1f} MiB, output "
                  f"{outs[-1]:6.1f} MiB; peak growth: RSS {g['total']:6.1f} MiB (sampled: heap {g['anon']:6.1f} MiB, "
                  f"mapped files {g['file']:6.1f} MiB)")
        if len(outs) >= 2:  # marginal growth between the two largest stacks (small ones may not fill a chunk)
            d_out = outs[-1] - outs[-2]
            slope = {k: (growths[-1][k] - growths[-2][k]) / d_out for k in ("anon", "file", "total")}
            print(f"   → {name}, from the two largest stacks: RSS grows {slope['total']:.2f} x the output (heap "
                  f"{slope['anon']:.2f} x, mapped files {slope['file']:.2f} x)")
    print("   (heap: one chunk of blocks and its windows' activations, whatever the stack size — a float32 copy of\n"
          "   the stack would add 1x output; mapped files: the memory-mapped output (1x) and input (0.5x for uint16)\n"
          "   pages, which the OS can write back and drop under memory pressure)")

if __name__ == "__main__":
    main()
